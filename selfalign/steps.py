"""The pipeline's stages as typed configs: each a pydantic model (`extra="forbid"`) whose fields are the CLI's
options for that stage, saying what it reads and writes and building its step over a Runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
