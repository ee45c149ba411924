"""What flows between stages: pydantic models with stable ids and provenance."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from selfalign.text.normalize import NUMBER_WORDS, TOKEN, normalize_text, tokens  # noqa: F401 - re-exported

TEMPLATE_VERSION = "1"


def stable_id(*parts: str) -> str:
    """The same text always gives the same id (a short hash of its normalised form)."""
    h = hashlib.sha256("\x1f".join(normalize_text(p) for p in parts).encode())
    return h.hexdigest()[:16]


def in_shard(record_id: str, shard: tuple[int, int] | None) -> bool:
    """Deterministic split by a hash of the id: shards 0..N-1 together cover every id exactly once."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha256(record_id.encode()).hexdigest()[:12], 16) % count == index


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")

    stage: str
    backend: str | None = None
    model: str | None = None
    sampling: dict[str, Any] = Field(default_factory=dict)
    assets_hash: str | None = None
    template_version: str = TEMPLATE_VERSION


class Record(BaseModel):
    """Base of every record: extra fields from the user's files are kept, not lost."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    prompt: str
    source: str = "user"
    provenance: list[Provenance] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        """Accept `instruction` (+ `input`) as the prompt, and give a record without an id its stable id."""
        if isinstance(data, dict):
            if "prompt" not in data and isinstance(data.get("instruction"), str):
                extra = data.get("input") if isinstance(data.get("input"), str) else ""
                data = {**data, "prompt": data["instruction"] + (f"\n\n{extra}" if extra.strip() else "")}
            if isinstance(data.get("prompt"), str) and not data["prompt"].strip():
                raise ValueError("prompt is empty")
        return data

    @model_validator(mode="after")
    def _stable_id(self) -> Record:
        if not self.id:
            self.id = stable_id(self.prompt)
        return self

    def with_stage(self, prov: Provenance, **fields: Any) -> dict[str, Any]:
        data = self.model_dump()
        data.update(fields)
        data["provenance"] = [*self.provenance, prov]
        return data


class PromptRecord(Record):
    question_type: str | None = None
    topic: str | None = None


class AlignedRecord(PromptRecord):
    thoughts: str
    response: str
    principles: list[str] = Field(default_factory=list)


class RefinedRecord(AlignedRecord):
    verbose_response: str


class CritiquedRecord(AlignedRecord):
    """An aligned record checked against some principles (stage `critique`). `revision` is set only when the
    critique found a violation: the original `response` stays as it was, so the pair is a preference pair
    (revision over response). Every field has a default, so an aligned file validates as one."""

    critique: str | None = None
    revision: str | None = None
    checked_principles: list[str] = Field(default_factory=list)
    violations: list[str] = Field(default_factory=list)  # ids of checked principles the critique says are broken


class Judgement(BaseModel):
    """The judge stage's verdict on a record's pair, as kept in its `judge` field (other keys ride along).

    `pair` names the two fields compared (default: response, revision; or responses[0], responses[1]); `chosen`
    is the one preferred, or "tie"; `margin` how strongly (>= 0, higher: surer; None: no usable score);
    `principle` the id judged against, or "all"."""

    model_config = ConfigDict(extra="allow")

    principle: str = "all"
    margin: float | None = None
    chosen: str = "revision"
    pair: list[str] | None = None

    @field_validator("principle", mode="before")
    @classmethod
    def _principle_id(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("margin")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        return v if v is None or math.isfinite(v) else None


class Dropped(BaseModel):
    """A record set aside, with the reason a user can read."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    stage: str
    drop_reason: str
    detail: str | None = None
    record: dict[str, Any] | None = None
