"""selfalign from Python: stages as typed configs, a pipeline that runs them into a folder.

    from selfalign import Pipeline, SelfInstruct, Principle, Dedup, Export
    Pipeline([SelfInstruct(num=100), Principle(), Dedup(), Export(format="messages")]).run(out_dir="out/")

Each stage writes `NAME.jsonl`, `NAME-dropped.jsonl` and `NAME.json` (its report) through the same `Runner` as
the CLI: side files renamed when a stage finishes, resume of `principle` and `refine` by id, every drop with
its reason. A stage whose output is already complete and newer than its input is not run again, so a pipeline
interrupted anywhere resumes stage by stage. Every option is checked: an unknown one is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from selfalign.runner import Runner


class BackendConfig(BaseModel):
    """One backend for every model stage (the CLI's --backend, --model, ... options). Options left None take the
    backend's own default; one the chosen backend does not take is an error naming it."""

    model_config = ConfigDict(extra="forbid")

    name: str = "transformers"
    model: str | None = None
    seed: int | None = None
    cache: bool = True
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    concurrency: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    quantization: str | None = None

    def open(self) -> Any:
        from selfalign.backends import open_backend

        opts = self.model_dump(exclude={"name", "cache"}, exclude_none=True)
        if "max_model_len" in opts and self.name in ("openai", "scripted"):
            opts["max_context"] = opts.pop("max_model_len")
        return open_backend(self.name, self.cache, **opts)


class Stage(BaseModel):
    """A step of a pipeline: what it reads, what it writes, and how it turns one into the other."""

    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[str]
    reads: ClassVar[str | None] = None  # "prompts", "aligned", "refined" or None (makes its own records)
    writes: ClassVar[str]
    needs_model: ClassVar[bool] = False
    resumable: ClassVar[bool] = False
    name: str | None = None  # the file name in the output folder (default: the stage's kind)

    @property
    def label(self) -> str:
        return self.name or self.kind

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        raise NotImplementedError

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import AlignedRecord, PromptRecord

        return PromptRecord if self.reads == "prompts" else AlignedRecord


class _Generate(Stage):
    writes: ClassVar[str] = "prompts"
    needs_model: ClassVar[bool] = True
    num: int = 20
    seed: int | None = None  # default: the backend's seed, else 0
    novelty_threshold: float = 0.85
    embeddings: bool = True
    max_requests: int | None = None
    batch_size: int | None = None

    def _config(self, **extra: Any) -> Any:
        from selfalign.stages.generate import GenerateConfig

        fields = {"num": self.num, "seed": self.seed or 0, "novelty_threshold": self.novelty_threshold,
                  "max_requests": self.max_requests, **extra}
        if self.batch_size:
            fields["batch_size"] = self.batch_size
        return GenerateConfig(**fields)

    def _embedder(self) -> Any:
        if not self.embeddings:
            return None
        from selfalign.embeddings import Embedder

        return Embedder()


class SelfInstruct(_Generate):
    kind: ClassVar[str] = "self-instruct"
    seeds: str | None = None  # our JSONL, the public self-instruct format; default: the bundled pool

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        from selfalign import assets
        from selfalign.stages.generate import self_instruct

        pool, cfg, embedder = assets.load_seeds(self.seeds), self._config(), self._embedder()
        runner.total = self.num
        return lambda _: self_instruct(pool, backend, cfg, runner.report, embedder)


class RedTeam(_Generate):
    kind: ClassVar[str] = "red-team"
    question_types: str | None = None  # .txt or TGRT .jsonl; default: the bundled types
    topics_per_type: int = 10
    max_types: int | None = None

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        from selfalign import assets
        from selfalign.stages.generate import red_team

        types = assets.load_question_types(self.question_types)
        cfg = self._config(topics_per_type=self.topics_per_type, max_types=self.max_types)
        embedder = self._embedder()
        runner.total = self.num
        return lambda _: red_team(types, backend, cfg, runner.report, embedder)


class Principle(Stage):
    kind: ClassVar[str] = "principle"
    reads: ClassVar[str | None] = "prompts"
    writes: ClassVar[str] = "aligned"
    needs_model: ClassVar[bool] = True
    resumable: ClassVar[bool] = True
    principles: str | None = None
    exemplars: str | None = None
    persona: str = "Sage"
    rename: str | None = None
    temperature: float = 0.5
    top_p: float = 0.95
    max_tokens: int = 256
    min_words: int = 25
    keep: list[str] = Field(default_factory=list)
    apology_bias: bool = True
    batch_size: int | None = None
    seed: int | None = None

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        from selfalign import assets
        from selfalign.gates import parse_keep
        from selfalign.stages.principle import PrincipleConfig, PrincipleStage

        cfg = PrincipleConfig(persona=self.persona, rename=self.rename, temperature=self.temperature,
                              top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed,
                              min_words=self.min_words, keep=parse_keep(self.keep or None),
                              push_down_apologies=self.apology_bias, batch_size=self.batch_size)
        principles = assets.load_principles(self.principles)
        runner.principle_names = {p.id: p.name for p in principles}
        stage = PrincipleStage(backend, principles, assets.load_exemplars(self.exemplars), cfg, runner.report)
        return stage.run


class Refine(Stage):
    kind: ClassVar[str] = "refine"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "refined"
    needs_model: ClassVar[bool] = True
    resumable: ClassVar[bool] = True
    persona: str = "Sage"
    temperature: float = 0.3
    top_p: float = 0.7
    max_tokens: int = 512
    repetition_penalty: float = 1.1
    min_words: int = 25
    keep: list[str] = Field(default_factory=list)
    batch_size: int | None = None
    seed: int | None = None

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        from selfalign.gates import parse_keep
        from selfalign.stages.refine import RefineConfig, refine

        cfg = RefineConfig(persona=self.persona, temperature=self.temperature, top_p=self.top_p,
                           max_tokens=self.max_tokens, repetition_penalty=self.repetition_penalty,
                           min_words=self.min_words, keep=parse_keep(self.keep or None), batch_size=self.batch_size,
                           seed=self.seed)
        return lambda records: refine(records, backend, cfg, runner.report)


class Dedup(Stage):
    kind: ClassVar[str] = "dedup"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "aligned"
    field: str = "prompt"
    threshold: float = 0.90
    jaccard: float = 0.7
    second_look: bool = True
    against: list[str] = Field(default_factory=list)
    embedding_model: str | None = None

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        from selfalign.embeddings import Embedder
        from selfalign.paths import cache_dir
        from selfalign.stages.dedup import DedupConfig, dedup, load_reference

        cfg = DedupConfig(field=self.field, threshold=self.threshold, jaccard=self.jaccard,
                          second_look=self.second_look)
        reference = load_reference(self.against)
        embedder = (Embedder(self.embedding_model, cache=cache_dir() / "embeddings.sqlite")
                    if self.threshold <= 1 else None)
        return lambda records: dedup(records, cfg, runner.report, embedder, reference)

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import Record

        return Record


class Export(Stage):
    kind: ClassVar[str] = "export"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "sft"
    format: str = "messages"
    system: str | None = None
    verbose: bool = False
    tokenizer: str | None = None
    max_tokens: int | None = None

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        from selfalign.stages.export import ExportConfig, export

        counter = None
        if self.tokenizer or self.max_tokens is not None:
            from selfalign.tokens import token_counter

            counter = token_counter(self.tokenizer or "tiktoken:o200k_base")
        cfg = ExportConfig(format=self.format, system=self.system, max_tokens=self.max_tokens,
                           answer="verbose_response" if self.verbose else "response")
        runner.flush_each = False
        return lambda records: export(records, cfg, runner.report, counter)

    def input_model(self) -> type[BaseModel]:
        from selfalign.stages.export import ExportInput

        return ExportInput


class Load(Stage):
    """Records from your own file, validated and copied in (bad lines set aside with their line)."""

    kind: ClassVar[str] = "load"
    writes: ClassVar[str] = "prompts"
    path: str
    records: str = "prompts"  # what the file holds: prompts, aligned or refined records

    def build(self, backend: Any, runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
        return _counted(runner)

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import AlignedRecord, PromptRecord, RefinedRecord

        return {"prompts": PromptRecord, "aligned": AlignedRecord, "refined": RefinedRecord}[self.records]


def _counted(runner: Runner) -> Callable[[Iterator[Any]], Iterator[Any]]:
    return lambda records: records  # the runner counts what comes out


STAGES: dict[str, type[Stage]] = {c.kind: c for c in (Load, SelfInstruct, RedTeam, Principle, Dedup, Export, Refine)}


class PipelineRunner(Runner):
    """The runner a pipeline uses: no display, messages to `say`."""

    total: int | None = None
    principle_names: dict[str, str] | None = None


class Pipeline:
    """Stages run in order into one folder; each reads the newest output of the kind it needs
    (`Refine` and `Export(verbose=True)` read refined records, `Dedup` and `Export` the newest aligned ones)."""

    def __init__(self, stages: list[Stage], stamp: str | None = None):
        self.stages = stages
        self.stamp = stamp  # the recipe hash put into every kept record's provenance
        names = [s.label for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"two stages write the same file: {names}; give one a name=")

    def plan(self) -> list[tuple[Stage, list[str], str]]:
        """(stage, the files it reads, the file it writes), by file name inside the output folder."""
        latest: dict[str, list[str]] = {}
        steps = []
        for st in self.stages:
            wants = "refined" if isinstance(st, Export) and st.verbose else st.reads
            if isinstance(st, Load):
                inputs = [str(Path(st.path).resolve())]
                latest[st.records] = [*latest.get(st.records, []), f"{st.label}.jsonl"] \
                    if st.records == "prompts" else [f"{st.label}.jsonl"]
                if st.records != "prompts":
                    latest["answers"] = [f"{st.label}.jsonl"]
                steps.append((st, inputs, f"{st.label}.jsonl"))
                continue
            if wants is None:
                inputs = []
            elif wants == "aligned":  # the newest answers: a Dedup after Refine reads the refined ones
                inputs = latest.get("answers", [])
            else:
                inputs = latest.get(wants, [])
            if wants is not None and not inputs:
                raise ValueError(f"stage {st.label!r} reads {wants} records, but no stage before it writes them")
            out = f"{st.label}.jsonl"
            kind = "refined" if isinstance(st, Dedup) and inputs == latest.get("refined") else st.writes
            latest[kind] = [*latest.get(kind, []), out] if kind == "prompts" and st.reads is None else [out]
            if kind in ("aligned", "refined"):
                latest["answers"] = [out]
            steps.append((st, inputs, out))
        return steps

    def run(self, out_dir: str | os.PathLike, backend: Any = None, executor: Any = None,
            say: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run every stage not yet done; returns each stage's Report by name. `backend`: a backend object, a
        BackendConfig, or None (the embedded model, opened only if a stage needs it)."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (executor or LocalExecutor()).check()
        be = backend
        seed = backend.seed if isinstance(backend, BackendConfig) else None
        reports: dict[str, Any] = {}
        try:
            for st, inputs, out in self.plan():
                if seed is not None and getattr(st, "seed", 0) is None:  # the run's seed, where a stage sets none
                    st = st.model_copy(update={"seed": seed})
                paths = [str(folder / p) for p in inputs]  # (a Load's input is absolute: the join keeps it)
                target = folder / out
                options = _digest(st)
                saved = _saved_report(folder / f"{st.label}.json")
                if saved.extra.get("options") != options:  # new options: the stage's old files are not its output
                    _forget(folder, st.label, say if target.exists() else None)
                elif target.exists() and all(target.stat().st_mtime >= Path(p).stat().st_mtime for p in paths):
                    reports[st.label] = saved
                    continue
                if st.needs_model and not hasattr(be, "generate"):
                    be = (be or BackendConfig()).open()
                runner = PipelineRunner(st.kind, str(target), str(folder / f"{st.label}-dropped.jsonl"),
                                        str(folder / f"{st.label}.json"), say=say)
                if st.resumable:
                    runner.resume()
                runner.report.extra["options"] = options
                step = st.build(be, runner)
                records = runner.records(paths, st.input_model()) if paths else iter(())
                reports[st.label] = runner.execute(_stamped(step(records), self.stamp))
        finally:
            if be is not backend and hasattr(be, "close"):
                be.close()
        return reports


class LocalExecutor:
    """Stages run in this process, one after another."""

    def check(self) -> None:
        return None


def _stamped(items: Iterator[Any], stamp: str | None) -> Iterator[Any]:
    """Put the recipe hash into the newest provenance entry of every kept record."""
    for item in items:
        prov = getattr(item, "provenance", None)
        if stamp and prov:
            setattr(prov[-1], "recipe", stamp)
        yield item


def _digest(stage: Stage) -> str:
    import hashlib

    return hashlib.sha256(f"{stage.kind} {stage.model_dump_json()}".encode()).hexdigest()[:16]


def _forget(folder: Path, label: str, say: Callable[[str], None] | None) -> None:
    """Remove a stage's files made under other options, so it starts afresh (and every stage after it)."""
    if say:
        say(f"{label}: its options changed since its files were made; making them again")
    for name in (f"{label}.jsonl", f"{label}-dropped.jsonl", f"{label}.json"):
        for path in (folder / name, folder / f"{name}.partial"):
            path.unlink(missing_ok=True)


def _saved_report(path: Path) -> Any:
    import json

    from selfalign.counts import Report

    data = json.loads(path.read_text()) if path.exists() else {}
    rep = Report(data.get("stage", path.stem))
    rep.read, rep.kept = data.get("read", 0), data.get("kept", 0)
    rep.dropped.update(data.get("dropped", {}))
    rep.principles.update(data.get("principles_cited", {}))
    rep.extra.update({k: v for k, v in data.items() if k == "options"})
    return rep
