"""The pipeline's stages as typed configs: each a pydantic model (`extra="forbid"`) whose fields are the CLI's
options for that stage, saying what it reads and writes and building its step over a Runner. Every field has
its range or its choices (a sampling value, a count, a format, a backend's name), so a bad value fails where
the config is made, from the CLI, a recipe or Python, before any stage runs.

A stage runs in two steps, so that an executor can build it somewhere else: `prepare(runner)` reads its files
where the run is driven (a bad file fails there, before any model loads) and returns them; `build(backend,
runner, prepared, embedder)` makes the step, here or in a worker that rebuilt the stage as `cls(**config)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from selfalign.runner import Runner

Step = Callable[[Iterator[Any]], Iterator[Any]]

# every value is checked where a config is made (the CLI, a recipe, the Python API), before anything runs
Count = Annotated[int, Field(ge=1)]  # at least one
Amount = Annotated[int, Field(ge=0)]  # zero or more
Finite = Annotated[float, Field(allow_inf_nan=False)]
Temperature = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TopP = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Penalty = Annotated[float, Field(gt=0, allow_inf_nan=False)]
BackendName = Literal["transformers", "vllm", "openai", "scripted"]  # selfalign.backends.NAMES
ExportFormat = Literal["messages", "sharegpt", "alpaca", "dpo"]


def not_applied(model: BaseModel, field: str, why: str) -> None:
    """Refuse a field given a value that would change nothing: "FIELD: WHY" (the CLI names its option)."""
    if getattr(model, field) != type(model).model_fields[field].get_default(call_default_factory=True):
        raise ValueError(f"{field}: {why}")


class BackendConfig(BaseModel):
    """One backend for every model stage (the CLI's --backend, --model, ... options). Options left None take the
    backend's own default; one the chosen backend does not take is an error naming it."""

    model_config = ConfigDict(extra="forbid")

    name: BackendName = "transformers"
    model: str | None = None
    seed: int | None = None
    cache: bool = True
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    concurrency: Count | None = None
    max_retries: Amount | None = None
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    max_model_len: Count | None = None
    tensor_parallel_size: Count | None = None
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = None
    dtype: str | None = None
    quantization: str | None = None
    tokenizer: str | None = None

    @model_validator(mode="after")
    def _taken(self) -> BackendConfig:
        """An option the chosen backend does not take is refused here, before anything runs."""
        import inspect

        from selfalign.backends import backend_class, flag

        accepted = [p for p in inspect.signature(backend_class(self.name).__init__).parameters if p != "self"]
        for field in self._options():
            if field not in accepted and field != "seed":  # the seed reaches every backend through its sampling
                takes = ", ".join(flag(p) for p in accepted if p not in ("rules", "device", "batch_size")) or "none"
                raise ValueError(f"{'max_model_len' if field == 'max_context' else field}: not an option of the "
                                 f"{self.name} backend (it takes {takes})")
        return self

    def _options(self) -> dict[str, Any]:
        """The options the backend is built with, by its own parameter names."""
        opts = self.model_dump(exclude={"name", "cache"}, exclude_none=True)
        if "max_model_len" in opts and self.name in ("openai", "scripted"):
            opts["max_context"] = opts.pop("max_model_len")
        return opts

    def public(self, **dump: Any) -> dict[str, Any]:
        """`model_dump(**dump)` with the server URL's credentials masked: what may be printed or stored."""
        from selfalign.io.urls import redact_url

        data = self.model_dump(**dump)
        if data.get("base_url"):
            data["base_url"] = redact_url(data["base_url"])
        return data

    def open(self) -> Any:
        from selfalign.backends import open_backend

        return open_backend(self.name, self.cache, **self._options())


class Stage(BaseModel):
    """A step of a pipeline: what it reads, what it writes, and how it turns one into the other."""

    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[str]
    reads: ClassVar[str | None] = None  # "prompts", "aligned", "refined" or None (makes its own records)
    writes: ClassVar[str]
    needs_model: ClassVar[bool] = False
    resumable: ClassVar[bool] = False
    # each record's result depends on that record alone: an executor may split the records among workers
    per_record: ClassVar[bool] = False
    name: str | None = None  # the file name in the output folder (default: the stage's kind)

    @property
    def label(self) -> str:
        return self.name or self.kind

    def prepare(self, runner: Runner) -> dict[str, Any]:
        """What the stage reads from files, read where the run is driven; tells the runner what it will show."""
        return {}

    def assets(self) -> dict[str, str]:
        """The asset files the stage reads (role -> path, bundled defaults included): their content is part of
        the stage's key in a pipeline, so an edited file makes the stage again."""
        return {}

    def embeds(self) -> tuple[str | None, bool] | None:
        """The embedding model the stage needs, (name, cached), or None: the executor starts it (once for
        every stage that names the same one) and hands it to `build`."""
        return None

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        raise NotImplementedError

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import AlignedRecord, PromptRecord

        return PromptRecord if self.reads == "prompts" else AlignedRecord


def _keep(values: list[str]) -> frozenset[str]:
    from selfalign.gates import parse_keep

    return parse_keep(values or None)


def _asset(path: str | None, *default: str) -> str:
    """The file a stage reads: the user's, else the bundled one."""
    from selfalign.assets import default_path

    return path or default_path(*default)


class _Generate(Stage):
    writes: ClassVar[str] = "prompts"
    needs_model: ClassVar[bool] = True
    num: Amount = 20
    seed: int | None = None  # default: the backend's seed, else 0
    novelty_threshold: Finite = 0.85
    embeddings: bool = True
    max_requests: Count | None = None
    batch_size: Count | None = None

    @model_validator(mode="after")
    def _applies(self) -> _Generate:
        if not self.embeddings:
            not_applied(self, "novelty_threshold", "a cosine of embeddings, and embeddings=false compares exact text only")
        return self

    def _config(self, **extra: Any) -> Any:
        from selfalign.stages.generate import GenerateConfig

        fields = {"num": self.num, "seed": self.seed or 0, "novelty_threshold": self.novelty_threshold,
                  "max_requests": self.max_requests, **extra}
        if self.batch_size:
            fields["batch_size"] = self.batch_size
        return GenerateConfig(**fields)

    def _count(self, runner: Runner) -> None:
        runner.total = (getattr(runner, "total", None) or 0) + self.num  # the bar's end: the prompts to keep

    def embeds(self) -> tuple[str | None, bool] | None:
        return (None, False) if self.embeddings else None


class SelfInstruct(_Generate):
    kind: ClassVar[str] = "self-instruct"
    seeds: str | None = None  # our JSONL, the public self-instruct format; default: the bundled pool

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign import assets

        self._count(runner)
        return {"pool": assets.load_seeds(self.seeds)}

    def assets(self) -> dict[str, str]:
        return {"seeds": _asset(self.seeds, "exemplars", "seed_tasks.jsonl")}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.generate import self_instruct

        cfg = self._config()
        return lambda _: self_instruct(prepared["pool"], backend, cfg, runner.report, embedder)


class RedTeam(_Generate):
    kind: ClassVar[str] = "red-team"
    question_types: str | None = None  # .txt or TGRT .jsonl; default: the bundled types
    topics_per_type: Count = 10
    max_types: Count | None = None

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign import assets

        self._count(runner)
        return {"types": assets.load_question_types(self.question_types)}

    def assets(self) -> dict[str, str]:
        return {"question_types": _asset(self.question_types, "exemplars", "question_types.txt")}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.generate import red_team

        cfg = self._config(topics_per_type=self.topics_per_type, max_types=self.max_types)
        return lambda _: red_team(prepared["types"], backend, cfg, runner.report, embedder)


class _Answering(Stage):
    """A stage that answers each record with the model on its own (principle, refine): resumed by id, and
    split among workers by an executor that has them. Its subclasses have the fields `keep`, `seed`, ..."""

    needs_model: ClassVar[bool] = True
    resumable: ClassVar[bool] = True
    per_record: ClassVar[bool] = True

    def prepare(self, runner: Runner) -> dict[str, Any]:
        _keep(getattr(self, "keep", []))  # an unknown drop reason fails before any model loads
        return {}


class Principle(_Answering):
    kind: ClassVar[str] = "principle"
    reads: ClassVar[str | None] = "prompts"
    writes: ClassVar[str] = "aligned"
    principles: str | None = None
    exemplars: str | None = None
    persona: str = "Sage"
    rename: str | None = None
    temperature: Temperature = 0.5
    top_p: TopP = 0.95
    max_tokens: Count = 256
    min_words: Amount = 25
    keep: list[str] = Field(default_factory=list)
    apology_bias: bool = True
    batch_size: Count | None = None
    seed: int | None = None
    n: int = Field(1, ge=1)  # answers sampled per prompt; 2 gives each record a pair (responses) for Judge
    judge: bool = False  # drop answers the model judges as breaking a principle they cite (judge_rejected)
    judge_threshold: Finite = 0.0
    judge_method: Literal["auto", "logprobs", "vote"] = "auto"

    @model_validator(mode="after")
    def _applies(self) -> Principle:
        if not self.judge:
            not_applied(self, "judge_threshold", "applies only with judge=true")
            not_applied(self, "judge_method", "applies only with judge=true")
        return self

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign import assets

        super().prepare(runner)
        principles = assets.load_principles(self.principles)
        runner.principle_names = {p.id: p.name for p in principles}
        return {"principles": principles, "exemplars": assets.load_exemplars(self.exemplars)}

    def assets(self) -> dict[str, str]:
        return {"principles": _asset(self.principles, "principles", "default.md"),
                "exemplars": _asset(self.exemplars, "exemplars", "default.yaml")}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.principle import PrincipleConfig, PrincipleStage

        cfg = PrincipleConfig(persona=self.persona, rename=self.rename, temperature=self.temperature,
                              top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed,
                              min_words=self.min_words, keep=_keep(self.keep),
                              push_down_apologies=self.apology_bias, batch_size=self.batch_size, n=self.n,
                              judge=self.judge, judge_threshold=self.judge_threshold, judge_method=self.judge_method)
        return PrincipleStage(backend, prepared["principles"], prepared["exemplars"], cfg, runner.report).run


class Refine(_Answering):
    kind: ClassVar[str] = "refine"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "refined"
    persona: str = "Sage"
    temperature: Temperature = 0.3
    top_p: TopP = 0.7
    max_tokens: Count = 512
    repetition_penalty: Penalty = 1.1
    min_words: Amount = 25
    keep: list[str] = Field(default_factory=list)
    batch_size: Count | None = None
    seed: int | None = None

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.refine import RefineConfig, refine

        cfg = RefineConfig(persona=self.persona, temperature=self.temperature, top_p=self.top_p,
                           max_tokens=self.max_tokens, repetition_penalty=self.repetition_penalty,
                           min_words=self.min_words, keep=_keep(self.keep), batch_size=self.batch_size,
                           seed=self.seed)
        return lambda records: refine(records, backend, cfg)


class Critique(_Answering):
    """Check each answer against the principles its thoughts cite plus `sample` more, and revise it where one is
    broken; writes pairs (response, revision) for Judge and Export(format="dpo"), leaving the answers as they are."""

    kind: ClassVar[str] = "critique"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "pairs"
    principles: str | None = None
    exemplars: str | None = None  # critique exemplars; default: the bundled exemplars/critique.yaml
    persona: str = "Sage"
    sample: Amount = 2
    temperature: Temperature = 0.3
    top_p: TopP = 0.9
    max_tokens: Count = 384
    repetition_penalty: Penalty = 1.0
    min_words: Amount = 25
    keep: list[str] = Field(default_factory=list)
    batch_size: Count | None = None
    seed: int | None = None

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign import assets
        from selfalign.stages.critique import parse_keep

        parse_keep(self.keep or None)  # critique's own reasons: an unknown one fails before any model loads
        principles = assets.load_principles(self.principles)
        runner.principle_names = {p.id: p.name for p in principles}
        return {"principles": principles, "exemplars": assets.load_critique_exemplars(self.exemplars)}

    def assets(self) -> dict[str, str]:
        return {"principles": _asset(self.principles, "principles", "default.md"),
                "exemplars": _asset(self.exemplars, "exemplars", "critique.yaml")}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.critique import CritiqueConfig, CritiqueStage, parse_keep

        cfg = CritiqueConfig(persona=self.persona, sample=self.sample, seed=self.seed, temperature=self.temperature,
                             top_p=self.top_p, max_tokens=self.max_tokens, repetition_penalty=self.repetition_penalty,
                             batch_size=self.batch_size, min_words=self.min_words, keep=parse_keep(self.keep or None))
        return CritiqueStage(backend, prepared["principles"], prepared["exemplars"], cfg, runner.report).run

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import AlignedRecord

        return AlignedRecord


class Judge(_Answering):
    """Which answer of each pair follows a principle (or the whole set) better, from the model's log-probabilities
    of a one-token choice in both orders (a sampled vote where the backend gives none)."""

    kind: ClassVar[str] = "judge"
    reads: ClassVar[str | None] = "pairs"
    writes: ClassVar[str] = "pairs"
    principles: str | None = None
    principle: str = "all"
    method: Literal["auto", "logprobs", "vote"] = "auto"
    samples: Count = 5
    vote_max_tokens: Count = 4
    batch_size: Count | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _applies(self) -> Judge:
        if self.method == "logprobs":
            not_applied(self, "samples", "applies only to a vote (method=vote or auto), not method=logprobs")
            not_applied(self, "vote_max_tokens", "applies only to a vote (method=vote or auto), not method=logprobs")
        return self

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign import assets
        from selfalign.stages.judge import JudgeConfig, principles_for

        principles = assets.load_principles(self.principles)
        principles_for(JudgeConfig(principle=self.principle), principles)  # an unknown principle fails here
        runner.principle_names = {p.id: p.name for p in principles}
        return {"principles": principles}

    def assets(self) -> dict[str, str]:
        return {"principles": _asset(self.principles, "principles", "default.md")}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.judge import JudgeConfig, judge

        cfg = JudgeConfig(principle=self.principle, method=self.method, samples=self.samples,
                          vote_max_tokens=self.vote_max_tokens, batch_size=self.batch_size, seed=self.seed)
        return lambda records: judge(records, backend, cfg, prepared["principles"])

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import Record

        return Record  # a pair is response + revision, or two sampled responses: the judge looks for either


class Dedup(Stage):
    kind: ClassVar[str] = "dedup"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "aligned"
    field: Literal["prompt", "response", "both"] = "prompt"
    threshold: Finite | None = None  # None: the model's measured cosine (embeddings.dedup_calibration)
    jaccard: Finite = 0.7
    second_look: bool = True
    against: list[str] = Field(default_factory=list)
    embedding_model: str = "all-mpnet-base-v2"  # embeddings.DEDUP_EMBEDDING_MODEL
    cache: bool = True  # read and store embeddings in the cache
    search: Literal["auto", "all-pairs", "cluster"] = "auto"  # or auto: clusters past cluster_above texts
    cluster_above: Amount = 20_000
    cluster_size: Count = 1000

    @model_validator(mode="after")
    def _applies(self) -> Dedup:
        if self.search != "auto":
            not_applied(self, "cluster_above", f"applies only to search=auto, not search={self.search}")
        if self.search == "all-pairs":
            not_applied(self, "cluster_size", "applies only to a clustered search, not search=all-pairs")
        if self.embeds() is None:
            why = "no embeddings are computed with a threshold above 1"
            not_applied(self, "embedding_model", why)
            not_applied(self, "cache", why)
            for field in ("search", "cluster_above", "cluster_size"):
                not_applied(self, field, why)
            if self.jaccard > 1:
                not_applied(self, "second_look", "near pairs are looked at again, and with threshold and jaccard "
                            "above 1 only exact duplicates are dropped")
        return self

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign.stages.dedup import load_reference

        return {"reference": load_reference(self.against)}

    def embeds(self) -> tuple[str | None, bool] | None:
        return (self.embedding_model, self.cache) if self.threshold is None or self.threshold <= 1 else None

    def assets(self) -> dict[str, str]:
        return {f"against {i}": path for i, path in enumerate(self.against, 1)}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.dedup import DedupConfig, dedup

        cfg = DedupConfig(field=self.field, threshold=self.threshold, jaccard=self.jaccard,
                          second_look=self.second_look, search=self.search, cluster_above=self.cluster_above,
                          cluster_size=self.cluster_size)
        cfg.block *= getattr(embedder, "parallel", 1)  # a pool of workers embeds a whole block each per step
        cache = getattr(embedder, "cache", None)

        def step(records: Iterator[Any]) -> Iterator[Any]:
            hits, misses = (cache.hits, cache.misses) if cache else (0, 0)
            yield from dedup(records, cfg, runner.report, embedder, prepared["reference"],
                             getattr(runner, "phase", None))
            if cache is not None:
                runner.say(f"embeddings: {cache.hits - hits} from cache, {cache.misses - misses} computed")

        return step

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import Record

        return Record


class Export(Stage):
    kind: ClassVar[str] = "export"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "sft"
    format: ExportFormat = "messages"
    system: str | None = None
    verbose: bool = False
    tokenizer: str | None = None
    max_tokens: Count | None = None
    min_margin: Finite | None = 0.3  # dpo: judged pairs under this margin are low_margin; 0: off (benchmarks/judge.py)
    revised: bool = False  # SFT: the critique's revision where there is one

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

    def prepare(self, runner: Runner) -> dict[str, Any]:
        if not (self.tokenizer or self.max_tokens is not None):
            return {"counter": None}
        from selfalign.text.tokens import token_counter

        try:
            return {"counter": token_counter(self.tokenizer or "tiktoken:o200k_base")}
        except (RuntimeError, OSError, ValueError) as e:
            raise ValueError(f"--tokenizer {self.tokenizer}: {e}") from None

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        from selfalign.stages.export import ExportConfig, export

        cfg = ExportConfig(format=self.format, system=self.system, max_tokens=self.max_tokens,
                           min_margin=self.min_margin,
                           answer="verbose_response" if self.verbose else "revision" if self.revised else "response")
        runner.flush_each = False  # 200k records/s territory: flush every 50 ms, not every line
        if self.format == "dpo" and self.min_margin is not None:
            runner.report.extra["min_margin"] = self.min_margin  # the summary says which minimum applied
        return lambda records: export(records, cfg, prepared["counter"])

    def input_model(self) -> type[BaseModel]:
        from selfalign.stages.export import ExportInput

        return ExportInput


class Load(Stage):
    """Records from your own file, validated and copied in (bad lines set aside with their line)."""

    kind: ClassVar[str] = "load"
    writes: ClassVar[str] = "prompts"
    path: str
    records: Literal["prompts", "aligned", "refined", "critiqued"] = "prompts"  # what the file holds

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return lambda records: records  # the runner counts what comes out

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import AlignedRecord, PromptRecord, RefinedRecord

        from selfalign.records import CritiquedRecord

        return {"prompts": PromptRecord, "aligned": AlignedRecord, "refined": RefinedRecord,
                "critiqued": CritiquedRecord}[self.records]


STAGES: dict[str, type[Stage]] = {c.kind: c for c in (Load, SelfInstruct, RedTeam, Principle, Dedup, Export, Refine,
                                                       Critique, Judge)}
