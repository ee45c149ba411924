"""Scripted backend: replays answers from a JSONL file. For tests and dry runs of a pipeline.

Each line is `{"text": "..."}`, optionally with `"match": "substring"`: a prompt gets the first rule
whose `match` occurs in its last 400 characters, else the next unmatched rule in turn (cycling); a rule's
`"finish_reason": "length"` reports the answer as cut at the token limit; a rule with `"seed": N` applies only
to requests with that sampling seed (a second sample, `principle --n 2`, asks with seed + 1).
A line `{"delay": SECONDS}` makes each prompt take that long; `{"log": PATH}` appends one line per
prompt answered to PATH (tests count regenerations with it); `{"max_context": N}` sets the context window
(tokens are words here); `{"crash_after": N}` makes the backend die
(raise) once it has answered N prompts, as an engine crash would; `{"exit_after": N}` makes its whole
process exit at that point instead, as one killed by the OOM killer would, and with `"once": PATH` it does
so only if PATH does not exist yet (it is created first), so a restarted process goes on.

A line `{"choices": {" A": -0.2, " B": -1.7}}`, optionally with `"match": "substring"`, gives fixed
log-probabilities for `choice_logprobs` (the judge's): a prompt gets the first such rule whose `match` occurs
anywhere in it (the judge's answers sit in the middle of its prompt), else the first rule without a `match`;
a choice the rule does not list gets -100. Only a script with such a line `supports_logprobs`; `"choices":
null` in a matched rule makes that prompt unscorable (None, as a failed request).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from selfalign.backends.base import Completion, SamplingParams, add_usage, cut_at_stop, new_usage

_WORD = re.compile(r"\S+")


class ScriptedBackend:
    name = "scripted"
    chunk_size = 16
    supports_logit_bias = False

    def __init__(self, model: str | None = None, rules: list[dict[str, str]] | None = None,
                 max_context: int = 8192):
        if rules is None:
            if not model:
                raise ValueError("the scripted backend needs --model PATH to a JSONL file of {'text': ...}")
            from selfalign.io.jsonl import InputError, read_json_lines

            rules = []
            for _lineno, obj in read_json_lines(model):
                if isinstance(obj, InputError):
                    raise obj
                rules.append(obj)
        self.choice_rules = [r for r in rules if "choices" in r]
        self.supports_logprobs = bool(self.choice_rules)
        settings = [r for r in rules if "text" not in r and "choices" not in r]
        rules = [r for r in rules if "text" in r]
        self.delay = float(next((r["delay"] for r in settings if "delay" in r), 0.0))
        self.log = next((r["log"] for r in settings if "log" in r), None)
        self.crash_after = next((int(r["crash_after"]) for r in settings if "crash_after" in r), None)
        self.exit = next((r for r in settings if "exit_after" in r), None)
        self.model = model or "inline"
        self.rules = rules
        self.max_context = int(next((r["max_context"] for r in settings if "max_context" in r), max_context))
        self.calls = 0
        self.prompts_seen = 0
        self.choice_usage = new_usage()  # a scoring request per prompt, its words as tokens
        self._turn = 0

    def count_tokens(self, text: str) -> int:
        return sum(1 for _ in _WORD.finditer(text))  # words, without a list of them: a 200 MB prompt stays cheap

    def _answer(self, prompt: str, seed: int | None = None) -> dict[str, Any]:
        tail = prompt[-400:]
        rules = [r for r in self.rules if r.get("seed", seed) == seed]
        for rule in rules:
            if rule.get("match") and rule["match"] in tail:
                return rule
        plain = [r for r in rules if not r.get("match")] or rules or self.rules
        rule = plain[self._turn % len(plain)]
        self._turn += 1
        return rule

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        if self.crash_after is not None and self.prompts_seen >= self.crash_after:
            raise RuntimeError("scripted engine crash (crash_after)")
        if self.exit and self.prompts_seen >= int(self.exit["exit_after"]):
            once = self.exit.get("once")
            try:
                if once is not None:
                    open(once, "x").close()  # atomic: of two processes here at once, one exits
                os._exit(70)
            except FileExistsError:
                pass
        self.calls += 1
        self.prompts_seen += len(prompts)
        out = []
        for p in prompts:
            if self.delay:
                time.sleep(self.delay)
            if self.log:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(p[-200:]) + "\n")
            rule = self._answer(p, params.seed)
            text, _ = cut_at_stop(rule["text"], params.stop)
            out.append(Completion(text=text, finish_reason=rule.get("finish_reason", "stop"),
                                  prompt_tokens=self.count_tokens(p), completion_tokens=len(text.split())))
        return out

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float] | None]:
        if not self.choice_rules:
            raise RuntimeError("this script has no {'choices': ...} line: it cannot give log-probabilities")
        self.calls += 1
        self.prompts_seen += len(prompts)
        out: list[dict[str, float] | None] = []
        for p in prompts:
            rule = next((r for r in self.choice_rules if r.get("match") and r["match"] in p), None) or next(
                (r for r in self.choice_rules if not r.get("match")), None)
            if rule is None:
                raise ValueError(f"no choices rule matches the prompt ending {p[-80:]!r}")
            if self.log:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(p[-200:]) + "\n")
            add_usage(self.choice_usage, 1, self.count_tokens(p))
            out.append(None if rule["choices"] is None
                       else {c: float(rule["choices"].get(c, -100.0)) for c in choices})
        return out

    def close(self) -> None:
        pass
