"""Scripted backend: replays answers from a JSONL file. For tests and dry runs of a pipeline.

Each line is `{"text": "..."}`, optionally with `"match": "substring"`: a prompt gets the first rule
whose `match` occurs in its last 400 characters, else the next unmatched rule in turn (cycling).
"""

from __future__ import annotations

from typing import Any

from selfalign.backends.base import Completion, SamplingParams, cut_at_stop


class ScriptedBackend:
    name = "scripted"
    chunk_size = 16
    supports_logit_bias = False

    def __init__(self, model: str | None = None, rules: list[dict[str, str]] | None = None,
                 max_context: int = 8192, **_: Any):
        if rules is None:
            if not model:
                raise ValueError("the scripted backend needs --model PATH to a JSONL file of {'text': ...}")
            from selfalign.io import InputError, read_json_lines

            rules = []
            for _lineno, obj in read_json_lines(model):
                if isinstance(obj, InputError):
                    raise obj
                rules.append(obj)
        self.model = model or "inline"
        self.rules = rules
        self.max_context = max_context
        self.calls = 0
        self.prompts_seen = 0
        self._turn = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _answer(self, prompt: str) -> str:
        tail = prompt[-400:]
        for rule in self.rules:
            if rule.get("match") and rule["match"] in tail:
                return rule["text"]
        plain = [r for r in self.rules if not r.get("match")] or self.rules
        text = plain[self._turn % len(plain)]["text"]
        self._turn += 1
        return text

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        self.calls += 1
        self.prompts_seen += len(prompts)
        out = []
        for p in prompts:
            text, _ = cut_at_stop(self._answer(p), params.stop)
            out.append(Completion(text=text, prompt_tokens=self.count_tokens(p),
                                  completion_tokens=len(text.split())))
        return out

    def close(self) -> None:
        pass
