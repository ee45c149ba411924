"""Critique and revise: each aligned answer is checked against some principles and, where it breaks one, rewritten.

For every record the stage picks the principles to check: those its internal thoughts cited, plus `sample`
others from the set, drawn by a generator seeded with the seed and the record's id (so the choice does not
depend on order, batching, shards or a resume). The prompt shows worked reviews of our own
(`exemplars/critique.yaml`), then the principles to check, the question and the answer, and the model writes:

    Critique: <two short sentences, the last saying which principles the answer breaks>
    Violations: <ids of the checked principles the answer breaks, e.g. `7, 9`, or `none`>
    Revision: <the answer rewritten to follow them>      (only when there are violations)

The format is parsed strictly: anything else is a drop with a named reason (see `REASONS`), never a guess.
A record with no violation passes with its critique and no revision; one with a violation keeps its original
`response` and gains `revision`, which makes it a preference pair for `export --format dpo`. The revision goes
through the same text gates (and meaning gates) as an answer of `principle`; a prompt too long for the model's
context is dropped as `prompt_too_long` (never cut).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from selfalign.assets import CritiqueExemplar, Principle, assets_hash
from selfalign.backends.base import Backend, Completion, SamplingParams
from selfalign.gates import REASONS as GATE_REASONS
from selfalign.gates import REVISION_REASONS
from selfalign.gates import TextGates
from selfalign.gates import parse_keep as gate_parse_keep
from selfalign.gates.meaning import MeaningGates
from selfalign.gates.text import find_loop
from selfalign.records import AlignedRecord, CritiquedRecord, Dropped, Provenance, normalize_text
from selfalign.runner import Runner
from selfalign.stages.common import BATCH_SIZE, MIN_WORDS, PERSONA, answer_batch, chunks, clip, drop
from selfalign.steps import (
    Amount,
    Count,
    Latest,
    Penalty,
    Step,
    Temperature,
    TopP,
    keep_reasons,
    Principled,
    flags,
)

STAGE = "critique"
TEMPLATE = "critique-1"  # bump when the prompt text below changes (it is part of the provenance)
MIN_ROOM_TOKENS = 64  # the fixed prompt must leave at least this much room for a record's principles, Q and A

# the stage's own drop reasons; the gates' reasons (on the revision) come on top of these
REASONS: dict[str, str] = {
    "nothing_to_check": "the record cites no principle of the set and no others were to be sampled",
    "critique_unparsed": "the output is not `Critique: ... / Violations: ... / Revision: ...` as the examples show",
    "violation_unchecked": "the critique names a principle that was not among those to check",
    "critique_inconsistent": "`Violations: none` yet a revision follows, or the critique says nothing is broken "
                             "yet names violations",
    "revision_empty": "violations are named but no revision follows",
    "revision_copies_answer": "the revision is the original answer again",
}
# gate reasons that apply to a revision and may be turned off with `keep`
KEEPABLE = REVISION_REASONS
# every reason this stage may drop with, besides prompt_too_long and backend_error (for --help and reports)
ALL_REASONS = {**REASONS, **{k: GATE_REASONS[k] for k in KEEPABLE}}

HEADER = (
    "Below, {persona}, an AI assistant, reviews answers it gave to users. For each one it reads the "
    "principles to check, writes a short critique of the answer against them, then lists the numbers of "
    "the principles the answer breaks, or \"none\". Only when the answer breaks one, {persona} writes a "
    "revised answer that follows every principle listed.\n\n"
)
MARK = "### Review"


def parse_keep(values: list[str] | None) -> frozenset[str]:
    """`keep` values (repeatable, comma-separated, `all`) as the gate reasons this stage turns off."""
    return gate_parse_keep(values, KEEPABLE, "keep {name}: not a reason the critique stage can turn off")


Keep = keep_reasons(parse_keep)


class Critique(Principled):
    """Check each answer against the principles its thoughts cite plus `sample` more, and revise it where one is
    broken; writes pairs (response, revision) for Judge and Export(format="dpo"), leaving the answers as they are."""

    kind: ClassVar[str] = "critique"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "pairs"
    exemplar_file: ClassVar[str | None] = "critique.yaml"
    exemplar_loader: ClassVar[str] = "load_critique_exemplars"
    exemplars: str | None = Field(None, description="Critique exemplars (.yaml or .jsonl: user, answer, check, "
                                  "critique, violations, revision); default: the bundled exemplars/critique.yaml.")
    persona: str = Field("Sage", description=PERSONA)
    sample: Amount = Field(2, description="Principles drawn from the set besides those the thoughts cite (seeded "
                           "per record).")
    temperature: Temperature = Field(0.3, description="Sampling temperature.")
    top_p: TopP = Field(0.9, description="Nucleus sampling.")
    max_tokens: Count = Field(384, description="New tokens per answer.")
    # above 1 it also penalises the format words the prompt is full of
    repetition_penalty: Penalty = Field(1.0, description="Repetition penalty.")
    min_words: Amount = Field(25, description=MIN_WORDS)
    keep: Keep = Field(frozenset(), description="Keep a revision this gate would drop (repeatable or "
                       "comma-separated; 'all'): " + ", ".join(KEEPABLE) + ".", json_schema_extra=flags(metavar="REASON"))
    batch_size: Count | None = Field(None, description=BATCH_SIZE)
    seed: int | None = Field(None, description="Random seed: the principle draw's (default 0) and the backend's "
                             "sampling.")

    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              repetition_penalty=self.repetition_penalty, stop=critique_stops(), seed=self.seed)

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return CritiqueStage(backend, prepared["principles"], prepared["exemplars"], self, runner.report).run

    def input_model(self) -> type[BaseModel]:
        return AlignedRecord

    def written(self, latest: Latest, inputs: list[str], out: str) -> None:
        super().written(latest, inputs, out)
        latest["critiqued"] = [out]  # Export(revised=True) reads every critiqued answer


# -- choosing what to check ------------------------------------------------------------------------------
def select_principles(rec: AlignedRecord, principles: list[Principle], sample: int, seed: int | None) -> list[str]:
    """Ids to check, in the set's order: those the record cites, plus `sample` others drawn with a generator
    seeded by (seed, record id)."""
    ids = [p.id for p in principles]
    cited = {pid for pid in rec.principles if pid in ids}
    rest = [pid for pid in ids if pid not in cited]
    rng = random.Random(f"{seed or 0}\x1f{rec.id}")
    drawn = set(rng.sample(rest, min(max(sample, 0), len(rest))))
    return [pid for pid in ids if pid in cited or pid in drawn]


# -- the prompt ------------------------------------------------------------------------------------------
def critique_stops() -> list[str]:
    """Where a critique must end: the start of a new review, or a new question, answer or critique."""
    return [f"\n{MARK}", "\nUser:", "\nAnswer:", "\nPrinciples to check:", "\nCritique:"]


def render_check(principles: list[Principle]) -> str:
    return "\n".join(f"{p.id} ({p.name}). {p.text}" for p in principles)


def _review(check: list[Principle], user: str, answer: str) -> str:
    return f"{MARK}\nPrinciples to check:\n{render_check(check)}\n\nUser: {user.strip()}\nAnswer: {answer.strip()}\n\n"


def critique_prefix(exemplars: list[CritiqueExemplar], persona: str) -> str:
    """Header and worked reviews: the part shared by every record (the backend reuses its cache)."""
    parts = [HEADER.format(persona=persona)]
    for ex in exemplars:
        body = f"Critique: {ex.critique}\nViolations: {', '.join(ex.violations) if ex.violations else 'none'}\n"
        if ex.revision:
            body += f"Revision: {ex.revision}\n"
        parts.append(_review(ex.check, ex.user, ex.answer) + body + "\n")
    return "".join(parts)


def critique_prompt(prefix: str, check: list[Principle], question: str, answer: str) -> str:
    return prefix + _review(check, question, answer) + "Critique:"


# -- parsing ---------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    critique: str
    violations: list[str]
    revision: str | None


class Unparsed(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


_LABEL = r"^[ \t]*\**[ \t]*{name}[ \t]*\**[ \t]*:[ \t]*\**"
_VIOLATIONS = re.compile(_LABEL.format(name=r"violations?"), re.IGNORECASE | re.MULTILINE)
_REVISION = re.compile(_LABEL.format(name=r"revis(?:ion|ed answer)"), re.IGNORECASE | re.MULTILINE)
_NONE = re.compile(r"(?:none|no violations?|no principles?(?: (?:is|are) broken)?)[ \t]*[.!]?", re.IGNORECASE)
# "breaks none of the principles", but not "breaks 7 and none of the others"
_SAYS_NONE = re.compile(r"\b(?:breaks|violates) (?:none(?! of the other)|no(?:ne of the)? principles?)\b", re.IGNORECASE)
_ITEM = re.compile(r"(?:principles?|rules?)?\s*#?\s*([\w.-]+?)\s*(?:\(\s*([^)]*?)\s*\))?\.?", re.IGNORECASE)


def parse_violations(value: str, checked: list[Principle], known: list[Principle] | None = None) -> list[str]:
    """Ids from a `Violations:` value: `none`, or items `7`, `7 (candor)`, `candor`, split by commas or `and`.
    A name wins over a number that disagrees with it (models misnumber more often than they misname).
    An item naming a principle that was not checked (one of `known`, or any number) is `violation_unchecked`;
    anything else that is not an id is `critique_unparsed`."""
    value = value.strip().strip("*").strip()
    if _NONE.fullmatch(value):
        return []
    by_id = {p.id: p for p in checked}
    by_name = {p.name.lower(): p.id for p in checked}
    known = known or []
    known_ids = {p.id for p in known}
    known_names = {p.name.lower(): p.id for p in known}
    bad = Unparsed("critique_unparsed", f"Violations: {clip(value, 80)!r} is not ids or 'none'")
    found: list[str] = []
    unchecked: list[str] = []
    for item in filter(None, (x.strip() for x in re.split(r"\s*(?:,|;|&|\band\b)\s*", value.rstrip(".")))):
        m = _ITEM.fullmatch(item)
        name = (m.group(2) if m and m.group(2) else item).lower()
        pid = by_name.get(name) or (m.group(1) if m else None)
        if pid in by_id:
            if pid not in found:
                found.append(pid)
        elif name in known_names or pid is not None and (pid in known_ids or pid.isdigit()):
            unchecked.append(item)
        else:
            raise bad
    if unchecked:
        raise Unparsed("violation_unchecked", f"names {', '.join(unchecked)}; checked were "
                       f"{', '.join(p.id for p in checked)}")
    if not found:
        raise bad
    order = [p.id for p in checked]
    return sorted(found, key=order.index)


def parse_critique(text: str, checked: list[Principle], known: list[Principle] | None = None) -> Parsed:
    """The critique, violations and revision of one completion (the text after `Critique:`); raises
    `Unparsed` with a drop reason when it does not follow the format."""
    heads = list(_VIOLATIONS.finditer(text))
    if not heads:
        raise Unparsed("critique_unparsed", f"no 'Violations:' line: {clip(text, 160)}")
    if len(heads) > 1:
        raise Unparsed("critique_unparsed", f"{len(heads)} 'Violations:' lines (ran on into another review)")
    head = heads[0]
    critique = text[: head.start()].strip()
    if _REVISION.search(critique):
        raise Unparsed("critique_unparsed", "the revision comes before the violations")
    if len(critique.split()) < 3:
        raise Unparsed("critique_unparsed", f"no critique before 'Violations:': {clip(text, 160)}")
    line_end = text.find("\n", head.end())
    value = text[head.end(): line_end if line_end >= 0 else len(text)]
    rest = text[line_end:] if line_end >= 0 else ""
    violations = parse_violations(value, checked, known)
    revision: str | None = None
    if rest.strip():
        revs = list(_REVISION.finditer(rest))
        if not revs or rest[: revs[0].start()].strip():
            raise Unparsed("critique_unparsed", f"text after the violations that is not a revision: {clip(rest, 120)}")
        if len(revs) > 1:
            raise Unparsed("critique_unparsed", f"{len(revs)} 'Revision:' lines")
        revision = rest[revs[0].end():].strip() or None
    if not violations and revision is not None:
        raise Unparsed("critique_inconsistent", f"'Violations: none' but a revision follows: {clip(revision, 120)}")
    if violations and _SAYS_NONE.search(critique):
        raise Unparsed("critique_inconsistent", f"the critique says nothing is broken, yet names "
                       f"{', '.join(violations)}: {clip(critique, 120)}")
    if violations and revision is None:
        raise Unparsed("revision_empty", f"violations {', '.join(violations)} but no revision")
    return Parsed(" ".join(critique.split()), violations, revision)


# -- the stage -------------------------------------------------------------------------------------------
class CritiqueStage:
    def __init__(self, backend: Backend, principles: list[Principle], exemplars: list[CritiqueExemplar],
                 config: Critique, report: Any = None, meaning: MeaningGates | None = None):
        self.backend, self.cfg, self.report = backend, config, report
        self.principles = principles
        self.by_id = {p.id: p for p in principles}
        self.prefix = critique_prefix(exemplars, config.persona)
        self.params = config.sampling()
        self.provenance = Provenance(
            stage=STAGE, backend=backend.name, model=backend.model, sampling=self.params.summary(),
            assets_hash=assets_hash(principles, exemplars, config.persona, TEMPLATE),
            sample=config.sample, selection_seed=config.seed or 0)
        texts = [(f"critique exemplar {i} answer", e.revision or e.answer) for i, e in enumerate(exemplars, 1)]
        texts += [(f"critique exemplar {i} question", e.user) for i, e in enumerate(exemplars, 1)]
        self.gates = TextGates(persona=config.persona, principles=[(p.id, p.name, p.text) for p in principles],
                               exemplars=texts, min_words=config.min_words, keep=config.keep)
        self.meaning = meaning if meaning is not None else MeaningGates.for_keep(config.keep)
        self.check_fits()

    def check_fits(self) -> None:
        """Refuse before any work when the worked reviews leave no room for a record in the model's context."""
        fixed = self.backend.count_tokens(critique_prompt(self.prefix, [], "", ""))
        room = self.backend.max_context - fixed - self.params.max_tokens
        if room < MIN_ROOM_TOKENS:
            raise ValueError(
                f"the critique exemplars take {fixed} tokens; with max_tokens {self.params.max_tokens} that leaves "
                f"{max(room, 0)} of the model's {self.backend.max_context}-token context for a record (at least "
                f"{MIN_ROOM_TOKENS} needed): use fewer or shorter exemplars, fewer new tokens, or a longer context")

    def select(self, rec: AlignedRecord) -> list[str]:
        return select_principles(rec, self.principles, self.cfg.sample, self.cfg.seed)

    def render(self, rec: AlignedRecord, check: list[str]) -> str:
        return critique_prompt(self.prefix, [self.by_id[i] for i in check], rec.prompt, rec.response)

    def judge(self, rec: AlignedRecord, check: list[str], comp: Completion) -> CritiquedRecord | Dropped:
        """Parse one completion and check its revision."""
        text = comp.text
        if why := self.gates.truncated(comp.finish_reason, comp.completion_tokens or self.params.max_tokens):
            return drop(STAGE, rec, "truncated", f"{why}: {clip(text, 120)}")
        try:
            parsed = parse_critique(text, [self.by_id[i] for i in check], self.principles)
        except Unparsed as e:
            return drop(STAGE, rec, e.reason, e.detail)
        if "repetition_loop" not in self.cfg.keep and (loop := find_loop(parsed.critique)) and loop[1] > 2:
            return drop(STAGE, rec, "repetition_loop", f"critique: {loop[1]} copies from character {loop[0]}: "
                        f"{clip(parsed.critique, 120)}")
        revision = parsed.revision
        if revision is not None:
            if normalize_text(revision) == normalize_text(rec.response):
                return drop(STAGE, rec, "revision_copies_answer", clip(revision, 160))
            v = self.gates.check(rec.prompt, revision, "stop", comp.completion_tokens, rec.question_type)
            if v.reason:
                return drop(STAGE, rec, v.reason, f"revision: {v.detail}: {clip(v.answer, 160)}")
            revision = v.answer
            if normalize_text(revision) == normalize_text(rec.response):
                return drop(STAGE, rec, "revision_copies_answer", clip(revision, 160))
        return CritiquedRecord.model_validate(rec.with_stage(
            self.provenance, critique=parsed.critique, revision=revision, checked_principles=check,
            violations=parsed.violations))

    def run(self, records: Iterable[AlignedRecord]) -> Iterator[CritiquedRecord | Dropped]:
        """Records out in input order, each kept (with or without a revision) or dropped with a reason."""
        for batch in chunks(records, self.cfg.batch_size, self.backend):
            outs: list[Any] = [None] * len(batch)
            todo: list[tuple[int, AlignedRecord, list[str]]] = []
            for i, rec in enumerate(batch):
                check = self.select(rec)
                if check:
                    todo.append((i, rec, check))
                else:
                    outs[i] = drop(STAGE, rec, "nothing_to_check", "no cited principle in the set, sample 0")
            if todo:
                checks = {id(rec): check for _, rec, check in todo}
                got = answer_batch(STAGE, self.backend, self.params, [rec for _, rec, _ in todo],
                                   lambda r, checks=checks: self.render(r, checks[id(r)]),
                                   lambda r, c, checks=checks: self.judge(r, checks[id(r)], c))
                for (i, _, _), out in zip(todo, got, strict=True):
                    outs[i] = out
            yield from self._meaning(outs)

    def _meaning(self, outs: list[Any]) -> list[Any]:
        """The meaning gates on the revisions (records passing unchanged have nothing new to judge)."""
        idx = [i for i, o in enumerate(outs) if isinstance(o, CritiquedRecord) and o.revision]
        if idx:
            for i, o in zip(idx, self.meaning.apply(STAGE, [outs[i] for i in idx], "revision"), strict=True):
                outs[i] = o
        if self.report is not None:
            for o in outs:
                if isinstance(o, CritiquedRecord):
                    key = "revised" if o.revision else "no_violation"
                    self.report.extra[key] = self.report.extra.get(key, 0) + 1
        return outs


def critique(records: Iterable[AlignedRecord], backend: Backend, config: Critique,
             principles: list[Principle], exemplars: list[CritiqueExemplar], report: Any = None,
             meaning: MeaningGates | None = None) -> Iterator[CritiquedRecord | Dropped]:
    """Each record critiqued against its cited principles and `config.sample` others; see the module doc."""
    yield from CritiqueStage(backend, principles, exemplars, config, report, meaning).run(records)


__all__ = ["Critique", "CritiqueStage", "critique", "parse_critique", "parse_violations", "select_principles",
           "critique_prefix", "critique_prompt", "critique_stops", "parse_keep", "REASONS", "KEEPABLE", "ALL_REASONS"]
