"""Tokens a stage spent, by the backend's own counts, and what they cost.

`Metered` stands between a stage and its backend (the executor puts it there) and adds up, per stage:
- `requests`, `prompt_tokens`, `completion_tokens`: what reached the model. `generate` is counted from each
  Completion's `prompt_tokens` / `completion_tokens` (the server's `usage`, vLLM's outputs, the tokenizer of
  the transformers backend, words for the scripted one); failed requests count as requests, with the tokens
  the backend reported (0 for most). `choice_logprobs` (the judge's scores) from the backend's `choice_usage`,
  which each backend adds to as it scores.
- `cached_requests`, `cached_prompt_tokens`, `cached_completion_tokens`: completions served from the
  completion cache, counted apart with the tokens they spent when first made. They cost nothing.
- `seconds`: wall time inside the backend's calls that reached the model (summed over Ray actors), so
  `completion_tokens / seconds` is the throughput of the model stages.

A price (`--price-per-million INPUT,OUTPUT`, USD per million prompt / completion tokens) turns the fresh
tokens into a cost; cache hits are free.
"""

from __future__ import annotations

import math
import time
from typing import Any

FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cached_requests", "cached_prompt_tokens",
          "cached_completion_tokens")


class Tokens:
    """Token counts of one stage (or a sum of stages); `seconds` is time in backend calls."""

    def __init__(self, **counts: Any):
        self.counts = {f: _int(counts.get(f)) for f in FIELDS}
        self.seconds = _seconds(counts.get("seconds"))

    def __getattr__(self, name: str) -> int:
        if name in FIELDS:
            return self.__dict__["counts"][name]
        raise AttributeError(name)

    def add(self, other: Tokens | dict[str, Any]) -> None:
        other = other if isinstance(other, Tokens) else Tokens.from_dict(other)
        for f in FIELDS:
            self.counts[f] += other.counts[f]
        self.seconds += other.seconds

    def minus(self, before: Tokens) -> Tokens:
        """What was added since `before` (a copy taken earlier)."""
        return Tokens(seconds=self.seconds - before.seconds, **{f: self.counts[f] - before.counts[f] for f in FIELDS})

    def copy(self) -> Tokens:
        return Tokens(seconds=self.seconds, **self.counts)

    def __bool__(self) -> bool:
        return any(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: Any) -> Tokens:
        """A report's `tokens` read back; anything that is not a count reads as 0 (a report file may say anything)."""
        return cls(**data) if isinstance(data, dict) else cls()

    def cost(self, price: tuple[float, float] | None) -> float | None:
        """USD for the fresh tokens at `price` (per million prompt, completion tokens); None without a price."""
        if price is None:
            return None
        return (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1e6

    def rate(self) -> float | None:
        """Completion tokens a second of backend time; None without time or tokens."""
        return self.completion_tokens / self.seconds if self.seconds > 0 and self.completion_tokens else None

    def line(self, price: tuple[float, float] | None = None) -> str:
        """One line: `12 requests, 3,400 prompt + 900 completion tokens (4 cached requests, 1,200 + 300 tokens,
        free), 45 tokens/s, $0.0011`."""
        out = (f"{self.requests:,} requests, {self.prompt_tokens:,} prompt + {self.completion_tokens:,} "
               "completion tokens")
        if self.cached_requests:
            out += (f" ({self.cached_requests:,} cached: {self.cached_prompt_tokens:,} + "
                    f"{self.cached_completion_tokens:,} tokens, free)")
        if (rate := self.rate()) is not None:
            out += f", {rate:,.1f} tokens/s"
        if (usd := self.cost(price)) is not None:
            out += f", {money(usd)}"
        return out


def money(usd: float) -> str:
    """Dollars with enough digits for a small run: $12.35, $0.0042."""
    return f"${usd:,.2f}" if usd >= 1 or usd == 0 else f"${usd:.2g}" if usd < 0.001 else f"${usd:.4f}"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _seconds(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else 0.0


def parse_price(value: Any, name: str | None = "--price-per-million") -> tuple[float, float]:
    """(input, output) USD per million tokens from "0.15,0.6" (the CLI) or [0.15, 0.6] (a recipe); ValueError,
    one line naming `name` (None: the caller names it), for anything else (a negative price, NaN, one number)."""
    parts: Any = value.split(",") if isinstance(value, str) else value
    out: list[float] = []
    if isinstance(parts, (list, tuple)) and len(parts) == 2:
        for p in parts:
            try:
                x = float(p) if isinstance(p, (str, int, float)) and not isinstance(p, bool) else math.nan
            except ValueError:
                x = math.nan
            if math.isfinite(x) and x >= 0:
                out.append(x)
    if len(out) != 2:
        shown = repr(value) if isinstance(value, str) else str(value)
        raise ValueError(f"{name + ' ' if name else 'got '}{shown}: expected INPUT,OUTPUT, two prices of 0 or "
                         "more in USD per million prompt and per million completion tokens, e.g. 0.15,0.6")
    return out[0], out[1]


class Metered:
    """A backend whose calls add what they spend to `tokens` (see the module docstring)."""

    def __init__(self, inner: Any, tokens: Tokens):
        self.inner, self.tokens = inner, tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, prompts: list[str], params: Any) -> list[Any]:
        started = time.perf_counter()
        out = self.inner.generate(prompts, params)
        c = self.tokens.counts
        fresh = 0
        for comp in out:
            cached = bool(getattr(comp, "cached", False))
            fresh += not cached
            pre = "cached_" if cached else ""
            c[pre + "requests"] += 1
            c[pre + "prompt_tokens"] += _int(getattr(comp, "prompt_tokens", 0))
            c[pre + "completion_tokens"] += _int(getattr(comp, "completion_tokens", 0))
        if fresh:  # a call answered wholly from the cache took no model time
            self.tokens.seconds += time.perf_counter() - started
        return out

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[Any]:
        usage = getattr(self.inner, "choice_usage", None)
        before = dict(usage) if isinstance(usage, dict) else {}
        started = time.perf_counter()
        out = self.inner.choice_logprobs(prompts, choices)
        self.tokens.seconds += time.perf_counter() - started
        if isinstance(usage, dict):  # a backend of the caller's own may not count: then nothing is guessed
            for f in ("requests", "prompt_tokens", "completion_tokens"):
                self.tokens.counts[f] += _int(usage.get(f, 0) - before.get(f, 0))
        return out


HEADER = ["stage", "requests", "prompt tokens", "completion tokens", "cached (free)", "tokens/s", "cost"]


def table(named: list[tuple[str, Tokens]], price: tuple[float, float] | None = None) -> list[list[str]]:
    """The rows of a tokens table (HEADER first, a `total` row last when there are several stages): what the
    card, the HTML page and the text report show. Stages that spent nothing are left out; [] if none spent."""
    named = [(name, t) for name, t in named if t]
    if not named:
        return []
    total = Tokens()
    for _, t in named:
        total.add(t)
    rows = [HEADER]
    for name, t in [*named, *([("total", total)] if len(named) > 1 else [])]:
        cached = (f"{t.cached_requests:,} ({t.cached_prompt_tokens:,} + {t.cached_completion_tokens:,} tokens)"
                  if t.cached_requests else "-")
        rate = t.rate()
        usd = t.cost(price)
        rows.append([name, f"{t.requests:,}", f"{t.prompt_tokens:,}", f"{t.completion_tokens:,}", cached,
                     "-" if rate is None else f"{rate:,.1f}", "-" if usd is None else money(usd)])
    return rows


def price_note(price: tuple[float, float] | None) -> str:
    if price is None:
        return "no price given (--price-per-million INPUT,OUTPUT adds the cost)"
    return f"cost at ${price[0]:g} / ${price[1]:g} per million prompt / completion tokens"
