"""The CLI's shared parts: the typer app, option types, the options every model command shares (added by
`ENGINE`, handed to the command as one `Engine`), the input and output options (`io_options`, as one `IO`),
`run_stages` (stages -> executor -> runner) and `Run`, the runner with a display."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from selfalign.cli.options import Group, Options, field_options, opt, field_values
from selfalign.runner import RunError, Runner, Stopped

# click's errors, as typer raises them (typer 0.2x carries its own copy of click)
_ClickError, _UsageError = (next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
                            for name in ("ClickException", "UsageError"))


class OneLineErrors(TyperGroup):
    """Usage errors (a misspelled option, a bad value) as one line naming the option, like every other error,
    instead of a usage block and a boxed message."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _ClickError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # the help was shown
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None) if isinstance(e, _UsageError) else None
            message = e.format_message().replace("Value error, ", "")  # typer's wording for a bad choice
            say_error(message.rstrip(".") + (f"; see {ctx.command_path} --help" if ctx is not None else ""))
            sys.exit(e.exit_code)
        except typer.Abort:
            console.print("Aborted!")
            sys.exit(1)
        except ValueError as e:  # a value out of its range (steps.py's fields), found where the config is made
            from selfalign.cli.errors import option_error

            if not (message := option_error(e)):
                raise
            say_error(message)
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="selfalign",
    help="Turn a short principle set into SFT data, the SELF-ALIGN way. JSONL in (file or stdin), "
    "JSONL out (stdout or -o); progress and summaries on stderr.\n\n"
    "Example: selfalign generate --num 8 | selfalign principle | selfalign export > sft.jsonl",
    no_args_is_help=True, add_completion=False, rich_markup_mode="rich", pretty_exceptions_enable=False,
)
console = Console(stderr=True)
T = TypeVar("T")


class OnError(str, Enum):
    skip = "skip"
    fail = "fail"


# ---- shared options ------------------------------------------------------------------------------
Input = Annotated[str, typer.Argument(help="JSONL input file; '-' or omitted reads stdin.")]
Output = Annotated[str | None, typer.Option("-o", "--output", help="Write JSONL here instead of stdout.")]
Dropped = Annotated[str | None, typer.Option("--dropped", help="Write dropped records, each with its reason, here.")]
ReportPath = Annotated[str | None, typer.Option("--report", help="Write the run summary as JSON here.")]
OnErr = Annotated[OnError, typer.Option("--on-error", help="A bad input line: set it aside and go on, or stop.")]
Quarantine = Annotated[str | None, typer.Option("--quarantine", help="Write bad input lines here (file, line, "
                                                "problem, raw text); default: into --dropped.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise typer.BadParameter("expected I/N, e.g. 0/4", param_hint="'--shard'") from None
    if not (count >= 1 and 0 <= index < count):
        raise typer.BadParameter(f"{value}: need 0 <= I < N", param_hint="'--shard'")
    return index, count


Shard = Annotated[str | None, typer.Option("--shard", help="Process only shard I of N (e.g. 0/4): a split by a "
                                           "hash of the record id, so N processes cover the input exactly once.")]


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


# ---- options shared by several commands (selfalign.cli.options: Group) ----------------------------------------
@dataclass
class IO:
    """The input and output options of a stage command."""

    output: str | None = None
    dropped: str | None = None
    report: str | None = None
    quiet: bool = False
    input: str | None = None
    on_error: OnError = OnError.skip
    quarantine: str | None = None
    shard: str | None = None

    def run(self, stage: str) -> Run:
        return Run(stage, self.output, self.dropped, self.report, self.on_error, self.quiet, self.quarantine,
                   self.shard)


def io_options(records: bool = True, shard: bool = True) -> Group:
    """-o, --dropped, --report, --quiet; with `records` (a command that reads records) the input and
    --on-error, --quarantine, and --shard where `shard`."""
    options: Options = {"output": (Output, None), "dropped": (Dropped, None), "report": (ReportPath, None),
                        "quiet": (Quiet, False)}
    if records:
        options = {"input": (Input, "-"), **options, "on_error": (OnErr, OnError.skip),
                   "quarantine": (Quarantine, None)}
    if records and shard:
        options["shard"] = (Shard, None)
    return Group("io", lambda: options, IO)


def executor_options(help: str) -> Options:
    """--executor (its help: what runs where) and a --ray-* option per field of RayOptions."""
    from dataclasses import fields
    from typing import get_type_hints

    from selfalign.executors.ray import RayOptions

    kinds = get_type_hints(RayOptions)
    return {"executor": (opt(ExecutorName, "--executor", help=help), ExecutorName.local),
            **{f"ray_{f.name}": (opt(kinds[f.name], "--ray-" + f.name.replace("_", "-"), help=f.metadata["help"]),
                                 f.default) for f in fields(RayOptions)}}


MODEL_EXECUTOR = ("local: this process; ray: a pool of Ray actors, each holding one backend (needs pip install "
                  "'selfalign\\[ray]').")


def make_executor(executor: ExecutorName, ray_address: str | None, ray_actors: int, ray_cpus_per_actor: float,
                  ray_gpus_per_actor: float) -> Any:
    """The executor `--executor` names (not started yet); a missing Ray extra fails here."""
    from selfalign.executors import make_executor as make

    given = {"address": ray_address, "actors": ray_actors, "cpus_per_actor": ray_cpus_per_actor,
             "gpus_per_actor": ray_gpus_per_actor}
    if executor is ExecutorName.local:
        defaults = {k.removeprefix("ray_"): d for k, (_, d) in executor_options("").items()}
        given = {k: v for k, v in given.items() if v != defaults[k]}  # the rest is refused below
    try:
        return make(executor.value, **given)
    except (RuntimeError, ValueError) as e:
        fail(str(e))


@dataclass
class Engine:
    """What the model commands share: the backend (a BackendConfig) and where the stage runs."""

    backend: Any
    executor: Any


def _engine(executor: ExecutorName, ray_address: str | None, ray_actors: int, ray_cpus_per_actor: float,
            ray_gpus_per_actor: float, **backend: Any) -> Engine:
    """The model commands' shared options as an Engine; `backend`: BackendConfig's fields."""
    from selfalign.steps import BackendConfig

    ex = make_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    return Engine(BackendConfig(**field_values(backend)), ex)


def _backend_options() -> Options:
    from selfalign.steps import BackendConfig

    return field_options(BackendConfig)


# the backend's options (BackendConfig's fields) and the executor's, handed to a model command as `engine`
ENGINE = Group("engine", lambda: {**_backend_options(), **executor_options(MODEL_EXECUTOR)}, _engine)


def run_stages(run: Run, executor: Any, stages: list[Any], backend: Any = None, input: str | None = None) -> None:
    """The end of every stage command: the stages' files read (a bad one fails before any model loads), the
    input opened, what the executor starts started (under one spinner), and the results written."""
    import itertools

    from selfalign.io.jsonl import InputError

    try:
        prepared = [st.prepare(run) for st in stages]
    except InputError as e:
        fail(str(e), 1)
    except (RuntimeError, ValueError, OSError) as e:
        fail(str(e))
    records = run.records(input, stages[0].input_model()) if input is not None else iter(())
    with executor:
        with console.status(executor.starting(stages[0], backend)) if console.is_terminal else ExitStack():
            try:  # a backend or Ray that cannot start, an option the backend does not take: one line
                results = [executor.run(st, backend, records, run, p) for st, p in zip(stages, prepared, strict=True)]
            except (RuntimeError, ValueError, OSError) as e:
                fail(str(e))
        run.execute(itertools.chain.from_iterable(results))


def say_error(message: str) -> None:
    from rich.markup import escape  # messages are plain text: "pip install 'selfalign[ray]'" keeps its brackets

    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    say_error(message)
    raise typer.Exit(code)


class Run(Runner):
    """A Runner with the CLI's face: rich progress and summary tables on stderr, one-line errors."""

    def __init__(self, stage: str, output: str | None, dropped: str | None, report_path: str | None,
                 on_error: OnError = OnError.skip, quiet: bool = False, quarantine: str | None = None,
                 shard: str | None = None):
        super().__init__(stage, output, dropped, report_path, on_error.value, quarantine, _parse_shard(shard),
                         say=(lambda _: None) if quiet else self._say)
        self.quiet = quiet
        self.progress: Any = None  # the rich bars, on a terminal
        self.plain: Any = None  # the plain lines, anywhere else
        self.task: Any = None
        self._phases: dict[str, Any] = {}
        self._shown = 0.0
        self._lines: int | None = -1  # the input's lines, counted when a phase first needs an end (-1: not yet)

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
        """Rich bars on a terminal; in a log, a plain line every few seconds (selfalign.report.progress)."""
        if self.quiet:
            return
        if not console.is_terminal:
            from selfalign.report.progress import StageProgress

            self.plain = StageProgress(self.report, self._say, self._total, counts_kept=self.context.total is not None)
            self.plain.start()
            return
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
        total = self.context.total
        self.task = self.progress.add_task(self.report.stage, total=total,
                                           stats=f"0 kept{f' of {total}' if total else ''}")

    def _total(self) -> int | None:
        return self.context.total if self.context.total is not None else self._input_lines()

    def tick(self) -> None:
        now = time.monotonic()
        if self.progress is None or now - self._shown < 0.1:
            return
        self._shown = now
        top = ", ".join(f"{r} {n}" for r, n in self.report.dropped.most_common(3))
        asked = self.report.extra.get("requests")
        top = (f"{asked} requests; " if asked else "") + top
        total = self.context.total
        of = f" of {total}" if total else ""
        stats = (f"{self.report.kept} kept{of}, {sum(self.report.dropped.values())} dropped"
                 + (f"[dim] ({top})[/]" if top else ""))
        self.progress.update(self.task, stats=stats, completed=self.report.kept if total else None)

    def phase(self, name: str, done: int, total: int | None) -> None:
        """A step inside the stage with its own bar (dedup: embedding, then search)."""
        if total is None:
            total = self._input_lines()
        if self.plain is not None:
            self.plain.phase(name, done, total)
        if self.progress is None:
            return
        if name not in self._phases:
            self._phases[name] = self.progress.add_task(f"  {name}", total=total, stats="")
        unit = f"{done:,}" + (f" of {total:,}" if total else "") + " records"
        self.progress.update(self._phases[name], completed=done, total=total, stats=unit)

    def _input_lines(self) -> int | None:
        """A cheap count of the input's lines (regular files only), so a bar has an end."""
        from selfalign.report.progress import count_lines

        if self._lines == -1:
            self._lines = count_lines(self._inputs)
        return self._lines

    def finish(self) -> None:
        if self.plain is not None:
            self.plain.stop()
        super().finish()
        if not self.quiet:
            self.report.print(console, self.context.principle_names)


def escape_text(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# ---- commands ------------------------------------------------------------------------------------


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error "
                                               "on stderr instead of writing it to a log file.")] = False) -> None:
    if debug:
        from selfalign.io import crashlog

        crashlog.DEBUG = True
