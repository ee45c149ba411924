"""Running one stage over files, the same way for the CLI and the Python API.

A `Runner` refuses an output that is one of its inputs (or another output) before touching any file, reads
and validates the input (bad lines and repeated ids set aside with their line), applies `shard` and resume
(drops that may come out differently, backend errors and bad lines, are tried again), writes kept records to
the output and dropped ones to `dropped`, counts everything in a `Report`, and ends in one of three ways:
finished (side files renamed to their final names, see `selfalign.io.storage`), stopped (Ctrl-C / SIGTERM:
`Stopped`) or failed (`RunError` with one true line; a server refusing every request is one too).
It prints nothing itself: messages go to `say`, and `tick()` / `start()` are hooks for a progress display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class RunError(Exception):
    """The run cannot start or go on: `str(e)` is the one line to show, `code` the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Stopped(RunError):
    """Stopped by Ctrl-C (130) or SIGTERM (143) after writing what was finished."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm, Kubernetes, `timeout`): handled like Ctrl-C, exit 143."""


TERMINATED = False  # set once SIGTERM came: a stop outside a stage's loop exits 143 too


def on_sigterm(signum: int, frame: Any) -> None:
    global TERMINATED
    TERMINATED = True
    raise Terminated()


@dataclass
class RunContext:
    """What a run's stages tell its runner before records flow (`Stage.prepare` fills `runner.context`):
    the display reads it, the writer follows it."""

    total: int | None = None  # records the stages will keep (generate --num): the bar fills as they are kept
    principle_names: dict[str, str] | None = None  # principle id -> short name, for the summary's citations
    flush_each: bool = True  # flush every record to the output at once (export: every 50 ms instead)


class Runner:
    """One stage's plumbing: files, resume, quarantine, drops, counts. See the module docstring."""

    def __init__(self, stage: str, output: str | None = None, dropped: str | None = None,
                 report_path: str | None = None, on_error: str = "skip", quarantine: str | None = None,
                 shard: tuple[int, int] | None = None, say: Callable[[str], None] | None = None):
        from selfalign.report.counts import Report

        self.report = Report(stage)
        self.output, self.dropped_path, self.report_path = output, dropped, report_path
        self.on_error = getattr(on_error, "value", on_error)
        self.quarantine, self.shard = quarantine, shard
        self.say = say or (lambda _: None)
        self.stack = ExitStack()
        self.context = RunContext()  # what the stages tell it before records flow
        self.done: set[str] = set()
        self.resumable = False
        self._resuming = False
        self._side: dict[str, Any] = {}
        self._targets: dict[str, Any] = {}
        self._first: dict[str, str] = {}
        self._inputs: list[str] = []

    # ---- hooks for a display -------------------------------------------------------------------------
    def start(self) -> None:
        """The outputs are open and records are about to flow."""

    def tick(self) -> None:
        """A record was written (kept or dropped)."""

    def phase(self, name: str, done: int, total: int | None) -> None:
        """A step inside the stage with its own count (dedup: embedding, then search); `total` None: unknown."""

    def skipped(self, detail: str) -> None:
        """A bad input line or a repeated id was set aside."""
        self.say(f"skipped {detail}")

    # ---- setup ---------------------------------------------------------------------------------------
    def resume(self) -> None:
        """With -o: skip records already in the output (or the dropped / quarantine file), append the rest;
        a repeated id in the input is set aside as `duplicate_id`, interrupted or not."""
        self.resumable = True

    def _open_targets(self) -> None:
        """Lock every output file and get its side file ready; a resumable run learns what is done."""
        from selfalign.io.storage import Busy, Target, is_stream

        self._resuming = resuming = self.resumable and not is_stream(self.output)  # only a file given with -o
        for path in dict.fromkeys(p for p in (self.output, self.dropped_path, self.quarantine) if p and p != "-"):
            target = Target(path)
            try:
                target.lock()
            except Busy as e:
                raise RunError(str(e)) from None
            except OSError as e:
                raise RunError(f"cannot write {path}: {e.strerror}") from None
            self.stack.callback(target.release)
            self._targets[path] = target
        for path, target in self._targets.items():  # every lock is held before any file is touched
            try:
                self.done |= target.prepare(resuming and not target.stream, lambda m: self.say(f"set aside {m}"))
            except OSError as e:
                raise RunError(f"cannot write {path}: {e.strerror}") from None
        if self.done:
            names = " or ".join(t.partial for t in self._targets.values() if not t.stream)
            self.say(f"resuming: {len(self.done)} records already in {names}")

    def _where(self, path: str | None) -> str | None:
        """The file records for `path` are written to now (its side file, or the stream)."""
        if path and path in self._targets:
            return self._targets[path].write_path
        return path

    # ---- input ---------------------------------------------------------------------------------------
    def records(self, path: str | list[str], model: type[T]) -> Iterator[T]:
        """The input's records, after checking that every file can be read (before any output is made)."""
        paths = [path] if isinstance(path, str) else list(path)
        self._inputs = paths
        self._check_clashes(paths)
        for p in paths:
            if p != "-":
                try:
                    with open(p, "rb"):
                        pass
                except OSError as e:
                    raise RunError(f"{p}: cannot open: {e.strerror}") from None
        return (rec for p in paths for rec in self._records(p, model))

    def _check_clashes(self, inputs: list[str]) -> None:
        """Refuse, before any file is touched, an output that is an input or another output: writing it would
        rename or overwrite the input before it is read. The same file counts however it is spelled (`./x`,
        a symlink, a hard link, stdin redirected from it)."""
        from selfalign.io.storage import is_stream, same_file

        outputs = [(what, p) for what, p in (("the output", self.output), ("the dropped file", self.dropped_path),
                                             ("the quarantine file", self.quarantine),
                                             ("the report", self.report_path)) if p and not is_stream(p)]
        for what, out in outputs:
            for p in inputs:
                if same_file(p, out):
                    raise RunError(f"{what} {out} is the input {'<stdin>' if p == '-' else p}: writing it would "
                                   "destroy the input before it is read; choose another file")
        for i, (what, out) in enumerate(outputs):
            for other, out2 in outputs[i + 1:]:
                if same_file(out, out2) and not (out == out2 and {what, other} <= {"the dropped file",
                                                                                  "the quarantine file"}):
                    raise RunError(f"{what} and {other} are the same file ({out}): choose two files")

    def _records(self, path: str, model: type[T]) -> Iterator[T]:
        from selfalign.io.jsonl import InputError, read_records
        from selfalign.records import in_shard

        first = self._first  # resumable stages: where each id was first seen, over every input file
        name = "<stdin>" if path == "-" else path
        try:
            for lineno, rec in read_records(path, model):
                if isinstance(rec, InputError):
                    if self.on_error == "fail":
                        raise RunError(str(rec))
                    raw = rec.raw.decode("utf-8", "replace") if isinstance(rec.raw, bytes) else rec.raw
                    self._set_aside(rec.path, rec.lineno, "invalid_input", str(rec),
                                    raw=raw if isinstance(raw, (dict, str)) else None)
                    continue
                rid = str(getattr(rec, "id", ""))
                if self.shard and not in_shard(rid, self.shard):
                    continue
                if self.resumable:
                    if rid in first:
                        self._set_aside(name, lineno, "duplicate_id", f"{name}:{lineno}: id {rid!r} is already "
                                        f"used at {first[rid]}", record_id=rid,
                                        raw=rec.model_dump(mode="json", exclude_none=True))
                        continue
                    first[rid] = f"line {lineno}" if len(self._inputs) < 2 else f"{name}:{lineno}"
                if self.done and rid in self.done:
                    self._count_done()
                    continue
                yield rec
        except InputError as e:
            raise RunError(str(e)) from None

    def _count_done(self) -> None:
        self.report.extra["already_done"] = self.report.extra.get("already_done", 0) + 1

    def _set_aside(self, file: str, line: int | None, reason: str, detail: str, raw: Any = None,
                   record_id: str | None = None) -> None:
        """A bad input line or a repeated id: one message, one entry in --quarantine or --dropped, not written
        again when a resumed run meets the same line."""
        from selfalign.io.storage import line_key

        if line is not None and line_key(file, line) in self.done:
            self._count_done()
            return
        self.skipped(detail)
        self.report.read += 1
        self.report.drop(reason)
        bad = {"id": record_id, "stage": self.report.stage, "drop_reason": reason, "detail": detail,
               "file": file, "line": line, "raw": raw}
        bad = {k: v for k, v in bad.items() if v is not None}
        if self.quarantine:
            self._side_output(self.quarantine).write(bad)
        else:
            self._write_dropped(bad)

    # ---- output --------------------------------------------------------------------------------------
    def _side_output(self, path: str) -> Any:
        """The writer for a side file (dropped, quarantine), opened on first use."""
        if path not in self._side:
            from selfalign.io.jsonl import Output

            target = self._targets.get(path)
            append = bool(target and self._resuming and not target.stream)
            side = bool(target and not target.stream)
            self._side[path] = self.stack.enter_context(Output(self._where(path), append=append, side=side))
        return self._side[path]

    def _write_dropped(self, obj: Any) -> None:
        if self.dropped_path:
            self._side_output(self.dropped_path).write(obj)

    def execute(self, results: Iterable[Any]) -> Any:
        """Write `results` (kept records and Dropped ones); returns the Report, or raises Stopped/RunError
        once what is finished is written and the report saved."""
        from selfalign.io import crashlog
        from selfalign.backends.base import BackendFailed
        from selfalign.io.jsonl import Output, OutputError, Unwritable
        from selfalign.records import Dropped

        stopped: int | None = None
        crashed: BaseException | None = None
        with self.stack:
            try:
                try:
                    self._open_targets()
                    target = self._targets.get(self.output or "")
                    append = bool(target and self._resuming and not target.stream)
                    out = self.stack.enter_context(Output(self._where(self.output), append=append,
                                                          flush_each=self.context.flush_each,
                                                          side=bool(target and not target.stream)))
                    self._side[""] = out
                    self.start()
                    for item in results:
                        try:
                            if isinstance(item, Dropped):
                                self._write_dropped(item)
                            else:
                                out.write(item)
                        except Unwritable as e:  # set aside with its id, without the text that cannot be written
                            rid = item.get("id") if isinstance(item, dict) else getattr(item, "id", None)
                            item = Dropped(id=rid, stage=self.report.stage, drop_reason="unwritable",
                                           detail=f"cannot be written as UTF-8 JSON: {e}")
                            self._write_dropped(item)
                        self.report.count(item)
                        self.tick()
                finally:
                    self._close_outputs()
            except KeyboardInterrupt as e:
                stopped = 143 if isinstance(e, Terminated) else 130
            except (RunError, SystemExit, BrokenPipeError):
                raise
            except Exception as e:  # noqa: BLE001 - a backend that died mid-run: what is written stays
                if type(e).__name__ == "Exit":  # the CLI's own exit (typer), raised from inside a stage
                    raise
                crashed = e
            if stopped is None and crashed is None:
                for t in self._targets.values():
                    t.commit()
        self.finish()
        if stopped:
            raise Stopped(f"{'terminated' if stopped == 143 else 'interrupted'}: {self._kept_note()}", stopped)
        if isinstance(crashed, (OutputError, BackendFailed)):  # a full disk; a server that refuses every request
            raise RunError(f"{crashed}. {self._kept_note()}")
        if crashed is not None:
            where = crashlog.write(crashed)
            raise RunError(f"the run stopped: {crashlog.one_line(crashed)} (traceback: {where}). "
                           f"{self._kept_note()}")
        return self.report

    def _close_outputs(self) -> None:
        """Flush and close every writer now, so a failed flush is reported as the run's error."""
        from selfalign.io.jsonl import OutputError

        error = None
        for w in [*self._side.values()]:
            try:
                w.close()
            except OutputError as e:
                error = error or e
        if error:
            raise error

    def _kept_note(self) -> str:
        """What an unfinished run left, and what to do next: only what is true."""
        target = self._targets.get(self.output or "")
        if target is None or target.stream:
            return "Records finished before it were written." if self.output else ""
        if self._resuming:
            return f"Finished records are in {target.partial}; run the same command again to resume."
        return f"The records so far are in {target.partial}; run the same command again to redo it."

    def finish(self) -> None:
        self.report.write_json(self.report_path)
