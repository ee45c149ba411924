"""The one protocol every backend implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class BackendFailed(RuntimeError):
    """The backend cannot answer any request (the server refuses the key, the permission or the model): the run
    stops at once with this one line, instead of dropping every record. What was finished stays written."""


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
    cached: bool = False  # served from the completion cache (its tokens were spent when it was first made)


@runtime_checkable
class Backend(Protocol):
    name: str
    model: str
    max_context: int
    supports_logit_bias: bool
    # True where `choice_logprobs` reads exact log-probabilities (from logits, or from a server's logprobs);
    # False (or absent) where it cannot, and the judge falls back to a sampled vote through `generate`
    supports_logprobs: bool
    chunk_size: int  # prompts a stage hands over per call: the unit of streaming and checkpointing
    # what `choice_logprobs` has spent so far, by the backend's own counts: {"requests", "prompt_tokens",
    # "completion_tokens"} (selfalign.report.tokens); `generate`'s are on each Completion
    choice_usage: dict[str, int]

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the model's own tokenizer."""
        ...

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """One completion per prompt, in order. Text ends before the first stop sequence."""
        ...

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float] | None]:
        """For each prompt, the log-probability of each choice as the very next token after it, in order.

        A choice is text that continues the prompt by exactly one token of the model's tokenizer (e.g. " A" after
        "Better answer:"): `prompt + choice` must tokenize as the prompt's own tokens plus one. Otherwise
        ValueError, naming the choice: nothing is guessed. The value is the full-vocabulary log-softmax of the
        model's raw next-token logits (no temperature, top-p, penalties or logit bias), not renormalised over the
        choices, so the choices' probabilities need not sum to 1 and their difference is the log-odds between
        them. None for a prompt the backend could not score (a failed request); the caller drops that one.
        Only backends with `supports_logprobs` implement it.
        """
        ...

    def close(self) -> None: ...


def new_usage() -> dict[str, int]:
    """What a backend's `choice_usage` starts as: each scoring call adds its requests and tokens to it."""
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}


def add_usage(usage: dict[str, int], requests: int, prompt_tokens: int, completion_tokens: int = 0) -> None:
    usage["requests"] += requests
    usage["prompt_tokens"] += prompt_tokens
    usage["completion_tokens"] += completion_tokens


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop sequence, and whether one was found."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and 0 <= i < cut:
            cut = i
    return text[:cut], cut < len(text)


def choice_token_ids(encode: Any, prompt: str, choices: list[str]) -> tuple[list[int], list[int]]:
    """The prompt's token ids and, for each choice, the one token that `prompt + choice` adds to them.

    `encode(text) -> list[int]` is the model's tokenizer (no special tokens). ValueError when a choice does not
    continue the prompt as exactly one new token: its log-probability would then not be one next-token value.
    """
    ids = list(encode(prompt))
    out = []
    for choice in choices:
        full = list(encode(prompt + choice))
        if len(full) != len(ids) + 1 or full[: len(ids)] != ids:
            raise ValueError(f"the choice {choice!r} does not continue the prompt as exactly one token of this "
                             f"model's tokenizer ({len(full) - len(ids)} tokens, or it merges with the prompt's "
                             "last token): choose single-token choices")
        out.append(full[-1])
    return ids, out
