"""Stage 4, verbose cloning: re-answer each prompt with a detailed persona, keep the concise answer beside it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from pydantic import Field

from selfalign.backends.base import Backend, Completion, SamplingParams
from selfalign.records import AlignedRecord, Dropped, Provenance, RefinedRecord
from selfalign.gates import TextGates
from selfalign.gates.meaning import MeaningGates
from selfalign.stages.common import answer_batch, chunks, clip as _clip, drop
from selfalign.runner import Runner
from selfalign.stages.common import BATCH_SIZE, KEEP, MIN_WORDS, PERSONA, SEED
from selfalign.steps import Amount, Answering, Count, Keep, Penalty, Step, Temperature, TopP, flags
from selfalign.text.templates import refine_prompt

STAGE = "refine"


class Refine(Answering):
    """Verbose cloning: re-answer with a detailed persona; the concise answer is kept beside it."""

    kind: ClassVar[str] = "refine"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "refined"
    max_list_items: ClassVar[int] = 12  # a longer list is cut (not an option)
    persona: str = Field("Sage", description=PERSONA)
    temperature: Temperature = Field(0.3, description="Sampling temperature.")
    top_p: TopP = Field(0.7, description="Nucleus sampling.")
    max_tokens: Count = Field(512, description="New tokens per answer.")
    repetition_penalty: Penalty = Field(1.1, description="Repetition penalty.")
    min_words: Amount = Field(25, description=MIN_WORDS)
    keep: Keep = Field(frozenset(), description=KEEP, json_schema_extra=flags(metavar="REASON"))
    batch_size: Count | None = Field(None, description=BATCH_SIZE)
    seed: int | None = Field(None, description=SEED)

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return lambda records: refine(records, backend, self)


_SEE_ALSO = re.compile(r"\n\s*(?:#+\s*)?(?:see also|related (?:topics|articles|links)|further reading|references)\b.*$",
                       re.IGNORECASE | re.DOTALL)
_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)


def cap_list(text: str, max_items: int) -> str:
    """Keep at most `max_items` list items: cut the text where the next item would start."""
    items = list(_ITEM.finditer(text))
    if len(items) <= max_items:
        return text
    return text[: items[max_items].start()].rstrip()


def clean_verbose(text: str, max_items: int) -> str:
    """A trailing "See also"-style section cut, long lists capped."""
    return cap_list(_SEE_ALSO.sub("", text).rstrip(), max_items)


def refine(records: Iterable[AlignedRecord], backend: Backend, config: Refine,
           meaning: MeaningGates | None = None) -> Iterator[RefinedRecord | Dropped]:
    params = SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                            repetition_penalty=config.repetition_penalty, seed=config.seed,
                            stop=["\nUser:", "\n\nUser"])
    prov = Provenance(stage=STAGE, backend=backend.name, model=backend.model, sampling=params.summary())
    gates = TextGates(persona=config.persona, min_words=config.min_words, keep=config.keep)
    meaning = meaning if meaning is not None else MeaningGates.for_keep(config.keep)

    def judge(rec: AlignedRecord, comp: Completion) -> RefinedRecord | Dropped:
        v = gates.check(rec.prompt, comp.text, comp.finish_reason, comp.completion_tokens, rec.question_type)
        if v.reason:
            return drop(STAGE, rec, v.reason, f"{v.detail}: {_clip(v.answer, 160)}")
        return RefinedRecord.model_validate(rec.with_stage(prov, verbose_response=clean_verbose(
            v.answer, config.max_list_items)))

    for batch in chunks(records, config.batch_size, backend):
        render = lambda rec: refine_prompt(rec.prompt, config.persona)  # noqa: E731
        yield from meaning.apply(STAGE, answer_batch(STAGE, backend, params, batch, render, judge), "verbose_response")
