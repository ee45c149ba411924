"""Stage 3, principle engraving: SFT JSONL with the principles, exemplars and thoughts removed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from selfalign.records import Dropped, stable_id
from selfalign.counts import Report
from selfalign.stages.common import drop

STAGE = "export"
FORMATS = ("messages", "sharegpt", "alpaca")


class ExportConfig(BaseModel):
    format: str = "messages"
    system: str | None = None
    answer: str = "response"  # response | verbose_response
    max_tokens: int | None = None  # drop pairs whose prompt + answer exceed this (needs a token counter)


class ExportInput(BaseModel):
    """What export needs of an aligned or refined record; the other fields ride along unvalidated
    (they are not written, but a dropped record keeps them)."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    prompt: str
    response: str | None = None
    verbose_response: str | None = None

    @model_validator(mode="after")
    def _id(self) -> ExportInput:
        if not self.id:
            self.id = stable_id(self.prompt)
        return self


def to_sft(prompt: str, answer: str, fmt: str, system: str | None) -> dict[str, Any]:
    if fmt == "messages":
        msgs = [{"role": "system", "content": system}] if system else []
        return {"messages": [*msgs, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
    if fmt == "sharegpt":
        turns = [{"from": "system", "value": system}] if system else []
        return {"conversations": [*turns, {"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}
    if fmt == "alpaca":
        out = {"instruction": prompt, "input": "", "output": answer}
        if system:
            out["system"] = system
        return out
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")


def export(records: Iterable[ExportInput], config: ExportConfig, report: Report,
           count_tokens: Callable[[str], int] | None = None) -> Iterator[dict[str, Any] | Dropped]:
    for rec in records:
        answer = getattr(rec, config.answer)
        if not isinstance(answer, str) or not answer.strip():
            yield drop(STAGE, rec, f"no_{config.answer}", f"record has no {config.answer!r} to export")
            continue
        out = to_sft(rec.prompt, answer.strip(), config.format, config.system)
        if count_tokens is not None:
            n = count_tokens(rec.prompt) + count_tokens(answer) + (count_tokens(config.system) if config.system else 0)
            if config.max_tokens is not None and n > config.max_tokens:
                yield drop(STAGE, rec, "too_many_tokens", f"{n} tokens > {config.max_tokens}")
                continue
            out["num_tokens"] = n
        out["id"] = rec.id
        yield out
