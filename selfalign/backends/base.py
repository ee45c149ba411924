"""The one protocol every backend implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class SamplingParams(BaseModel):
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = Field(default_factory=list)
    repetition_penalty: float = 1.0
    # text -> additive bias on the first token(s) of that text; applied where the backend can
    logit_bias: dict[str, float] = Field(default_factory=dict)
    seed: int | None = None

    def summary(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=False, exclude={"stop"})


class Completion(BaseModel):
    text: str
    finish_reason: str = "stop"  # "stop", "length" or "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@runtime_checkable
class Backend(Protocol):
    name: str
    model: str
    max_context: int
    supports_logit_bias: bool
    chunk_size: int  # prompts a stage hands over per call: the unit of streaming and checkpointing

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the model's own tokenizer."""
        ...

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """One completion per prompt, in order. Text ends before the first stop sequence."""
        ...

    def close(self) -> None: ...


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop sequence, and whether one was found."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and 0 <= i < cut:
            cut = i
    return text[:cut], cut < len(text)
