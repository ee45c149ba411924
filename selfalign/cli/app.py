"""The CLI's shared parts: the typer app, option types, backend options, and `Run`, the runner with a display."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from enum import Enum
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from selfalign.gates import REASONS
from selfalign.runner import RunError, Runner, Stopped

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
KeyEnv = Annotated[str | None, typer.Option("--api-key-env", help="openai backend: environment variable holding the API key (default OPENAI_API_KEY).")]
KeyFile = Annotated[str | None, typer.Option("--api-key-file", help="openai backend: read the API key from this file.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Prompts per backend call (default: transformers 64, vllm 256, openai 64).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed (reproducible on the same backend).")]
Concurrency = Annotated[int | None, typer.Option("--concurrency", help="openai backend: requests in flight (default 8).")]
Retries = Annotated[int | None, typer.Option("--max-retries", help="openai backend: retries of 429, 5xx, timeouts and "
                                      "resets (exponential backoff with jitter, Retry-After honoured).")]
Timeout = Annotated[float | None, typer.Option("--request-timeout", help="openai backend: deadline in seconds for "
                    "each whole request attempt (default 120).")]
MaxModelLen = Annotated[int | None, typer.Option("--max-model-len", help="vllm and openai backends: context length "
                        "(default: the model's, or what the server reports).")]
TP = Annotated[int | None, typer.Option("--tensor-parallel-size", help="vllm backend: GPUs per model (default 1).")]
GpuMem = Annotated[float | None, typer.Option("--gpu-memory-utilization", help="vllm backend: GPU memory fraction (default 0.9).")]
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
    from rich.markup import (
        escape,  # messages are plain text: "pip install 'selfalign[ray]'" keeps its brackets
    )

    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _engine(backend: BackendName, **options: Any) -> dict[str, Any]:
    """The backend options the user gave (None: the backend's own default). Only the backend's own options
    are accepted: another one is an error naming it (see selfalign.backends.load_backend)."""
    given = {k: v for k, v in options.items() if v is not None}
    if "max_model_len" in given and backend in (BackendName.openai, BackendName.scripted):
        given["max_context"] = given.pop("max_model_len")
    return given


def make_backend(name: BackendName, cache: bool = True, **options: Any) -> Any:
    """The chosen backend, behind the completion cache unless `cache` is False."""
    from selfalign.backends import open_backend

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
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

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


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error "
                                               "on stderr instead of writing it to a log file.")] = False) -> None:
    if debug:
        from selfalign import crashlog

        crashlog.DEBUG = True
