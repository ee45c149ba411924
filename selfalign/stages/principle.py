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
from selfalign.report import Report
from selfalign.stages.common import answer_batch, batched, cut_new_turn, cut_repetition, drop, opens_with_apology
from selfalign.templates import principle_prefix, principle_prompt, principle_turn_stops

STAGE = "principle"


class PrincipleConfig(BaseModel):
    persona: str = "Sage"
    rename: str | None = None  # replace the internal persona name in answers with this one
    temperature: float = 0.5
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    batch_size: int | None = None  # prompts per backend call; default: the backend's chunk_size
    min_chars: int = 160  # answers shorter than this are dropped (0: off)
    push_down_apologies: bool = True  # logit bias -100 on "Sorry", where the backend supports it
    drop_apologies: bool = True
    drop_leaks: bool = True
    cut_repetition: bool = True

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
                 config: PrincipleConfig, report: Report):
        self.backend, self.principles, self.exemplars, self.cfg, self.report = (
            backend, principles, exemplars, config, report)
        self.prefix = principle_prefix(principles, exemplars, config.persona)
        self.params = config.sampling(config.persona)
        if not backend.supports_logit_bias:
            self.params.logit_bias = {}
        self.provenance = Provenance(stage=STAGE, backend=backend.name, model=backend.model,
                                     sampling=self.params.summary(),
                                     assets_hash=assets_hash(principles, exemplars, config.persona))
        self._answer_marker = re.compile(rf"\n\s*{re.escape(config.persona)}\s*:")
        self._next_turn = re.compile(rf"(?:^|\s){re.escape(config.persona)}\s*:")
        self._leaks = [e.answer.strip()[:60].lower() for e in exemplars] + [
            e.user.strip().lower() for e in exemplars if len(e.user.strip()) > 30]

    def run(self, records: Iterable[PromptRecord]) -> Iterator[AlignedRecord | Dropped]:
        """Records out in input order, each kept or dropped with a reason."""
        for batch in batched(records, self.cfg.batch_size or getattr(self.backend, "chunk_size", 16)):
            self.report.read += len(batch)
            for out in answer_batch(STAGE, self.backend, self.params, batch, self.render, self.judge):
                if isinstance(out, Dropped):
                    self.report.drop(out.drop_reason)
                else:
                    self.report.kept += 1
                    self.report.principles.update(out.principles)
                yield out

    def render(self, rec: PromptRecord) -> str:
        return principle_prompt(self.prefix, rec.prompt, self.cfg.persona)

    def judge(self, rec: PromptRecord, comp: Completion) -> AlignedRecord | Dropped:
        """Parse one completion into thoughts and answer, apply the filters."""
        text = comp.text
        m = self._answer_marker.search(text)
        if m is None:
            return drop(STAGE, rec, "missing_answer", _clip(text))
        thoughts, answer = text[: m.start()].strip(), text[m.end():].strip()
        if not thoughts:
            return drop(STAGE, rec, "missing_thoughts", _clip(text))
        if not answer:
            return drop(STAGE, rec, "missing_answer", _clip(text))
        if re.match(r"\s*(User|Human)\s*:", answer, re.I):
            return drop(STAGE, rec, "starts_user_turn", _clip(answer))
        answer, _ = cut_new_turn(answer)
        again = self._next_turn.search(answer)
        if again:  # the model started another persona turn: the answer ends there
            answer = answer[: again.start()].rstrip()
        if self.cfg.cut_repetition:
            answer, looped = cut_repetition(answer)
            if looped and len(answer) < max(self.cfg.min_chars, 1):
                return drop(STAGE, rec, "repetition_loop", _clip(text))
        if self.cfg.drop_apologies and opens_with_apology(answer):
            return drop(STAGE, rec, "apology_opening", _clip(answer))
        if self.cfg.drop_leaks:
            low = answer.lower()
            if "(internal thoughts)" in low or f"{self.cfg.persona.lower()}:" in low:
                return drop(STAGE, rec, "persona_leak", _clip(answer))
            if any(leak and leak in low for leak in self._leaks):
                return drop(STAGE, rec, "exemplar_leak", _clip(answer))
        if len(answer) < self.cfg.min_chars:
            return drop(STAGE, rec, "too_short", f"{len(answer)} chars < {self.cfg.min_chars}")
        if self.cfg.rename:
            answer = re.sub(rf"\b{re.escape(self.cfg.persona)}\b", self.cfg.rename, answer)
        return AlignedRecord.model_validate(rec.with_stage(
            self.provenance, thoughts=thoughts, response=answer,
            principles=cited_principles(thoughts, self.principles)))


def _clip(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."
