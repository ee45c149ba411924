"""What every stage shares: the `Stage` base, the backend's options (`BackendConfig`), the value types with their
ranges, `not_applied`, and the `RunContext` a stage fills for the runner. Each stage is one pydantic model
(`extra="forbid"`) in its own module under `selfalign/stages/` (`stages/principle.py` holds `Principle`, ...),
and `selfalign.stages.STAGES` lists them by kind. A stage's fields are its options, declared once: the recipe,
the Python API and the CLI (`selfalign.cli.options` makes each command's options from them) take them as they
are, and the stage's own code reads them. Every field has its range or its choices, a default and a
`description` (the CLI's help), so a bad value fails where the stage is made, before anything runs.

A stage runs in two steps, so that an executor can build it somewhere else: `prepare(runner)` reads its files
where the run is driven (a bad file fails there, before any model loads) and returns them; `build(backend,
runner, prepared, embedder)` makes the step, here or in a worker that rebuilt the stage as `cls(**config)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from selfalign.runner import RunContext, Runner  # noqa: F401 - RunContext: the stages fill it

Step = Callable[[Iterator[Any]], Iterator[Any]]

# every value is checked where a stage is made (the CLI, a recipe, the Python API), before anything runs
Count = Annotated[int, Field(ge=1)]  # at least one
Amount = Annotated[int, Field(ge=0)]  # zero or more
Finite = Annotated[float, Field(allow_inf_nan=False)]
Temperature = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TopP = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Penalty = Annotated[float, Field(gt=0, allow_inf_nan=False)]
BackendName = Literal["transformers", "vllm", "openai", "scripted"]  # selfalign.backends.NAMES
ExportFormat = Literal["messages", "sharegpt", "alpaca", "dpo"]


def flags(*names: str, metavar: str | None = None) -> dict[str, Any]:
    """A field's CLI flags where they are not `--field-name` (a short one, another long one), and the name its
    value has in --help: its `json_schema_extra`, read by `selfalign.cli.options` and the CLI's error messages."""
    return {"flags": list(names), **({"metavar": metavar} if metavar else {})}


def long_flag(model: type[BaseModel], name: str) -> str:
    """A field's CLI option: the long flag it declares (`flags`), else `--field-name`."""
    extra = model.model_fields[name].json_schema_extra or {}
    return next((f for f in extra.get("flags", []) if f.startswith("--")), "--" + name.replace("_", "-"))  # type: ignore[union-attr]


def keep_reasons(parse: Callable[[list[str] | None], frozenset[str]]) -> Any:
    """The type of a `keep` field: the drop reasons turned off, given as names (repeatable, comma-separated,
    `all`) and held as the set `parse` makes of them; an unknown name fails where the stage is made."""

    def parsed(value: Any) -> frozenset[str]:
        items = [value] if isinstance(value, str) else list(value or [])
        return parse([str(v) for v in items] or None)

    return Annotated[frozenset[str], BeforeValidator(parsed), PlainSerializer(sorted, return_type=list[str])]


def gate_keep(values: list[str] | None) -> frozenset[str]:
    """`keep` for the stages whose gates are `selfalign.gates`' (principle, refine)."""
    from selfalign.gates import parse_keep

    return parse_keep(values)


Keep = keep_reasons(gate_keep)


def not_applied(model: BaseModel, field: str, why: str) -> None:
    """Refuse a field given a value that would change nothing: "FIELD: WHY" (the CLI names its option)."""
    if getattr(model, field) != type(model).model_fields[field].get_default(call_default_factory=True):
        raise ValueError(f"{field}: {why}")


# a BackendConfig field whose backend parameter has another name, by backend (the one place this is said)
PARAMETER = {"max_model_len": {"openai": "max_context", "scripted": "max_context"}}


class BackendConfig(BaseModel):
    """One backend for every model stage (the CLI's --backend, --model, ... options, made from these fields).
    Options left None take the backend's own default; one the chosen backend does not take is an error naming
    it."""

    model_config = ConfigDict(extra="forbid")

    name: BackendName = Field("transformers", description="Inference backend.",
                              json_schema_extra=flags("--backend", "-b"))
    model: str | None = Field(None, description="Model folder (default: the embedded SmolLM2-135M-Instruct) or "
                              "the served model name.", json_schema_extra=flags("--model", "-m"))
    seed: int | None = Field(None, description="Random seed (reproducible on the same backend).")
    cache: bool = Field(True, description="Read and store completions in the cache.")
    base_url: str | None = Field(None, description="openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(None, description="openai backend: environment variable holding the API key "
                                    "(default OPENAI_API_KEY).")
    api_key_file: str | None = Field(None, description="openai backend: read the API key from this file.")
    concurrency: Count | None = Field(None, description="openai backend: requests in flight (default: the "
                                      "server's slots where it says, 1 for llama-cpp-python, else 8).")
    max_retries: Amount | None = Field(None, description="openai backend: retries of 429, 5xx, timeouts and "
                                       "resets (exponential backoff with jitter, Retry-After honoured; default 4).")
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        None, description="openai backend: deadline in seconds for each whole request attempt (default 120).",
        json_schema_extra=flags("--request-timeout"))
    max_model_len: Count | None = Field(None, description="vllm and openai backends: context length (default: "
                                        "the model's, or what the server reports).")
    tensor_parallel_size: Count | None = Field(None, description="vllm backend: GPUs per model (default 1).")
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="vllm backend: GPU memory fraction (default 0.9).")
    dtype: str | None = Field(None, description="Model dtype (e.g. float32, bfloat16).")
    quantization: str | None = Field(None, description="vllm backend: quantisation method.")
    tokenizer: str | None = Field(None, description="openai: count tokens with this tokenizer when the server has "
                                  "none: a tokenizer folder, a Hugging Face name in the local cache, or "
                                  "tiktoken:NAME.")

    @model_validator(mode="after")
    def _taken(self) -> BackendConfig:
        """An option the chosen backend does not take is refused here, before anything runs."""
        import inspect

        from selfalign.backends import backend_class

        accepted = [p for p in inspect.signature(backend_class(self.name).__init__).parameters if p != "self"]
        for field, parameter in self._options().items():
            if parameter not in accepted and field != "seed":  # the seed reaches every backend through sampling
                takes = ", ".join(long_flag(BackendConfig, f) for f in type(self).model_fields
                                  if self._parameter(f) in accepted) or "none"
                raise ValueError(f"{field}: not an option of the {self.name} backend (it takes {takes})")
        return self

    def _parameter(self, field: str) -> str:
        """The chosen backend's parameter for `field`."""
        return PARAMETER.get(field, {}).get(self.name, field)

    def _options(self) -> dict[str, str]:
        """The options given (field -> the backend's parameter name for it)."""
        given = self.model_dump(exclude={"name", "cache"}, exclude_none=True)
        return {field: self._parameter(field) for field in given}

    def public(self, **dump: Any) -> dict[str, Any]:
        """`model_dump(**dump)` with the server URL's credentials masked: what may be printed or stored."""
        from selfalign.io.urls import redact_url

        data = self.model_dump(**dump)
        if data.get("base_url"):
            data["base_url"] = redact_url(data["base_url"])
        return data

    def open(self) -> Any:
        from selfalign.backends import open_backend

        return open_backend(self.name, self.cache, **{p: getattr(self, f) for f, p in self._options().items()})


Latest = dict[str, list[str]]  # kind of records -> the files in a run folder that hold the newest ones


class Stage(BaseModel):
    """A step of a pipeline: what it reads, what it writes, and how it turns one into the other."""

    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[str]
    reads: ClassVar[str | None] = None  # "prompts", "aligned", "refined", "pairs" or None (makes its own records)
    writes: ClassVar[str]
    needs_model: ClassVar[bool] = False
    resumable: ClassVar[bool] = False
    # each record's result depends on that record alone: an executor may split the records among workers
    per_record: ClassVar[bool] = False
    name: str | None = Field(None, description="The file name in the output folder (default: the stage's kind).")

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, data: Any) -> Any:
        """A recipe's [[stage]] table names its kind: that key picked this class and is no option of it."""
        if isinstance(data, dict) and "kind" in data and data["kind"] == getattr(cls, "kind", None):
            data = {k: v for k, v in data.items() if k != "kind"}
        return data

    @property
    def label(self) -> str:
        return self.name or self.kind

    def prepare(self, runner: Runner) -> dict[str, Any]:
        """What the stage reads from files, read where the run is driven; fills `runner.context`."""
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

    # ---- where it stands in a pipeline ---------------------------------------------------------------------
    def wants(self) -> str | None:
        """The kind of records it reads in a pipeline (`reads`, unless its options choose another)."""
        return self.reads

    def inputs(self, latest: Latest, sampled: bool) -> list[str]:
        """The files it reads, from the newest of each kind (`sampled`: a stage before wrote answers with two
        sampled ones each)."""
        wants = self.wants()
        if wants is None:
            return []
        if wants == "aligned" or (wants == "pairs" and "pairs" not in latest and sampled):
            return latest.get("answers", [])  # the newest answers (a Dedup after Refine reads the refined ones);
            # pairs where no stage wrote any: answers with two sampled ones each (Principle(n=2))
        return latest.get(wants, [])

    def written(self, latest: Latest, inputs: list[str], out: str) -> None:
        """Record in `latest` what its file `out` holds, for the stages after it."""
        kind = self.writes
        latest[kind] = [*latest.get(kind, []), out] if kind == "prompts" and self.reads is None else [out]
        if kind in ("aligned", "refined"):
            latest["answers"] = [out]

    def two_answers(self) -> bool:
        """Whether its records carry two sampled answers each (pairs for a judge without a critique)."""
        return False


def asset(path: str | None, *default: str) -> str:
    """The file a stage reads: the user's, else the bundled one."""
    from selfalign.assets import default_path

    return path or default_path(*default)


class Answering(Stage):
    """A stage that answers each record with the model on its own (principle, refine, critique, judge): resumed
    by id, and split among workers by an executor that has them."""

    needs_model: ClassVar[bool] = True
    resumable: ClassVar[bool] = True
    per_record: ClassVar[bool] = True


class Principled(Answering):
    """A model stage that reads the principle set (principle, critique, judge): its file is read where the run
    is driven, its short names shown in the summary, its content part of the stage's key; and its worked
    exemplars where it has them (a field `exemplars`)."""

    # the bundled exemplars (exemplars/) and their loader (selfalign.assets), for a stage that has them
    exemplar_file: ClassVar[str | None] = None
    exemplar_loader: ClassVar[str] = "load_exemplars"
    principles: str | None = Field(None, description="Principle set (.md/.txt numbered list or .yaml).")

    def prepare(self, runner: Runner) -> dict[str, Any]:
        from selfalign import assets

        principles = assets.load_principles(self.principles)
        runner.context.principle_names = {p.id: p.name for p in principles}
        if self.exemplar_file is None:
            return {"principles": principles}
        return {"principles": principles, "exemplars": getattr(assets, self.exemplar_loader)(self.exemplars)}

    def assets(self) -> dict[str, str]:
        files = {"principles": asset(self.principles, "principles", "default.md")}
        if self.exemplar_file is not None:
            files["exemplars"] = asset(self.exemplars, "exemplars", self.exemplar_file)
        return files
