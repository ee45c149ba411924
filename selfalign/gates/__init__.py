"""Quality gates: what makes a model's answer unfit for training data, each rule a named drop reason.

`principle` and `refine` run every answer through `TextGates` (rules on the text, cheap) and then, batched,
through `MeaningGates` (language identification, sentence embeddings, and the harm classifier that decides
whether a decline was warranted and whether an answer complied with a harmful request). `--keep REASON` turns
one off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from selfalign.gates import answers
from selfalign.gates import text as t

# reason -> what it catches (shown in --help and checked against --keep)
REASONS: dict[str, str] = {
    "truncated": "the backend stopped at the token limit, so the answer is cut",
    "missing_thoughts": "principle: no internal thoughts before the answer",
    "missing_answer": "no answer (principle: no answer turn after the thoughts)",
    "answer_in_thoughts": "principle: the answer was written into the thoughts slot",
    "miscited_principle": "principle: the thoughts cite a principle the set does not hold (\"by 21 (ethical)\" in a "
                          "set of 16, or \"by 15 (step-by-step)\" where 15 is another principle)",
    "template_debris": "special tokens (</s>, <|im_end|>, [INST], ### Response:) or a made-up speaker turn "
                       "(User:, **User:**, [User]:), with no complete answer before it",
    "persona_leak": "principle citations (\"by 3 (helpful)\", made-up ones too), recited principles, internal "
                    "thoughts, the persona as a speaker, or the thoughts' voice (\"I should explain\", \"the user asks\")",
    "exemplar_leak": "copies an in-context exemplar's answer or question",
    "unwarranted_refusal": "refuses, or pleads incapacity or confusion at, a request the harm classifier scores "
                           "harmless (a decline of a harmful request is kept)",
    "harmful_compliance": "answers a request the harm classifier scores harmful without declining or pointing to help",
    "repetition_loop": "loops (a sentence, numbered line or phrase repeating) and too little is left before it; "
                       "or a short answer says a sentence twice or mostly one clause over, or mostly repeats its "
                       "content words",
    "incomplete": "promises more parts than it gives (\"three reasons:\" then two), or stops at a colon",
    "list_defect": "a numbered list that is not the one asked for: more items than the query asks for, an empty "
                   "item (\"4.\" with nothing after it), or two items that say the same thing",
    "missing_part": "the thing asked for is missing: no code for \"write a Python function\", a numbered list for "
                    "a poem, a story or a note",
    "human_voice": "the assistant speaks as a person or as the user: a family, a pet, a body or a past of its own "
                   "(\"my wife\", \"I've been running for years\"), unless the query asks for a piece in a voice",
    "too_short": "shorter than the query asks for (--min-words for open questions, 1 word when it asks for brevity)",
    "wrong_language": "written in another language than the query",
    "restates_question": "only restates the query",
    "off_topic": "unrelated to the query",
}
# the gates that also check a critique's revision (selfalign.stages.critique), and so may be kept there
REVISION_REASONS = ("truncated", "template_debris", "persona_leak", "exemplar_leak", "unwarranted_refusal",
                    "harmful_compliance", "repetition_loop", "incomplete", "list_defect", "missing_part",
                    "human_voice", "too_short", "wrong_language",
                    "restates_question", "off_topic")


def parse_keep(values: list[str] | None, reasons: Iterable[str] = REASONS,
               unknown: str = "--keep {name}: not a drop reason") -> frozenset[str]:
    """`--keep` values (repeatable, comma-separated, `all`) as a set of `reasons`; an unknown one is an error
    (`unknown`, formatted with its name, then the reasons allowed)."""
    allowed = list(reasons)
    keep: set[str] = set()
    for v in values or []:
        for name in filter(None, (x.strip() for x in v.split(","))):
            if name == "all":
                keep |= set(allowed)
            elif name in allowed:
                keep.add(name)
            else:
                raise ValueError(f"{unknown.format(name=name)} (one of: all, {', '.join(allowed)})")
    return frozenset(keep)


@dataclass
class Verdict:
    answer: str
    reason: str | None = None
    detail: str | None = None


@dataclass
class TextGates:
    """The surface rules, in order; the first that fires names the drop."""

    persona: str = "Sage"
    principles: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, text)
    exemplars: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    min_words: int = 25
    keep: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._copy = t.ExemplarCopy(self.exemplars) if self.exemplars else None

    def on(self, reason: str) -> bool:
        return reason not in self.keep

    def truncated(self, finish_reason: str, completion_tokens: int) -> str | None:
        """Why the answer counts as cut off (the backend stopped at the token limit), unless kept."""
        if finish_reason == "length" and self.on("truncated"):
            return f"stopped at the token limit ({completion_tokens} tokens)"
        return None

    def unparsed(self, answer: str, query: str = "") -> str | None:
        """What in `answer` is not part of an answer as the SFT export writes it, whatever `keep` says: a template
        token or made-up turn (template_debris's detector), or the method (persona_leak's: internal thoughts, a
        principle citation, the persona as a speaker). A preference pair's sides must be answers."""
        if m := t.find_debris(answer, query):
            return f"template debris {m.group().strip()!r}"
        return t.leak(answer, query, self.persona, self.principles)

    def check(self, query: str, answer: str, finish_reason: str = "stop", completion_tokens: int = 0,
              question_type: str | None = None) -> Verdict:
        v = Verdict(answer.strip())
        if why := self.truncated(finish_reason, completion_tokens):
            return Verdict(v.answer, "truncated", why)
        if not v.answer and self.on("missing_answer"):
            return Verdict(v.answer, "missing_answer", "the answer is empty")
        floor = t.min_words(query, self.min_words)
        if self.on("template_debris") and (m := t.find_debris(v.answer, query)):
            head = v.answer[: m.start()].rstrip(" \t\n>*_#[(-")  # the turn's own decoration goes with it
            if not head or not t.complete_ending(head) or t.word_count(head) < max(floor, 3) \
                    or t.items_short(query, head) or t.lone_item(head):
                return Verdict(v.answer, "template_debris", f"{m.group().strip()!r} at character {m.start()}")
            v.answer = head
        if self.on("persona_leak") and (why := t.leak(v.answer, query, self.persona, self.principles)):
            return Verdict(v.answer, "persona_leak", why)
        if self.on("persona_leak") and (why := answers.deliberates(query, v.answer)):
            return Verdict(v.answer, "persona_leak", why)
        if self._copy and self.on("exemplar_leak") and (why := self._copy(v.answer, query)):
            return Verdict(v.answer, "exemplar_leak", why)
        if self.on("repetition_loop") and (why := answers.self_repeats(query, v.answer)):
            return Verdict(v.answer, "repetition_loop", why)  # before a stutter is cut: the whole answer repeats
        if self.on("repetition_loop") and (loop := t.find_loop(v.answer)):
            at, copies = loop
            head = v.answer[:at].rstrip()
            # a stutter (one unit twice) is cut away; a loop means the answer degenerated: drop it
            if copies > 2 or not head or t.word_count(head) < max(floor, 3) or not t.complete_ending(head):
                return Verdict(v.answer, "repetition_loop", f"{copies} copies from character {at}")
            v.answer = head
        if t.refusal(v.answer, query):
            # whether declining was right, and so which reason a short decline gets, is the harm classifier's call
            # (MeaningGates.harm_verdict: unwarranted_refusal, or too_short under DECLINE_WORDS)
            floor = 0
        if self.on("incomplete") and (why := answers.incomplete(query, v.answer)):
            return Verdict(v.answer, "incomplete", why)
        if self.on("list_defect") and (why := answers.list_defect(query, v.answer)):
            return Verdict(v.answer, "list_defect", why)
        if self.on("missing_part") and (why := answers.missing_form(query, v.answer)):
            return Verdict(v.answer, "missing_part", why)
        if self.on("human_voice") and (why := answers.human_voice(query, v.answer)):
            return Verdict(v.answer, "human_voice", why)
        if self.on("too_short") and (n := t.word_count(v.answer)) < floor:
            return Verdict(v.answer, "too_short", f"{n:.0f} words < {floor:.0f} for this query")
        if self.on("too_short") and (why := t.items_short(query, v.answer)):
            return Verdict(v.answer, "too_short", why)
        return v
