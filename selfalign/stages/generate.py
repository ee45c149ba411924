"""Stage 1: prompt synthesis. Self-instruct from a growing seed pool, and topic-guided red-teaming.

Records stream out as soon as they are accepted; every rejected candidate is a `Dropped` with a reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, model_validator

from selfalign.assets import QuestionType
from selfalign.backends.base import Backend, SamplingParams
from selfalign.text.embeddings import Embedder, EmbeddingIndex
from selfalign.records import Dropped, PromptRecord, Provenance, normalize_text, stable_id
from selfalign.report.counts import Report
from selfalign.runner import Runner
from selfalign.stages.common import drop
from selfalign.steps import Amount, Count, Finite, Stage, Step, asset, flags, not_applied
from selfalign.text.templates import questions_prompt, self_instruct_prompt, topics_prompt

STAGE = "generate"

CANNOT_DO = ("image", "images", "picture", "pictures", "graph", "graphs", "file", "files", "map", "maps",
             "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram")
_CANNOT = re.compile(r"\b(" + "|".join(re.escape(w) for w in CANNOT_DO) + r")\b", re.IGNORECASE)
_ITEM_SPLIT = re.compile(r"\n\s*\d+\s*[.)]\s*")


class Generate(Stage):
    """What self-instruct and red-team share: prompts made by the model, kept when new enough."""

    writes: ClassVar[str] = "prompts"
    needs_model: ClassVar[bool] = True
    # the method's own settings (not options)
    default_batch: ClassVar[int] = 8  # requests per backend call where batch_size is not given
    examples: ClassVar[int] = 5  # pool items shown per self-instruct request
    max_generated_examples: ClassVar[int] = 2  # of which at most this many are accepted generated tasks
    temperature: ClassVar[float] = 1.0
    top_p: ClassVar[float] = 0.98
    max_tokens: ClassVar[int] = 256
    min_words: ClassVar[int] = 4
    max_words: ClassVar[int] = 150
    # what it generates from: the field naming its file, the bundled file (exemplars/), its loader (selfalign.assets)
    source: ClassVar[tuple[str, str, str]]
    num: Amount = Field(20, description="Stop after this many accepted prompts.", json_schema_extra=flags("-n"))
    seed: int | None = Field(None, description="Random seed (default: the backend's seed, else 0).")
    novelty_threshold: Finite = Field(0.85, description="Reject a candidate whose embedding cosine to the pool is "
                                      "at or above this.")
    embeddings: bool = Field(True, description="Novelty by embedding cosine; without: by exact match only.")
    max_requests: Count | None = Field(None, description="Give up after this many requests (default: 20 x num).")
    batch_size: Count | None = Field(None, description="Requests per backend call (default 8).")

    @model_validator(mode="after")
    def _applies(self) -> Generate:
        if not self.embeddings:
            not_applied(self, "novelty_threshold", "a cosine of embeddings, and embeddings=false compares exact text only")
        return self

    def prepare(self, runner: Runner) -> dict[str, Any]:
        runner.context.total = (runner.context.total or 0) + self.num  # the bar's end: the prompts to keep
        return {"source": self.read()}

    def embeds(self) -> tuple[str | None, bool] | None:
        return (None, False) if self.embeddings else None

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return lambda _: self.generate(prepared["source"], backend, runner.report, embedder)

    def read(self) -> list[Any]:
        """What it generates from: its file, read where the run is driven."""
        from selfalign import assets

        field, _, loader = self.source
        return getattr(assets, loader)(getattr(self, field))

    def assets(self) -> dict[str, str]:
        field, bundled, _ = self.source
        return {field: asset(getattr(self, field), "exemplars", bundled)}

    def generate(self, source: list[Any], backend: Any, report: Report, embedder: Any) -> Iterator[Any]:
        raise NotImplementedError


class SelfInstruct(Generate):
    """Self-instruct: new tasks from a growing seed pool."""

    kind: ClassVar[str] = "self-instruct"
    source: ClassVar[tuple[str, str, str]] = ("seeds", "seed_tasks.jsonl", "load_seeds")
    seeds: str | None = Field(None, description="self-instruct seed pool: our JSONL ({'prompt'}) or the public "
                              "self-instruct format; default: the bundled pool.")

    def generate(self, source: list[Any], backend: Any, report: Report, embedder: Any) -> Iterator[Any]:
        return self_instruct(source, backend, self, report, embedder)


class RedTeam(Generate):
    """Topic-guided red-teaming: topics per question type, then questions per topic."""

    kind: ClassVar[str] = "red-team"
    source: ClassVar[tuple[str, str, str]] = ("question_types", "question_types.txt", "load_question_types")
    question_types: str | None = Field(None, description="red-team question types (.txt or TGRT .jsonl); default: "
                                       "the bundled types.")
    topics_per_type: Count = Field(10, description="red-team: topics per question type.")
    max_types: Count | None = Field(None, description="red-team: use only this many question types, sampled with "
                                    "the seed.")

    def generate(self, source: list[Any], backend: Any, report: Report, embedder: Any) -> Iterator[Any]:
        return red_team(source, backend, self, report, embedder)


def parse_numbered(text: str, finished: bool) -> tuple[list[str], str | None]:
    """Items of a numbered continuation (the first item follows the prompt's trailing `N.`).

    When the completion hit its token limit, the last item may be cut off: it is returned separately.
    """
    parts = [" ".join(p.split()) for p in _ITEM_SPLIT.split("\n" + text)]
    parts = [p for p in parts if p]
    if not finished and parts:
        return parts[:-1], parts[-1]
    return parts, None


def candidate_problem(text: str, cfg: Generate) -> tuple[str, str] | None:
    words = len(text.split())
    if words < cfg.min_words:
        return "too_few_words", f"{words} words < {cfg.min_words}"
    if words > cfg.max_words:
        return "too_many_words", f"{words} words > {cfg.max_words}"
    m = _CANNOT.search(text)
    if m:
        return "not_text_only", f"mentions {m.group(1)!r}"
    if not text[0].isascii():
        return "starts_non_ascii", text[:1]
    if not text[0].isalnum():
        return "starts_with_punctuation", text[:1]
    return None


class Novelty:
    """Rejects exact (normalised) and near duplicates of the pool; the pool's embeddings grow incrementally."""

    def __init__(self, pool: list[str], threshold: float, embedder: Embedder | None):
        self.seen = {normalize_text(t): t for t in pool}
        self.threshold, self.embedder = threshold, embedder
        self.index = None
        if embedder is not None:
            self.index = EmbeddingIndex(embedder.dim)
            self.index.add(embedder.encode(pool))

    def check(self, texts: list[str]) -> list[tuple[str, str] | None]:
        """A reason per text (None: novel), accepting novel ones into the pool in order."""
        out: list[tuple[str, str] | None] = []
        fresh: list[int] = []
        for i, text in enumerate(texts):
            key = normalize_text(text)
            if key in self.seen:
                out.append(("duplicate", "equal to a pool item after normalisation"))
            else:
                self.seen[key] = text
                out.append(None)
                fresh.append(i)
        if self.index is not None and self.embedder is not None and fresh:
            verdicts = self.index.add_novel(self.embedder.encode([texts[i] for i in fresh]), self.threshold)
            for i, verdict in zip(fresh, verdicts, strict=True):
                if verdict is not None:
                    del self.seen[normalize_text(texts[i])]
                    out[i] = ("near_duplicate", f"cosine {verdict[0]:.3f} >= {self.threshold}")
        return out


def _params(cfg: Generate, call: int, stop: list[str]) -> SamplingParams:
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                          stop=stop, seed=(cfg.seed or 0) * 100_003 + call)


def self_instruct(seeds: list[str], backend: Backend, cfg: Generate, report: Report,
                  embedder: Embedder | None = None) -> Iterator[PromptRecord | Dropped]:
    rng = random.Random(cfg.seed or 0)
    novelty = Novelty(seeds, cfg.novelty_threshold, embedder)
    generated: list[str] = []
    prov = Provenance(stage=STAGE, backend=backend.name, model=backend.model,
                      sampling=_params(cfg, 0, []).summary(), method="self-instruct")
    accepted, calls, requests = 0, 0, 0
    limit = cfg.max_requests or 20 * max(cfg.num, 1)
    while accepted < cfg.num and requests < limit:
        prompts = []
        for _ in range(min(cfg.batch_size or cfg.default_batch, limit - requests, max(1, (cfg.num - accepted + 2) // 3))):
            k_gen = min(cfg.max_generated_examples, len(generated), cfg.examples)
            shown = rng.sample(generated, k_gen) + rng.sample(seeds, min(cfg.examples - k_gen, len(seeds)))
            rng.shuffle(shown)
            prompts.append(self_instruct_prompt(shown))
        requests += len(prompts)
        report.extra["requests"] = requests
        calls += 1
        checks = []
        for comp in backend.generate(prompts, _params(cfg, calls, ["\n\n\n"])):
            if comp.finish_reason == "error":
                yield drop(STAGE, {"prompt": "(a self-instruct request)"}, "backend_error", comp.error)
                continue
            items, cut = parse_numbered(comp.text, comp.finish_reason != "length")
            if cut:
                yield drop(STAGE, {"prompt": cut}, "unfinished_item", "the completion ended mid-item")
            for text in items:
                problem = candidate_problem(text, cfg)
                if problem:
                    yield drop(STAGE, {"prompt": text}, *problem)
                else:
                    checks.append(text)
        # the novelty check of one call's candidates is one batch of embeddings
        for text, problem in zip(checks, novelty.check(checks), strict=True):
            if problem:
                yield drop(STAGE, {"prompt": text}, *problem)
                continue
            if accepted >= cfg.num:
                yield drop(STAGE, {"prompt": text}, "surplus_after_num", f"--num {cfg.num} already reached")
                continue
            generated.append(text)
            accepted += 1
            yield PromptRecord(id=stable_id(text), prompt=text, source="self-instruct", provenance=[prov])
    report.extra["requests"] = requests
    if accepted < cfg.num:
        report.extra["stopped_early"] = f"{accepted} of {cfg.num} after {requests} requests (--max-requests)"


def red_team(types: list[QuestionType], backend: Backend, cfg: Generate, report: Report,
             embedder: Embedder | None = None) -> Iterator[PromptRecord | Dropped]:
    rng = random.Random(cfg.seed or 0)
    if cfg.max_types and cfg.max_types < len(types):
        types = rng.sample(types, cfg.max_types)
    prov = Provenance(stage=STAGE, backend=backend.name, model=backend.model,
                      sampling=_params(cfg, 0, []).summary(), method="red-team")
    seed_questions = [e["question"] for t in types for e in t.examples]
    novelty = Novelty(seed_questions, cfg.novelty_threshold, embedder)
    topics: dict[str, list[str]] = {t.name: list(dict.fromkeys(e["topic"] for e in t.examples if e.get("topic")))
                                    for t in types}
    accepted, calls, requests = 0, 0, 0
    limit = cfg.max_requests or 20 * max(cfg.num, 1)
    # brainstorm topics for every type at once, in rounds, until each has enough distinct ones
    for _round in range(3):
        short = [qt for qt in types if len(topics[qt.name]) < cfg.topics_per_type]
        if not short:
            break
        calls += 1
        params = _params(cfg, calls, ["\n\n"]).model_copy(update={"max_tokens": min(cfg.max_tokens, 128)})
        comps = backend.generate([topics_prompt(qt, topics[qt.name], rng) for qt in short], params)
        for qt, comp in zip(short, comps, strict=True):
            items, _ = parse_numbered(comp.text, comp.finish_reason != "length")
            known = {normalize_text(t) for t in topics[qt.name]}
            for item in items:
                topic = item.strip(" .;:-\"'")
                if 0 < len(topic.split()) <= 8 and normalize_text(topic) not in known:
                    known.add(normalize_text(topic))
                    topics[qt.name].append(topic)
    pairs = [(qt, topic) for i in range(cfg.topics_per_type) for qt in types
             if i < len(topics[qt.name]) for topic in [topics[qt.name][i]]]
    if not pairs:
        report.extra["stopped_early"] = "no topics could be brainstormed"
        return
    cursor = 0
    while accepted < cfg.num and requests < limit:
        size = min(cfg.batch_size or cfg.default_batch, limit - requests, 2 * (cfg.num - accepted))
        batch = [pairs[(cursor + i) % len(pairs)] for i in range(size)]
        cursor += len(batch)
        requests += len(batch)
        report.extra["requests"] = requests
        calls += 1
        prompts = [questions_prompt(qt, topic, rng) for qt, topic in batch]
        params = _params(cfg, calls, ["\n"]).model_copy(update={"max_tokens": min(cfg.max_tokens, 96)})
        comps = backend.generate(prompts, params)
        fresh = []
        for (qt, topic), comp in zip(batch, comps, strict=True):
            text = " ".join(comp.text.split())
            meta = {"prompt": text, "question_type": qt.name, "topic": topic}
            if comp.finish_reason == "error":
                yield drop(STAGE, meta, "backend_error", comp.error)
                continue
            problem = candidate_problem(text, cfg) if text else ("empty", "no question written")
            if problem:
                yield drop(STAGE, meta, *problem)
                continue
            fresh.append(meta)
        for meta, problem in zip(fresh, novelty.check([m["prompt"] for m in fresh]), strict=True):
            if problem:
                yield drop(STAGE, meta, *problem)
                continue
            if accepted >= cfg.num:
                yield drop(STAGE, meta, "surplus_after_num", f"--num {cfg.num} already reached")
                continue
            accepted += 1
            yield PromptRecord(id=stable_id(meta["prompt"]), source="red-team", provenance=[prov], **meta)
    report.extra["requests"] = requests
    report.extra["topics"] = sum(len(v) for v in topics.values())
    if accepted < cfg.num:
        report.extra["stopped_early"] = f"{accepted} of {cfg.num} after {requests} requests (--max-requests)"
