"""Pieces every stage shares: batching, the drop record, text filters."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from pydantic import BaseModel

from selfalign.records import Dropped, Record

T = TypeVar("T")
R = TypeVar("R", bound=Record)


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, max(1, n))):
        yield batch


def drop(stage: str, record: BaseModel | dict, reason: str, detail: str | None = None) -> Dropped:
    data = record.model_dump(mode="json", exclude_none=True) if isinstance(record, BaseModel) else record
    return Dropped(id=data.get("id"), stage=stage, drop_reason=reason, detail=detail, record=data)


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def cut_repetition(text: str, min_unit: int = 20) -> tuple[str, bool]:
    """Cut `text` where it starts repeating itself (a sentence or line seen before, or a looping phrase)."""
    seen: set[str] = set()
    pos = 0
    for part in _SENTENCE.split(text):
        start = text.find(part, pos)
        key = " ".join(part.lower().split())
        if len(key) >= min_unit:
            if key in seen:
                return text[:start].rstrip(), True
            seen.add(key)
        pos = start + len(part)
    # a phrase of 4+ words repeated 3+ times back to back, e.g. "and the the and the the ..."
    m = re.search(r"(\b(?:\S+\s+){2,12}?\S+\b)(?:\W+\1\b){2,}", text)
    if m:
        return text[: m.start() + len(m.group(1))].rstrip(), True
    return text, False


_APOLOGY = re.compile(r"^\W*(i'?m sorry|i am sorry|sorry|i apologi[sz]e|my apologies)\b", re.IGNORECASE)


def opens_with_apology(text: str) -> bool:
    return bool(_APOLOGY.match(text))


_TURN = re.compile(r"(?:^|\n)\s*(?:User|Human|###\s*User)\s*:", re.IGNORECASE)


def cut_new_turn(text: str) -> tuple[str, bool]:
    """Cut where the model starts writing the next user turn itself."""
    m = _TURN.search(text)
    if m is None:
        return text, False
    return text[: m.start()].rstrip(), True


def answer_batch(stage: str, backend: Any, params: Any, batch: list[R], render: Callable[[R], str],
                 judge: Callable[[R, Any], Any]) -> list[Any]:
    """Render, check the context, generate and judge one batch; results in input order.

    A prompt that would not fit the model's context with its new tokens is dropped as
    `prompt_too_long` with its token count (counted by the backend's own tokenizer), never cut.
    A backend failure becomes a `backend_error` drop.
    """
    results: list[Any] = []
    ready: list[tuple[int, R, str]] = []
    for rec in batch:
        prompt = render(rec)
        n = backend.count_tokens(prompt)
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
