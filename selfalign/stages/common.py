"""Pieces every stage shares: batching, the drop record, text filters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from pydantic import BaseModel

from selfalign.gates import REASONS
from selfalign.records import Dropped, Record

# the descriptions (the CLI's help) of the options several stages have
PERSONA = "The assistant's internal name in the prompt."
MIN_WORDS = ("too_short: fewest words for an open question (a third of it for a plain question; 1 when the query "
             "asks for brevity; characters of scripts without spaces count 1.5 to a word). 0: off.")
KEEP = ("Keep what this gate would drop (repeatable or comma-separated; 'all' turns every gate off). Reasons: "
        + "; ".join(f"{k}: {v}" for k, v in REASONS.items()) + ".")
BATCH_SIZE = "Records per backend call (default: the backend's chunk size)."
SEED = "Random seed (default: the run's, else 0)."

T = TypeVar("T")
R = TypeVar("R", bound=Record)


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, max(1, n))):
        yield batch


def chunks(items: Iterable[T], given: int | None, backend: Any, share: int = 1) -> Iterator[list[T]]:
    """What a stage hands the backend per call: `given` items (the stage's batch_size) when set, else the
    backend's `chunk_size` // `share` (the unit of streaming: records are written as each call returns).

    No smaller first call: a decoding step costs about the same for 2 rows as for 8 on a CPU (and on a GPU),
    so a small first batch would bring the first records no sooner and add a whole pass."""
    yield from batched(items, given or max(1, getattr(backend, "chunk_size", 16) // share))


def drop(stage: str, record: BaseModel | dict, reason: str, detail: str | None = None) -> Dropped:
    data = record.model_dump(mode="json", exclude_none=True) if isinstance(record, BaseModel) else record
    return Dropped(id=data.get("id"), stage=stage, drop_reason=reason, detail=detail, record=data)


def clip(text: str, n: int = 200) -> str:
    """One line of at most `n` characters, for a drop's detail."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def count_tokens(backend: Any, texts: list[str]) -> list[int]:
    """Token counts of `texts` by the backend's own tokenizer; in one batch where the backend can (a server
    counts them concurrently rather than one round trip after another)."""
    many = getattr(backend, "count_tokens_many", None)
    return list(many(texts)) if many is not None else [backend.count_tokens(t) for t in texts]


def answer_batch(stage: str, backend: Any, params: Any, batch: list[R], render: Callable[[R], str],
                 judge: Callable[[R, Any], Any]) -> list[Any]:
    """Render, check the context, generate and judge one batch; results in input order.

    A prompt that would not fit the model's context with its new tokens is dropped as
    `prompt_too_long` with its token count (counted by the backend's own tokenizer), never cut.
    A backend failure becomes a `backend_error` drop.
    """
    results: list[Any] = []
    ready: list[tuple[int, R, str]] = []
    prompts = [render(rec) for rec in batch]
    for rec, prompt, n in zip(batch, prompts, count_tokens(backend, prompts), strict=True):
        if n + params.max_tokens > backend.max_context:
            results.append(drop(stage, rec, "prompt_too_long",
                                f"{n} prompt tokens + {params.max_tokens} new > context {backend.max_context}"))
        else:
            ready.append((len(results), rec, prompt))
            results.append(None)
    if ready:
        for (i, rec, _), comp in zip(ready, backend.generate([p for _, _, p in ready], params), strict=True):
            results[i] = (drop(stage, rec, "backend_error", comp.error) if comp.finish_reason == "error"
                          else judge(rec, comp))
    return results
