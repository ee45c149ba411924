"""Stage 2: principle-driven self-alignment.

Each prompt is rendered behind the shared prefix (header, principles, worked exemplars), completed,
split into internal thoughts and answer, and filtered; every drop has a named reason.

`n` > 1 samples each prompt n times (sample i > 0 with seed + i, so the completion cache keeps them apart). The
record is kept when a sample passes; its `response`, `thoughts` and `principles` are the first passing sample's.
It also carries `responses`, the pair for `selfalign judge`: two passing answers, or where only one passes, it and
a sampled answer that a gate on the answer dropped, with `response_gates` saying which (None: passed; else the
drop reason). Only answers go there: text that went through the thoughts/answer split and holds no thoughts,
principle citation, persona turn or template token (`TextGates.unparsed`), so the pair differs by content, not
by format; a raw completion (kept with `--keep missing_answer`) never does. `sample_drops` lists every dropped
sample's reason. A record whose samples all fail is dropped with the first sample's reason, the others named in its
detail.

`judge` asks the model, per principle the thoughts cite (the whole set where they cite none), whether the answer
follows it (stages/judge.py `follows_prompt`); a log-odds of Yes over No below `judge_threshold` drops the answer
as `judge_rejected`, naming the principle and the score. With n > 1 it checks every sample, as one more gate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from selfalign import assets
from selfalign.assets import Exemplar, assets_hash
from selfalign.backends.base import Backend, Completion, SamplingParams
from selfalign.records import AlignedRecord, Dropped, PromptRecord, Provenance
from selfalign.report.counts import Report
from selfalign.gates import TextGates
from selfalign.gates.meaning import MeaningGates
from selfalign.gates.text import ngrams, words
from selfalign.stages.common import answer_batch, chunks, count_tokens, drop
from selfalign.stages.common import clip as _clip
from selfalign.runner import Runner
from selfalign.stages.common import BATCH_SIZE, KEEP, MIN_WORDS, PERSONA, SEED
from selfalign.steps import (
    Amount,
    Count,
    Finite,
    Step,
    Temperature,
    TopP,
    Keep,
    not_applied,
    Principled,
    flags,
)
from selfalign.text.templates import principle_prefix, principle_prompt, principle_turn_stops

STAGE = "principle"
MIN_QUESTION_TOKENS = 32  # a principle set leaving less room than this for the question is refused up front
# a sampled answer dropped for one of these has an answer text that is bad as an answer: a pair's rejected side
# (not persona_leak or template_debris: that text holds the method or the template, so it differs by format)
REJECTABLE = frozenset({"too_short", "repetition_loop", "exemplar_leak", "unwarranted_refusal", "restates_question",
                        "off_topic", "wrong_language", "judge_rejected", "harmful_compliance",
                        "incomplete", "list_defect", "missing_part", "human_voice"})


class Principle(Principled):
    """Answer each prompt under the principle set, with internal thoughts; parse and filter (see the module doc)."""

    kind: ClassVar[str] = "principle"
    reads: ClassVar[str | None] = "prompts"
    writes: ClassVar[str] = "aligned"
    exemplar_file: ClassVar[str | None] = "default.yaml"
    exemplars: str | None = Field(None, description="Exemplars file (.yaml or .jsonl: user, thoughts, answer).")
    persona: str = Field("Sage", description=PERSONA)
    rename: str | None = Field(None, description="Replace the persona's name in answers.")
    temperature: Temperature = Field(0.5, description="Sampling temperature.")
    top_p: TopP = Field(0.95, description="Nucleus sampling.")
    max_tokens: Count = Field(256, description="New tokens per answer.")
    min_words: Amount = Field(25, description=MIN_WORDS)
    keep: Keep = Field(frozenset(), description=KEEP, json_schema_extra=flags(metavar="REASON"))
    apology_bias: bool = Field(True, description="Push down 'Sorry' (logit bias -100, where the backend takes one: "
                               "not Ollama or hosted APIs).")
    batch_size: Count | None = Field(None, description=BATCH_SIZE)
    seed: int | None = Field(None, description=SEED)
    n: Count = Field(1, description="Answers sampled per prompt. 2 gives each record a pair (responses) for "
                     "`selfalign judge` and `export --format dpo`; the first passing answer is kept as the response.")
    judge: bool = Field(False, description="Also ask the model whether each answer follows the principles its "
                        "thoughts cite (Yes/No log-odds, or a vote); below --judge-threshold it is dropped as "
                        "judge_rejected.")
    judge_threshold: Finite = Field(0.0, description="With --judge: the lowest log-odds of Yes over No kept.")
    judge_method: Literal["auto", "logprobs", "vote"] = Field(
        "auto", description="With --judge: auto (log-probabilities where the backend gives them), logprobs or vote.")

    @model_validator(mode="after")
    def _applies(self) -> Principle:
        if not self.judge:
            not_applied(self, "judge_threshold", "applies only with judge=true")
            not_applied(self, "judge_method", "applies only with judge=true")
        return self

    def sampling(self, persona: str) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              stop=principle_turn_stops(persona), seed=self.seed,
                              logit_bias={"Sorry": -100.0} if self.apology_bias else {})

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return PrincipleStage(backend, prepared["principles"], prepared["exemplars"], self, runner.report).run

    def two_answers(self) -> bool:
        return self.n > 1


def cited_principles(thoughts: str, principles: list[assets.Principle]) -> list[str]:
    """Ids of the principles the thoughts cite, in order of first mention.

    Forms read: `N (name)` (when number and name disagree, the name wins: models misnumber more often
    than they misname), `principle N` / `rules N and M`, and a short name on its own.
    """
    ids = {p.id for p in principles}
    by_name = {p.name.lower(): p.id for p in principles}
    hits: list[tuple[int, str]] = []
    spans: list[tuple[int, int]] = []
    for m in re.finditer(r"\b(\d+)\s*\(([^)]{1,40})\)", thoughts):
        pid = by_name.get(m.group(2).strip().lower(), m.group(1))
        hits.append((m.start(), pid))
        spans.append(m.span())
    for m in re.finditer(r"\b(?:principles?|rules?)\s+((?:#?\d+(?:\s*(?:,|and|&|or)\s*)?)+)", thoughts, re.I):
        for n in re.finditer(r"\d+", m.group(1)):
            pos = m.start(1) + n.start()
            if not any(a <= pos < b for a, b in spans):
                hits.append((pos, n.group()))
    lowered = thoughts.lower()
    for name, pid in by_name.items():
        for m in re.finditer(rf"\b{re.escape(name)}\b", lowered):
            if not any(a <= m.start() < b for a, b in spans):
                hits.append((m.start(), pid))
    found: list[str] = []
    for _, pid in sorted(hits):
        if pid in ids and pid not in found:
            found.append(pid)
    return found


class PrincipleStage:
    def __init__(self, backend: Backend, principles: list[assets.Principle], exemplars: list[Exemplar],
                 config: Principle, report: Report, meaning: MeaningGates | None = None):
        self.backend, self.principles, self.exemplars, self.cfg, self.report = (
            backend, principles, exemplars, config, report)
        self.prefix = principle_prefix(principles, exemplars, config.persona)
        self.params = config.sampling(config.persona)
        if not backend.supports_logit_bias:
            self.params.logit_bias = {}
        self.provenance = Provenance(stage=STAGE, backend=backend.name, model=backend.model,
                                     sampling=self.params.summary(),
                                     assets_hash=assets_hash(principles, exemplars, config.persona))
        p = re.escape(config.persona)
        # the template puts the answer after a blank line, at a line start: "\n\nSage: ..."
        self._answer_markers = [re.compile(rf"\n[ \t]*\n[ \t]*{p}[ \t]*:"), re.compile(rf"(?:^|\n)[ \t]*{p}[ \t]*:")]
        self.gates = TextGates(
            persona=config.persona, principles=[(x.id, x.name, x.text) for x in principles],
            exemplars=[(f"exemplar {i} answer", e.answer) for i, e in enumerate(exemplars, 1)]
            + [(f"exemplar {i} question", e.user) for i, e in enumerate(exemplars, 1)],
            min_words=config.min_words, keep=config.keep)
        self.meaning = meaning if meaning is not None else MeaningGates.for_keep(config.keep)
        if config.n < 1:
            raise ValueError(f"n must be at least 1 (got {config.n})")
        self.judge_method = None
        if config.judge:
            from selfalign.stages.judge import method_for

            self.judge_method = method_for(backend, config.judge_method)
            self.provenance.sampling["judge"] = {"method": self.judge_method, "threshold": config.judge_threshold}
        if config.n > 1:
            if config.temperature <= 0:
                raise ValueError(f"n {config.n} samples at temperature {config.temperature:g} are one answer "
                                 "repeated: give a temperature above 0")
            self.provenance.sampling["n"] = config.n
        self.check_fits()

    def check_fits(self) -> None:
        """Refuse before any work when the principles and exemplars leave no room for a question and its
        answer: otherwise every record would be dropped as prompt_too_long (and a resume would skip them)."""
        fixed = self.backend.count_tokens(principle_prompt(self.prefix, "", self.cfg.persona))
        room = self.backend.max_context - fixed - self.params.max_tokens
        if room < MIN_QUESTION_TOKENS:
            raise ValueError(
                f"the principle set and exemplars take {fixed} tokens; with --max-tokens {self.params.max_tokens} "
                f"that leaves {max(room, 0)} of the model's {self.backend.max_context}-token context for a question "
                f"(at least {MIN_QUESTION_TOKENS} needed): shorten the principles or exemplars, lower --max-tokens, "
                "or use a model with a longer context")

    def run(self, records: Iterable[PromptRecord]) -> Iterator[AlignedRecord | Dropped]:
        """Records out in input order, each kept or dropped with a reason."""
        for batch in chunks(records, self.cfg.batch_size, self.backend):
            # the judge's check is one more gate on each sample, so a sample it rejects can be a pair's other side
            samples = [self.gate(s) if self.judge_method else s for s in (self.answer(batch, i) for i in range(self.cfg.n))]
            yield from (samples[0] if self.cfg.n == 1 else
                        [self.combine([s[k] for s in samples]) for k in range(len(batch))])

    def answer(self, batch: list[PromptRecord], sample: int) -> list[AlignedRecord | Dropped]:
        """One sampled answer per record, through every gate; with n > 1 a drop by an answer gate keeps the
        answer it dropped (`_answer`), for the pair."""
        params = self.params if sample == 0 else self.params.model_copy(
            update={"seed": (self.params.seed or 0) + sample})
        judge = self.judge if self.cfg.n == 1 else self._judge_keeping_answer
        outs = answer_batch(STAGE, self.backend, params, batch, self.render, judge)
        return self._keep_answers(_carry_unsplit(outs, self.meaning.apply(STAGE, outs, "response")))

    def _keep_answers(self, outs: list[AlignedRecord | Dropped]) -> list[AlignedRecord | Dropped]:
        """With n > 1, a drop by a gate on the answer keeps the answer (as `_answer`: never written out); a meaning
        gate's or the judge's drop holds the record, answer included."""
        if self.cfg.n > 1:
            for o in outs:
                if isinstance(o, Dropped) and o.drop_reason in REJECTABLE and not getattr(o, "_answer", None) \
                        and not getattr(o, "_unsplit", False):
                    o._answer = (o.record or {}).get("response")
        return outs

    def _judge_keeping_answer(self, rec: PromptRecord, comp: Completion) -> AlignedRecord | Dropped:
        out = self.judge(rec, comp)
        parts = self.split(comp.text)
        if parts is None:  # no answer turn: what a --keep let through is the raw completion, never a pair's side
            out._unsplit = True
        elif isinstance(out, Dropped) and out.drop_reason in REJECTABLE:
            out._answer = self._renamed(parts[1].strip())  # as a kept answer would be
        return out

    def _renamed(self, answer: str) -> str:
        return re.sub(rf"\b{re.escape(self.cfg.persona)}\b", self.cfg.rename, answer) if self.cfg.rename else answer

    def combine(self, outs: list[AlignedRecord | Dropped]) -> AlignedRecord | Dropped:
        """One record from its n samples (see the module docstring)."""
        kept = [o for o in outs if not isinstance(o, Dropped)]
        drops = [{"sample": i, "drop_reason": o.drop_reason, "detail": o.detail}
                 for i, o in enumerate(outs) if isinstance(o, Dropped)]
        rejected = [(getattr(o, "_answer", None), o.drop_reason) for o in outs if isinstance(o, Dropped)]
        if not kept:
            first = outs[0]
            assert isinstance(first, Dropped)
            first.detail = (f"all {len(outs)} samples dropped ({', '.join(d['drop_reason'] for d in drops)}); "
                            f"sample 0: {first.detail}")
            return first
        pair = [(o.response, None) for o in kept if not getattr(o, "_unsplit", False)]
        pair += [(a, why) for a, why in rejected if a and a.strip()]
        distinct: dict[str, tuple[str, str | None]] = {}  # by text up to whitespace; the first sample wins
        for a, why in pair:
            if self.gates.unparsed(a, kept[0].prompt):
                continue  # thoughts, a citation, a persona turn or a template token: not an answer
            distinct.setdefault(" ".join(a.split()), (a, why))
        chosen = list(distinct.values())[:2]
        return type(kept[0]).model_validate({**kept[0].model_dump(), "responses": [a for a, _ in chosen],
                                             "response_gates": [why for _, why in chosen], "sample_drops": drops})

    def gate(self, outs: list[AlignedRecord | Dropped]) -> list[AlignedRecord | Dropped]:
        """`principle --judge`: each kept answer checked by the model against the principles its thoughts cite."""
        from selfalign.stages.judge import checks_for, follows_prompt, follows_scores

        by_id = {p.id: p for p in self.principles}
        asks = [(i, pid, follows_prompt(o.prompt, o.response, ps)) for i, o in enumerate(outs)
                if not isinstance(o, Dropped) for pid, ps in checks_for(o.principles, self.principles)]
        if not asks:
            return outs
        new = 1 if self.judge_method == "logprobs" else 4  # the vote's replies: up to 4 tokens
        too_long = {i: n for (i, _, _), n in zip(asks, count_tokens(self.backend, [a[2] for a in asks]), strict=True)
                    if n + new > self.backend.max_context}
        asks = [a for a in asks if a[0] not in too_long]
        scores = follows_scores(self.backend, [a[2] for a in asks], self.judge_method or "logprobs",
                                seed=self.cfg.seed or 0)
        per: dict[int, dict[str, Any]] = {}
        for (i, pid, _), score in zip(asks, scores, strict=True):
            per.setdefault(i, {})[pid] = score
        out = list(outs)
        for i, n in too_long.items():
            out[i] = drop(STAGE, outs[i], "prompt_too_long",
                          f"the judge's prompt: {n} tokens + {new} new > context {self.backend.max_context}")
        for i, got in per.items():
            if i in too_long:
                continue
            if err := next((v for v in got.values() if isinstance(v, tuple)), None):
                out[i] = drop(STAGE, outs[i], *err)
                continue
            pid, low = min(got.items(), key=lambda kv: kv[1])
            if low < self.cfg.judge_threshold:
                name = by_id[pid].name if pid in by_id else "the whole set"
                out[i] = drop(STAGE, outs[i], "judge_rejected",
                              f"principle {pid} ({name}): log-odds of Yes over No {low:.2f} < {self.cfg.judge_threshold:g}"
                              f" ({self.judge_method}): {_clip(outs[i].response, 120)}")
            else:
                rec = outs[i]
                out[i] = type(rec).model_validate({**rec.model_dump(), "judge_gate": {
                    "scores": got, "method": self.judge_method, "threshold": self.cfg.judge_threshold}})
        return self._keep_answers(_carry_unsplit(outs, out))

    def render(self, rec: PromptRecord) -> str:
        return principle_prompt(self.prefix, rec.prompt, self.cfg.persona)

    def split(self, text: str) -> tuple[str, str] | None:
        """Thoughts and answer, by the template's structure: the first answer turn at a line start,
        preferring one after a blank line (so a "Sage: ..." line quoted inside the thoughts is not it)."""
        for rx in self._answer_markers:
            m = rx.search(text)
            if m:
                return text[: m.start()].strip(), text[m.end():].strip()
        return None

    def judge(self, rec: PromptRecord, comp: Completion) -> AlignedRecord | Dropped:
        """Parse one completion into thoughts and answer, apply the text gates."""
        text = comp.text
        keep = self.cfg.keep
        # before the split: a completion cut at the token limit often has no answer turn yet
        if why := self.gates.truncated(comp.finish_reason, comp.completion_tokens or self.params.max_tokens):
            return drop(STAGE, rec, "truncated", f"{why}: {_clip(text, 120)}")
        parts = self.split(text)
        if parts is None and "missing_answer" not in keep:
            return drop(STAGE, rec, "missing_answer", _clip(text))
        thoughts, answer = parts or ("", text.strip())
        if not answer and "missing_answer" not in keep:
            return drop(STAGE, rec, "missing_answer", _clip(text))
        if len(words(thoughts)) < 3 and "missing_thoughts" not in keep:
            return drop(STAGE, rec, "missing_thoughts", _clip(text))
        if "answer_in_thoughts" not in keep and (why := answer_in_thoughts(thoughts, answer)):
            return drop(STAGE, rec, "answer_in_thoughts", why)
        v = self.gates.check(rec.prompt, answer, comp.finish_reason, comp.completion_tokens, rec.question_type)
        if v.reason:
            return drop(STAGE, rec, v.reason, f"{v.detail}: {_clip(v.answer, 160)}")
        # after the answer's own gates, so an answer with a defect of its own is dropped for that defect
        if "miscited_principle" not in keep and (why := miscited(thoughts, self.principles)):
            return drop(STAGE, rec, "miscited_principle", f"{why}: {_clip(thoughts, 160)}")
        answer = self._renamed(v.answer)
        return AlignedRecord.model_validate(rec.with_stage(
            self.provenance, thoughts=thoughts, response=answer,
            principles=cited_principles(thoughts, self.principles)))


_CITATION = re.compile(r"(?:^|\b(?:by|per|under|follow(?:s|ing)?|principles?|rules?|and|or)\s+|[,;&]\s*)"
                       r"(\d{1,3})\s*\(([A-Za-z][A-Za-z &/'-]{0,38})\)", re.IGNORECASE)


def _stems(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower())}


def miscited(thoughts: str, principles: list[assets.Principle]) -> str | None:
    """A citation in the thoughts ("by N (name)") that the principle set does not hold: no principle N, or principle
    N given another principle's name, as in "by 15 (step-by-step)" where 15 is (creative) and step-by-step is 13.
    The thoughts are the method: a model that invents principles or mixes them up did not answer under them, and
    on real small-model output such answers are almost all junk. Names are compared by words (their first five
    letters), so a name that paraphrases principle N or borrows a word of its text ("2 (accuracy)" for "gives
    accurate facts", "14 (balanced & informative perspectives)") passes, and so does a name that is no principle's
    ("3 (useful)"); a name alone or "principle 7" is not read here; only sets whose ids are numbers are checked (a
    user's set may name its principles instead)."""
    numbered = {p.id: p for p in principles if p.id.isdigit()}
    if not numbered:
        return None
    for m in _CITATION.finditer(thoughts):
        n, name = m.group(1).lstrip("0") or "0", m.group(2).strip()
        if n not in numbered:
            return f"cites {n} ({name}); the set has no principle {n}"
        p, mine = numbered[n], _stems(name)
        if mine & _stems(f"{p.name} {p.text}"):
            continue
        if other := next((q for q in principles if q.id != n and mine & _stems(q.name)), None):
            return f"cites {n} ({name}); {n} is ({p.name}), {other.id} is ({other.name})"
    return None


def _carry_unsplit(before: list[Any], after: list[Any]) -> list[Any]:
    """`after` (the same samples, some remade by a later gate) with the mark of a sample that had no answer split."""
    for b, a in zip(before, after, strict=True):
        if getattr(b, "_unsplit", False):
            a._unsplit = True
    return after


_BACKREF = re.compile(r"^\W*(?:see|as|like)\s+(?:(?:i|we)\s+(?:said|wrote|explained)\s+)?(?:above|before|earlier|"
                      r"previously|stated|mentioned|in my thoughts)\b", re.IGNORECASE)


def answer_in_thoughts(thoughts: str, answer: str) -> str | None:
    """The answer written into the thoughts slot: repeated there, or the answer points back at it."""
    if _BACKREF.match(answer) and len(words(answer)) < 12:
        return f"the answer only points back: {_clip(answer, 60)}"
    a = ngrams(words(answer), 5)
    if len(a) >= 3 and len(a & ngrams(words(thoughts), 5)) / len(a) >= 0.5:
        return "the thoughts already hold the answer"
    return None
