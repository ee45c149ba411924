"""Stage 2: principle-driven self-alignment.

Each prompt is rendered behind the shared prefix (header, principles, worked exemplars), completed,
split into internal thoughts and answer, and filtered; every drop has a named reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pydantic import BaseModel

from selfalign.assets import Exemplar, Principle, assets_hash
from selfalign.backends.base import Backend, Completion, SamplingParams
from selfalign.records import AlignedRecord, Dropped, PromptRecord, Provenance
from selfalign.counts import Report
from selfalign.gates import TextGates
from selfalign.gates.meaning import MeaningGates
from selfalign.gates.text import ngrams, words
from selfalign.stages.common import answer_batch, batched, drop
from selfalign.stages.common import clip as _clip
from selfalign.templates import principle_prefix, principle_prompt, principle_turn_stops

STAGE = "principle"
MIN_QUESTION_TOKENS = 32  # a principle set leaving less room than this for the question is refused up front


class PrincipleConfig(BaseModel):
    persona: str = "Sage"
    rename: str | None = None  # replace the internal persona name in answers with this one
    temperature: float = 0.5
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    batch_size: int | None = None  # prompts per backend call; default: the backend's chunk_size
    min_words: int = 25  # floor for open questions (a query asking for brevity needs 1 word); 0: off
    push_down_apologies: bool = True  # logit bias -100 on "Sorry", where the backend supports it
    keep: frozenset[str] = frozenset()  # drop reasons turned off (--keep)
    embedding_model: str | None = None  # for off_topic / restates_question

    def sampling(self, persona: str) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              stop=principle_turn_stops(persona), seed=self.seed,
                              logit_bias={"Sorry": -100.0} if self.push_down_apologies else {})


def cited_principles(thoughts: str, principles: list[Principle]) -> list[str]:
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
    def __init__(self, backend: Backend, principles: list[Principle], exemplars: list[Exemplar],
                 config: PrincipleConfig, report: Report, meaning: MeaningGates | None = None):
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
        self.meaning = meaning if meaning is not None else MeaningGates.for_keep(config.keep, config.embedding_model)
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
        for batch in batched(records, self.cfg.batch_size or getattr(self.backend, "chunk_size", 16)):
            outs = answer_batch(STAGE, self.backend, self.params, batch, self.render, self.judge)
            yield from self.meaning.apply(STAGE, outs, "response")

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
        answer = v.answer
        if self.cfg.rename:
            answer = re.sub(rf"\b{re.escape(self.cfg.persona)}\b", self.cfg.rename, answer)
        return AlignedRecord.model_validate(rec.with_stage(
            self.provenance, thoughts=thoughts, response=answer,
            principles=cited_principles(thoughts, self.principles)))


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
