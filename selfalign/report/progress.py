"""What a running stage shows on stderr: rich bars on a terminal, a plain line every few seconds anywhere else.

A log (stderr redirected to a file, CI, `make demo > log 2>&1`) gets, while a stage runs, one line about every
`SELFALIGN_PROGRESS_SECONDS` (default 10) seconds, even while a long batch is still inside the model:

    principle: 12/32 records (5 kept, 7 dropped), 0.41 records/s, about 49s left

`done` counts the records the stage has finished (kept or dropped); `total` is what it has to do (the input's
lines less those a resumed run already has; `generate --num`'s target counts kept prompts instead) and the
estimate is left out while it is unknown. The lines come from a daemon thread that only reads the stage's
counters, so a stage never waits for its display.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any


def interval() -> float:
    """Seconds between plain progress lines (SELFALIGN_PROGRESS_SECONDS, default 10)."""
    try:
        value = float(os.environ.get("SELFALIGN_PROGRESS_SECONDS", "10"))
    except ValueError:
        return 10.0
    return value if value > 0 else 10.0


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(stage: str, done: int, total: int | None, kept: int, dropped: int, elapsed: float,
                  counts_kept: bool = False, phase: str | None = None) -> str:
    """One plain progress line (see the module docstring). `counts_kept`: `done` and `total` count kept records
    (a generate stage's target)."""
    unit = "kept" if counts_kept else "records"
    head = f"{stage}{f' ({phase})' if phase else ''}: {done:,}" + (f"/{total:,}" if total else "") + f" {unit}"
    if not counts_kept and not phase:
        head += f" ({kept:,} kept, {dropped:,} dropped)"
    if done == 0:
        return f"{head}, {duration(elapsed)} in, first batch still running"
    rate = done / elapsed if elapsed > 0 else 0.0
    line = f"{head}, {rate:.2f} {unit if counts_kept else 'records'}/s"
    if total and rate > 0 and done < total:
        line += f", about {duration((total - done) / rate)} left"
    return line


class Ticker:
    """Prints `line()` through `say` every `every` seconds from a daemon thread, until `stop()`."""

    def __init__(self, line: Callable[[], str], say: Callable[[str], None], every: float | None = None):
        self.line, self.say, self.every = line, say, every or interval()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="selfalign-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.say(self.line())
            except Exception:  # noqa: BLE001 - a display must never stop a run
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
        self._thread = None


class StageProgress:
    """The plain-line display of one stage over a Runner's report: `start()`, `phase()`, `stop()`.

    `total()` is asked each time a line is made (the input's lines are counted once, lazily)."""

    def __init__(self, report: Any, say: Callable[[str], None], total: Callable[[], int | None],
                 counts_kept: bool = False, every: float | None = None, name: str | None = None):
        self.report, self.total, self.counts_kept, self.say = report, total, counts_kept, say
        self.name = name or report.stage
        self._phase: tuple[str, int, int | None] | None = None
        self._t0 = time.monotonic()
        self.ticker = Ticker(self.line, say, every)

    def start(self) -> None:
        """Say that the stage started (and how much it has to do), then a line every `every` seconds."""
        self._t0 = time.monotonic()
        total = self.total()
        todo = f", {total:,} {'to keep' if self.counts_kept else 'records to read'}" if total else ""
        self.say(f"{self.name}: started{todo}")
        self.ticker.start()

    def phase(self, name: str, done: int, total: int | None) -> None:
        self._phase = (name, done, total)

    def line(self) -> str:
        rep = self.report
        elapsed = time.monotonic() - self._t0
        dropped = sum(rep.dropped.values())
        if self._phase is not None and rep.read == 0:  # dedup: embedding, then search, before any record is out
            name, done, total = self._phase
            return progress_line(self.name, done, total, 0, 0, elapsed, phase=name)
        if self.counts_kept:
            return progress_line(self.name, rep.kept, self.total(), rep.kept, dropped, elapsed, counts_kept=True)
        total = self.total()
        if total is not None:
            total = max(total - int(rep.extra.get("already_done", 0)), 0)
        return progress_line(self.name, rep.read, total, rep.kept, dropped, elapsed)

    def stop(self) -> None:
        self.ticker.stop()


def count_lines(paths: list[str]) -> int | None:
    """Lines in `paths` (regular files only; None when one is stdin or not a file): a cheap end for a bar."""
    from pathlib import Path

    if not paths or any(p == "-" or not Path(p).is_file() for p in paths):
        return None
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            n += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return n
