"""`selfalign judge`: which of two answers to the same prompt follows a principle (or the whole set) better.

The model is shown the principle(s), the question, "Answer A" and "Answer B", and the prompt ends where its next
token is the choice: " A" or " B" (one token each in SmolLM2's and other byte-level BPE tokenizers; a backend
refuses a choice that does not continue the prompt as exactly one token). Scores are log-odds, read from the
model's own next-token log-probabilities:

    order 1: A = first answer, B = second    d1 = log p(" B") - log p(" A")
    order 2: A = second answer, B = first    d2 = log p(" A") - log p(" B")
    score = (d1 + d2) / 2                    positive: the second answer (the revision) is better

Each d is "second over first" in its own order, so a pure preference for a position (always " A") adds +c to
one and -c to the other and cancels; what is left is the preference for the content. The log-probabilities are
the full-vocabulary log-softmax (not renormalised over the two choices); their difference is the log-odds
between the two choices either way, and `choice_mass` (the probability the two choices hold together, averaged
over the orders) says how much the model followed the answer format at all: a low mass means a weak judge.
`confidence` is sigmoid(|score|): the chance, between the two choices only, that the chosen answer wins.

A backend that cannot give log-probabilities (`supports_logprobs` false: a server without logprobs, such as
llama.cpp or Ollama) gets a sampled vote instead: `samples` completions of each order at temperature 1 (each with its own seed,
so the completion cache keeps them apart), the first letter read as the vote; score = the smoothed log-odds
log((second + 0.5) / (first + 0.5)) (log-odds like the log-probability score, so one `--min-margin` means the same
for both; 6 votes to 0 gives 2.56), confidence = the winner's vote share, stated with the number of votes.

Pairs: a record with `response` and `revision` (from critique: original first, revision second), or with
`responses: [first, second]` (two sampled answers). Anything else is dropped as `no_pair`.

`follows`: the one-answer question `principle --judge` asks ("Does the answer follow the principle? Yes or No"),
scored the same way: log p(" Yes") - log p(" No"), or from a sampled vote the smoothed log-odds
log((yes + 0.5) / (no + 0.5)), so both methods give log-odds and one threshold means the same for each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from selfalign.assets import Principle
from selfalign.backends.base import Backend, SamplingParams
from selfalign.records import Dropped, Provenance, Record
from selfalign.runner import Runner
from selfalign.stages.common import chunks, count_tokens, drop
from selfalign.steps import Count, Principled, Step, not_applied
from selfalign.text.templates import render_principles

STAGE = "judge"
CHOICES = (" A", " B")  # one token each after "Better answer:" in SmolLM2's tokenizer (checked) and GPT-2-style BPEs
FLOOR = -9999.0  # a log-probability below this is this (an -inf would not survive JSON)

JUDGE_HEADER = ("You compare two answers to the same question and decide which one follows {what} better. "
                "Judge by {that} alone, not by length or style.\n\n{principles}\n\n")
JUDGE_BODY = ("Question: {question}\n\nAnswer A: {a}\n\nAnswer B: {b}\n\n"
              "Which answer follows {what} better? Reply with one letter, A or B.\nBetter answer:")


FOLLOWS_CHOICES = (" Yes", " No")
FOLLOWS = ("You check whether an answer follows {what}. Judge by {that} alone, not by length or style.\n\n"
           "{principles}\n\nQuestion: {question}\n\nAnswer: {answer}\n\n"
           "Does the answer follow {what}? Reply with one word, Yes or No.\nFollows {what}:")


class Judge(Principled):
    """Which answer of each pair follows a principle (or the whole set) better, from the model's log-probabilities
    of a one-token choice in both orders (a sampled vote where the backend gives none)."""

    kind: ClassVar[str] = "judge"
    reads: ClassVar[str | None] = "pairs"
    writes: ClassVar[str] = "pairs"
    principle: str = Field("all", description="Judge by this principle (id or short name), or all: the whole set.")
    method: Literal["auto", "logprobs", "vote"] = Field(
        "auto", description="logprobs: the model's log-probabilities of the one-token choice; vote: sampled "
        "answers; auto: logprobs where the backend gives them.")
    samples: Count = Field(5, description="vote: samples per answer order (2 x samples votes in all).")
    vote_max_tokens: Count = Field(4, description="vote: new tokens per sampled reply.")
    batch_size: Count | None = Field(None, description="Records per backend call (two prompts each; default: "
                                     "half the backend's chunk size).")
    seed: int | None = Field(None, description="vote: the first sample's seed (sample i uses seed + i); default 0.")

    @model_validator(mode="after")
    def _applies(self) -> Judge:
        if self.method == "logprobs":
            not_applied(self, "samples", "applies only to a vote (method=vote or auto), not method=logprobs")
            not_applied(self, "vote_max_tokens", "applies only to a vote (method=vote or auto), not method=logprobs")
        return self

    def prepare(self, runner: Runner) -> dict[str, Any]:
        prepared = super().prepare(runner)
        principles_for(self, prepared["principles"])  # an unknown principle fails here
        return prepared

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return lambda records: judge(records, backend, self, prepared["principles"])

    def input_model(self) -> type[BaseModel]:
        return Record  # a pair is response + revision, or two sampled responses: the judge looks for either


def _judged_by(principles: list[Principle], one: bool) -> dict[str, str]:
    """The words both prompts use for what is judged: one principle, or a set."""
    return {"what": "the principle" if one else "the principles", "that": "that principle" if one else "these principles",
            "principles": ("Principle: " if one else "Principles:\n") + render_principles(principles)}


def judge_prompt(question: str, a: str, b: str, principles: list[Principle], one: bool) -> str:
    """The judge's prompt; its next token is the choice (" A" or " B")."""
    by = _judged_by(principles, one)
    return JUDGE_HEADER.format(**by) + JUDGE_BODY.format(question=question.strip(), a=a.strip(), b=b.strip(),
                                                         what=by["what"])


def follows_prompt(question: str, answer: str, principles: list[Principle]) -> str:
    """The one-answer check's prompt; its next token is " Yes" or " No"."""
    return FOLLOWS.format(**_judged_by(principles, len(principles) == 1), question=question.strip(),
                          answer=answer.strip())


def checks_for(cited: list[str], principles: list[Principle]) -> list[tuple[str, list[Principle]]]:
    """What `principle --judge` asks about one answer: (id, [that principle]) for each principle the thoughts cite,
    or ("all", the whole set) where they cite none of the set's."""
    by_id = {p.id: p for p in principles}
    return [(pid, [by_id[pid]]) for pid in cited if pid in by_id] or [("all", principles)]


_YES_NO = re.compile(r"\s*(?:\*\*)?(yes|no)\b", re.IGNORECASE)


def follows_scores(backend: Any, prompts: list[str], method: str, samples: int = 5, seed: int = 0,
                   max_tokens: int = 4) -> list[float | tuple[str, str]]:
    """Log-odds of " Yes" over " No" after each `follows_prompt`, or (drop reason, detail) where none could be read.
    logprobs: from the backend's next-token log-probabilities; vote: log((yes + 0.5) / (no + 0.5)) over `samples`
    sampled replies (temperature 1, seeds seed..seed+samples-1)."""
    if not prompts:
        return []
    if method == "logprobs":
        yes, no = FOLLOWS_CHOICES
        return [("backend_error", "the backend returned no log-probabilities") if lp is None
                else _lp(lp, yes) - _lp(lp, no) for lp in backend.choice_logprobs(prompts, list(FOLLOWS_CHOICES))]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=max_tokens, stop=["\n"])
    out: list[float | tuple[str, str]] = []
    for replies in sampled_replies(backend, prompts, params, samples, seed):
        said = [m.group(1).lower() for r in replies if r is not None and (m := _YES_NO.match(r))]
        out.append(vote_log_odds(said.count("yes"), said.count("no")) if said else
                   ("backend_error", f"all {samples} requests failed") if replies.count(None) == samples
                   else ("no_vote", f"none of {samples} sampled replies began with Yes or No"))
    return out


def sampled_replies(backend: Any, prompts: list[str], params: SamplingParams, samples: int, seed: int
                    ) -> list[list[str | None]]:
    """Each prompt's `samples` replies, sample s with seed + s (so the completion cache keeps them apart); None
    for a failed request."""
    replies: list[list[str | None]] = [[] for _ in prompts]
    for s in range(samples):
        for mine, comp in zip(replies, backend.generate(prompts, params.model_copy(update={"seed": seed + s})),
                              strict=True):
            mine.append(None if comp.finish_reason == "error" else comp.text)
    return replies


def vote_log_odds(for_: int, against: int) -> float:
    """A vote as smoothed log-odds, on the scale of a log-probability difference (6 to 0: 2.56)."""
    return math.log((for_ + 0.5) / (against + 0.5))


def method_for(backend: Any, method: str) -> str:
    """"logprobs" or "vote": `auto` takes log-probabilities where the backend gives them."""
    can = bool(getattr(backend, "supports_logprobs", False))
    if method == "auto":
        return "logprobs" if can else "vote"
    if method == "logprobs" and not can:
        raise ValueError(f"the {backend.name} backend cannot give log-probabilities: use the vote")
    return method


def find_pair(rec: Record) -> tuple[tuple[str, str], tuple[str, str]] | str:
    """((first field, text), (second field, text)) to compare, or why there is no pair."""
    data = rec.model_dump()
    if isinstance(data.get("revision"), str) and isinstance(data.get("response"), str):
        pair = (("response", data["response"]), ("revision", data["revision"]))
    elif "checked_principles" in data:  # a critiqued record is judged on its revision alone
        return "no revision: the critique found nothing to revise"
    elif isinstance(data.get("responses"), list) and len(data["responses"]) == 2 and all(
            isinstance(r, str) for r in data["responses"]):
        pair = (("responses[0]", data["responses"][0]), ("responses[1]", data["responses"][1]))
    elif isinstance(data.get("responses"), list):
        n = len(data["responses"])
        return f"responses holds {n} answer{'s' if n != 1 else ''}: a pair needs 2 (strings)"
    elif isinstance(data.get("response"), str) and "revision" in data:
        return "no revision: the critique found nothing to revise"
    else:
        return "neither response and revision nor responses: [a, b]"
    if not pair[0][1].strip() or not pair[1][1].strip():
        return f"{pair[0][0] if not pair[0][1].strip() else pair[1][0]} is empty"
    if " ".join(pair[0][1].split()) == " ".join(pair[1][1].split()):
        return "the two answers are the same text"
    return pair


_VOTE = re.compile(r"\s*(?:\*\*)?(?:[Aa]nswer\s*)?[(\[\"']?([AB])(?![A-Za-z])")


def read_vote(text: str) -> str | None:
    """"A" or "B" from a sampled reply (" A", "B.", "Answer B", "(A) because ..."), else None."""
    m = _VOTE.match(text)
    return m.group(1) if m else None


def principles_for(config: Judge, principles: list[Principle]) -> tuple[str, list[Principle]]:
    if config.principle == "all":
        if not principles:
            raise ValueError("the principle set is empty: nothing to judge by")
        return "all", principles
    key = config.principle.strip().lower()
    for p in principles:
        if key in (p.id.lower(), p.name.lower()):
            return p.id, [p]
    raise ValueError(f"no principle {config.principle!r} in the set (ids: {', '.join(p.id for p in principles)}; "
                     "or 'all')")


def judge(records: Iterable[Record | dict], backend: Backend, config: Judge,
          principles: list[Principle]) -> Iterator[Record | Dropped]:
    """Each record with a pair gains `judge` (see the module docstring); records out in input order."""
    pid, chosen_principles = principles_for(config, principles)
    method = method_for(backend, config.method)
    vote_params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=config.vote_max_tokens, stop=["\n"])
    new_tokens = 1 if method == "logprobs" else config.vote_max_tokens
    sampling: dict[str, Any] = {"method": method, "principle": pid, "choices": list(CHOICES)}
    if method == "vote":
        sampling.update(vote_params.summary(), samples=config.samples, seed=config.seed or 0)
    prov = Provenance(stage=STAGE, backend=backend.name, model=backend.model, sampling=sampling)
    one = pid != "all"

    for batch in chunks(records, config.batch_size, backend, share=2):
        results: list[Any] = []
        ready: list[tuple[int, Record, tuple[str, str], list[str]]] = []
        rendered: list[tuple[int, Record, tuple[str, str], list[str]]] = []
        for raw in batch:
            rec = raw if isinstance(raw, Record) else Record.model_validate(raw)
            pair = find_pair(rec)
            if isinstance(pair, str):
                results.append(drop(STAGE, rec, "no_pair", pair))
                continue
            (f1, t1), (f2, t2) = pair
            prompts = [judge_prompt(rec.prompt, t1, t2, chosen_principles, one),
                       judge_prompt(rec.prompt, t2, t1, chosen_principles, one)]
            rendered.append((len(results), rec, (f1, f2), prompts))
            results.append(None)
        counts = count_tokens(backend, [p for *_, ps in rendered for p in ps])
        for k, item in enumerate(rendered):
            n = max(counts[2 * k], counts[2 * k + 1])
            if n + new_tokens > backend.max_context:
                results[item[0]] = drop(STAGE, item[1], "prompt_too_long",
                                        f"{n} prompt tokens + {new_tokens} new > context {backend.max_context}")
            else:
                ready.append(item)
        if ready:
            prompts = [p for *_, ps in ready for p in ps]
            verdicts = (_by_logprobs(backend, prompts) if method == "logprobs"
                        else _by_vote(backend, prompts, vote_params, config))
            for k, (i, rec, fields, _) in enumerate(ready):
                v = verdicts[k]
                if isinstance(v, tuple):
                    results[i] = drop(STAGE, rec, *v)
                    continue
                score = v["score"]
                v = {"principle": pid, "score": score, "margin": abs(score),
                     "chosen": fields[1] if score > 0 else fields[0] if score < 0 else "tie",
                     "method": method, "pair": list(fields), **v}
                results[i] = type(rec).model_validate(rec.with_stage(prov, judge=v))
        yield from results


def _lp(entry: dict[str, float], choice: str) -> float:
    value = entry[choice]
    return FLOOR if math.isnan(value) or value < FLOOR else float(value)


def _by_logprobs(backend: Any, prompts: list[str]) -> list[dict[str, Any] | tuple[str, str]]:
    """One verdict per pair of prompts (order 1, order 2): score, confidence, per-order log-odds, choice mass."""
    got = backend.choice_logprobs(prompts, list(CHOICES))
    a, b = CHOICES
    out: list[dict[str, Any] | tuple[str, str]] = []
    for first, second in zip(got[0::2], got[1::2], strict=True):
        if first is None or second is None:
            out.append(("backend_error", "the backend returned no log-probabilities for this pair"))
            continue
        d1 = _lp(first, b) - _lp(first, a)  # second answer shown as B
        d2 = _lp(second, a) - _lp(second, b)  # second answer shown as A
        score = (d1 + d2) / 2
        mass = (math.exp(_lp(first, a)) + math.exp(_lp(first, b)) + math.exp(_lp(second, a))
                + math.exp(_lp(second, b))) / 2
        out.append({"score": score, "confidence": 1 / (1 + math.exp(-abs(score))), "orders": [d1, d2],
                    "choice_mass": mass})
    return out


def _by_vote(backend: Any, prompts: list[str], params: SamplingParams, config: Judge
             ) -> list[dict[str, Any] | tuple[str, str]]:
    """`samples` sampled replies per prompt, each sample its own seed; votes for the first and second answer."""
    votes = [{"first": 0, "second": 0, "invalid": 0} for _ in range(len(prompts) // 2)]
    errors = [0] * len(votes)
    for j, replies in enumerate(sampled_replies(backend, prompts, params, config.samples, config.seed or 0)):
        k, order = divmod(j, 2)
        errors[k] += replies.count(None)
        for reply in replies:
            letter = read_vote(reply) if reply is not None else None
            if letter is None:
                votes[k]["invalid"] += 1
            else:  # order 1 shows the second answer as B, order 2 as A
                votes[k]["second" if (letter == "B") == (order == 0) else "first"] += 1
    out: list[dict[str, Any] | tuple[str, str]] = []
    n = 2 * config.samples
    for v, err in zip(votes, errors, strict=True):
        valid = v["first"] + v["second"]
        if not valid:
            out.append(("backend_error", f"all {n} requests failed") if err == n
                       else ("no_vote", f"none of {n} sampled replies began with A or B"))
            continue
        out.append({"score": vote_log_odds(v["second"], v["first"]),
                    "confidence": max(v["first"], v["second"]) / valid, "votes": v, "n": n})
    return out
