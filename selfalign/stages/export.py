"""Stage 3, principle engraving: SFT JSONL with the principles, exemplars and thoughts removed; and preference
pairs (`dpo`) from critiqued or judged records, as TRL's DPOTrainer reads them.

A pair is (revision, response) of a record the critique stage revised, or two sampled `responses`. When the judge
has scored the pair (the record's `judge` field: `{"principle", "margin", "chosen", "pair", ...}`), its choice and
margin decide; otherwise the revision is chosen, the original response rejected, and the margin is unknown.
Records with no pair are dropped as `no_pair`, a judge's tie as `judge_tie`, a malformed `judge` as `bad_judge`,
a judge's choice of a sampled answer the quality gates dropped as `chosen_failed_gates`.

Both sides must be answers as the SFT export writes them: a side that still holds internal thoughts, a principle
citation, the persona as a speaker or a template token (the persona_leak and template_debris gates' detectors,
`TextGates.unparsed`) is a completion that failed parsing, and a pair whose sides differ by format teaches the
format: `chosen_unparsed` / `rejected_unparsed`, the detail naming what was found.

`min_margin` (default: the export stage's, `Export.min_margin`, measured on the judge benchmark)
drops pairs that rest on the judge alone whose margin is below it as `low_margin`, and pairs whose judge gave no
usable margin as `no_margin`; 0 (or None) turns both off. Pairs no judge scored (a critique's revision over the
original, or of two sampled answers the one the gates passed over one they dropped) are ordered by what made them,
not by a judge, and pass with `margin` None (filter on it to keep judged pairs only); so does a judged pair of
sampled answers whose rejected side a quality gate dropped (the judge agreed with the gates, which ordered it).

The default, 0.3, is measured (`python benchmarks/judge.py --backends transformers --method logprobs`, its
`by_margin`): on the 40 labelled pairs the embedded SmolLM2-135M agrees with the labels no better than chance at
every margin it gives (each pair's own principle: 47.5% overall, 4 of 6 at 0.1 or more, largest margin 0.29;
the whole set: 27.5%, 2 of 8 at 0.1 or more, largest 0.15), so 0.3 is just above the chance region it shows. A
stronger judge gives larger margins; measure it the same way (`--model`) before lowering the minimum."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfalign.records import Dropped, Judgement, normalize_text, stable_id
from selfalign.gates import TextGates
from selfalign.runner import Runner
from selfalign.stages.common import clip, drop
from selfalign.steps import Count, ExportFormat, Finite, Stage, Step, flags, not_applied

STAGE = "export"
FORMATS = ("messages", "sharegpt", "alpaca", "dpo")
SFT_FORMATS = FORMATS[:3]
ANSWERS = ("response", "verbose_response", "revision")  # revision: the critique's revision where there is one


class Export(Stage):
    """Write SFT JSONL (messages, ShareGPT or Alpaca), principles and internal thoughts removed; or preference
    pairs (dpo)."""

    kind: ClassVar[str] = "export"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "sft"
    persona: ClassVar[str] = "Sage"  # dpo: the persona whose turn marker ("Sage:") in a side makes it unparsed
    format: ExportFormat = Field("messages", description="SFT layout, or dpo: preference pairs (prompt/chosen/"
                                 "rejected, as TRL's DPOTrainer reads them) from critique or judge output.",
                                 json_schema_extra=flags("-f"))
    system: str | None = Field(None, description="A short system prompt to add.")
    verbose: bool = Field(False, description="Export the refined verbose answer.")
    tokenizer: str | None = Field(None, description="Count tokens (each record gains num_tokens): "
                                  "tiktoken:o200k_base, tiktoken:cl100k_base, or a tokenizer folder.")
    max_tokens: Count | None = Field(None, description="Drop records (dpo: pairs) over this many tokens, counted "
                                     "with --tokenizer (default tiktoken:o200k_base).")
    min_margin: Finite | None = Field(0.3, description="dpo: drop judged pairs whose margin (log-odds, from "
                                      "log-probabilities or a vote) is below this as low_margin; 0 turns it off. "
                                      "Pairs no judge scored pass, with margin null. The default is measured on "
                                      "the judge benchmark (benchmarks/judge.py).")
    revised: bool = Field(False, description="SFT: export the critique's revision where there is one.")

    @model_validator(mode="after")
    def _applies(self) -> Export:
        if self.format == "dpo":
            why = "chooses the SFT answer; format=dpo exports pairs (critique, judge) as chosen/rejected"
            not_applied(self, "verbose", why)
            not_applied(self, "revised", why)
        else:
            not_applied(self, "min_margin", f"applies only to format=dpo, not format={self.format}")
        if self.verbose:
            not_applied(self, "revised", "one answer is exported: verbose=true already chose the refined one")
        return self

    @property
    def answer(self) -> str:
        """The field an SFT record's answer comes from (one of ANSWERS)."""
        return "verbose_response" if self.verbose else "revision" if self.revised else "response"

    def prepare(self, runner: Runner) -> dict[str, Any]:
        runner.context.flush_each = False  # 200k records/s territory: flush every 50 ms, not every line
        if not (self.tokenizer or self.max_tokens is not None):
            return {"counter": None}
        from selfalign.text.tokens import token_counter

        try:
            return {"counter": token_counter(self.tokenizer or "tiktoken:o200k_base")}
        except (RuntimeError, OSError, ValueError) as e:
            raise ValueError(f"--tokenizer {self.tokenizer}: {e}") from None

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        if self.format == "dpo" and self.min_margin is not None:
            runner.report.extra["min_margin"] = self.min_margin  # the summary says which minimum applied
        return lambda records: export(records, self, prepared["counter"])

    def input_model(self) -> type[BaseModel]:
        return ExportInput

    def wants(self) -> str | None:
        return ("refined" if self.verbose else "pairs" if self.format == "dpo"
                else "critiqued" if self.revised else self.reads)  # revised: every critiqued answer


class ExportInput(BaseModel):
    """What export needs of an aligned or refined record; the other fields ride along unvalidated
    (they are not written, but a dropped record keeps them)."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    prompt: str
    response: str | None = None
    verbose_response: str | None = None
    revision: str | None = None  # from the critique stage
    responses: Any = None  # two sampled answers, which a judge may order
    response_gates: Any = None  # per response: None (passed the gates) or the reason a gate dropped it
    judge: Any = None  # a Judgement as a dict, from the judge stage; checked when a dpo pair is made

    @model_validator(mode="after")
    def _id(self) -> ExportInput:
        if not self.id:
            self.id = stable_id(self.prompt)
        return self


def to_sft(prompt: str, answer: str, fmt: str, system: str | None) -> dict[str, Any]:
    if fmt == "messages":
        msgs = [{"role": "system", "content": system}] if system else []
        return {"messages": [*msgs, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
    if fmt == "sharegpt":
        turns = [{"from": "system", "value": system}] if system else []
        return {"conversations": [*turns, {"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}
    if fmt == "alpaca":
        out = {"instruction": prompt, "input": "", "output": answer}
        if system:
            out["system"] = system
        return out
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")


def to_dpo(prompt: str, chosen: str, rejected: str, system: str | None) -> dict[str, Any]:
    """TRL's conversational preference format: the prompt as messages, each completion as one assistant turn."""
    msgs = [{"role": "system", "content": system}] if system else []
    return {"prompt": [*msgs, {"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


_RESPONSES = re.compile(r"responses\[([01])\]")


def _text(rec: ExportInput, field: str) -> str | None:
    """The text of `field` ("response", "revision", "responses[0]", "responses[1]"), stripped; None if absent."""
    if m := _RESPONSES.fullmatch(field):
        items = rec.responses if isinstance(rec.responses, list) and len(rec.responses) == 2 else None
        value = items[int(m.group(1))] if items else None
    elif field in ("response", "revision"):
        value = getattr(rec, field)
    else:
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _gate(rec: ExportInput, field: str) -> str | None:
    """The reason the quality gates dropped `field` ("responses[i]"), or None (it passed, or it is another field)."""
    m = _RESPONSES.fullmatch(field)
    gates = rec.response_gates
    if not m or not isinstance(gates, list) or len(gates) != 2:
        return None
    why = gates[int(m.group(1))]
    return str(why) if why else None


def answer_gates(config: Export) -> TextGates:
    """The detectors that tell an answer from a completion that failed parsing (the default principle set's
    names make "By 10 (clarification)" a citation)."""
    from selfalign.assets import load_principles

    return TextGates(persona=config.persona, principles=[(p.id, p.name, p.text) for p in load_principles()])


def preference(rec: ExportInput, config: Export, answers: TextGates | None = None
               ) -> dict[str, Any] | tuple[str, str]:
    """The record's preference pair: {chosen, rejected, margin, principle, violations, chosen_from}, or
    (drop reason, detail).

    Judged (a `judge` with a margin): the judge's `chosen` over the other field of its `pair` (default
    response/revision), so two sampled `responses` pair too; a chosen response that the quality gates dropped
    (`response_gates`, from `principle --n 2`) is `chosen_failed_gates`. Unjudged: revision over response, or of
    two sampled responses the one the gates passed over the one they dropped; margin None. A side that is not an
    answer (`answers.unparsed`, default `answer_gates(config)`) makes no pair."""
    violations = [str(v) for v in (getattr(rec, "violations", None) or []) if isinstance(v, (str, int))]
    judgement: Judgement | None = None
    if rec.judge is not None:
        try:
            judgement = Judgement.model_validate(rec.judge)
        except ValidationError as e:
            err = e.errors()[0]
            return "bad_judge", f"judge.{'.'.join(map(str, err['loc']))}: {err['msg']}"
    if judgement is not None and judgement.margin is not None:
        pair = judgement.pair or ["response", "revision"]
        if judgement.chosen == "tie":
            return "judge_tie", f"the judge preferred neither ({', '.join(pair)})"
        if len(pair) != 2 or judgement.chosen not in pair:
            return "bad_judge", f"judge.chosen {judgement.chosen!r} is not one of the pair {pair}"
        chosen_field = judgement.chosen
        rejected_field = pair[1] if pair[0] == chosen_field else pair[0]
        margin, principle = judgement.margin, judgement.principle
        if why := _gate(rec, chosen_field):
            return "chosen_failed_gates", (f"the judge chose {chosen_field}, which the quality gates dropped as {why}"
                                           f" (margin {margin:g})")
    elif rec.revision is None and _text(rec, "responses[0]") is not None and "checked_principles" not in (
            rec.model_extra or {}):  # a critiqued record pairs its revision alone, as the judge does
        gates = [_gate(rec, f"responses[{i}]") for i in (0, 1)]
        if (gates[0] is None) == (gates[1] is None):
            return "no_pair", "two responses but no judge margin to order them"
        chosen_field = "responses[0]" if gates[0] is None else "responses[1]"  # the one the gates passed
        rejected_field, margin, principle = ("responses[1]" if gates[0] is None else "responses[0]"), None, None
    else:
        chosen_field, rejected_field, margin, principle = "revision", "response", None, ",".join(violations) or None
    chosen, rejected = _text(rec, chosen_field), _text(rec, rejected_field)
    if chosen is None or rejected is None:
        return "no_pair", f"record has no {chosen_field if chosen is None else rejected_field} to pair"
    if normalize_text(chosen) == normalize_text(rejected):
        return "no_pair", f"{chosen_field} and {rejected_field} are the same text"
    answers = answers or answer_gates(config)
    for side, field, text in (("chosen", chosen_field, chosen), ("rejected", rejected_field, rejected)):
        if why := answers.unparsed(text, rec.prompt):
            return f"{side}_unparsed", f"{field} is not an answer ({why}): {clip(text, 120)}"
    if config.min_margin is not None and config.min_margin > 0:
        if margin is None and judgement is not None:
            return "no_margin", f"the judge gave no usable margin, and a minimum of {config.min_margin:g} is asked"
        if margin is not None and margin < config.min_margin and _gate(rec, rejected_field) is None:
            return "low_margin", f"margin {margin:g} < {config.min_margin:g}"
    return {"chosen": chosen, "rejected": rejected, "margin": margin, "principle": principle,
            "violations": violations, "chosen_from": chosen_field}


def export(records: Iterable[ExportInput], config: Export,
           count_tokens: Callable[[str], int] | None = None) -> Iterator[dict[str, Any] | Dropped]:
    if config.format not in FORMATS:
        raise ValueError(f"unknown format {config.format!r}: choose one of {', '.join(FORMATS)}")
    if config.format == "dpo":
        yield from export_dpo(records, config, count_tokens)
        return
    if config.answer not in ANSWERS:
        raise ValueError(f"unknown answer field {config.answer!r}: choose one of {', '.join(ANSWERS)}")
    for rec in records:
        answer = getattr(rec, config.answer)
        if config.answer == "revision" and not (isinstance(answer, str) and answer.strip()):
            answer = rec.response  # a record the critique passed unchanged
        if not isinstance(answer, str) or not answer.strip():
            yield drop(STAGE, rec, f"no_{config.answer}", f"record has no {config.answer!r} to export")
            continue
        out = to_sft(rec.prompt, answer.strip(), config.format, config.system)
        if count_tokens is not None:
            n = count_tokens(rec.prompt) + count_tokens(answer) + (count_tokens(config.system) if config.system else 0)
            if config.max_tokens is not None and n > config.max_tokens:
                yield drop(STAGE, rec, "too_many_tokens", f"{n} tokens > {config.max_tokens}")
                continue
            out["num_tokens"] = n
        out["id"] = rec.id
        yield out


def export_dpo(records: Iterable[ExportInput], config: Export,
               count_tokens: Callable[[str], int] | None = None) -> Iterator[dict[str, Any] | Dropped]:
    """Preference pairs: `prompt`/`chosen`/`rejected` (conversational) and, beside them, `id`, `margin` (None when
    no judge scored the pair), `principle` (the judge's, or the critique's violated ids joined by commas),
    `violations` and `chosen_from` ("revision", "response", "responses[0]" or "responses[1]")."""
    gates = answer_gates(config)
    for rec in records:
        pair = preference(rec, config, gates)
        if isinstance(pair, tuple):
            yield drop(STAGE, rec, *pair)
            continue
        out = to_dpo(rec.prompt, pair.pop("chosen"), pair.pop("rejected"), config.system)
        if count_tokens is not None:
            longest = max(count_tokens(out["chosen"][0]["content"]), count_tokens(out["rejected"][0]["content"]))
            n = count_tokens(rec.prompt) + longest + (count_tokens(config.system) if config.system else 0)
            if config.max_tokens is not None and n > config.max_tokens:
                yield drop(STAGE, rec, "too_many_tokens", f"{n} tokens > {config.max_tokens}")
                continue
            out["num_tokens"] = n
        out["id"] = rec.id
        out.update(pair)
        yield out
