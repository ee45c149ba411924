"""Where a run's files go: a file under its final name is complete, one run writes it at a time, and an
interrupted run resumes from what it wrote.

- A regular output file is written as `NAME.partial` and renamed to `NAME` only when the stage finishes,
  so `make` (or a person) never takes an interrupted stage's output for a finished one. A resumable stage
  started again goes on from `NAME.partial`; started after it finished, it moves `NAME` back to
  `NAME.partial` first, skips what is there and renames it again at the end.
- Each output takes a lock (`NAME.lock`, `flock`); a second run on the same file is told who holds it.
- Anything that is not a regular file (`-`, `/dev/stdout`, a pipe, `/dev/full`) is a stream: written
  straight through, never read back, locked or renamed.
- What a file already holds is read line by line, keeping only the keys (memory grows with the number of
  records, not their size). A torn last line (a kill mid-write) is cut off; a corrupt line in the middle is
  set aside in `NAME.corrupt.jsonl` with its line number, and its record is made again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

PARTIAL = ".partial"
LINE_REASONS = frozenset({"invalid_input", "duplicate_id"})  # drops known by their input line, not their id


class Busy(Exception):
    """Another run holds the lock on an output file."""


def is_stream(path: str | None) -> bool:
    """Stdout, a path under /dev or /proc (`/dev/stdout` may lead to a file: it is still the stream), or an
    existing path that is not a regular file (a device, a pipe): write it, never read it."""
    if path in (None, "-"):
        return True
    assert path is not None
    return path.startswith(("/dev/", "/proc/")) or (os.path.exists(path) and not os.path.isfile(path))


def line_key(file: str, line: int) -> str:
    """The key of a drop that is known by where it was read (a bad line, a repeated id)."""
    return f"line:{file}:{line}"


def record_key(obj: object) -> str | None:
    """What marks a written line as done: its id, or for a line-level drop, its input file and line."""
    if not isinstance(obj, dict):
        return None
    if obj.get("drop_reason") in LINE_REASONS and obj.get("line"):
        return line_key(str(obj.get("file")), int(obj["line"]))
    return str(obj["id"]) if obj.get("id") else None


def scan(path: str | Path, warn: Callable[[str], None] = lambda _: None, name: str | None = None) -> set[str]:
    """The keys of the records in `path`, read line by line.

    A torn last line is cut off (its record is made again, from the cache). A line in the middle that is not
    a JSON object is moved to `NAME.corrupt.jsonl` (with its line number) and named through `warn`; `name` is
    the file's final name, when `path` is its side file."""
    path = Path(path)
    if not path.is_file():
        return set()
    with open(path, "rb+") as fp:
        size = fp.seek(0, os.SEEK_END)
        if size:
            fp.seek(-1, os.SEEK_END)
            if fp.read(1) != b"\n":
                fp.seek(0)
                cut = last = 0
                for line in fp:  # find the start of the torn line without holding the file
                    last = cut
                    cut += len(line)
                fp.truncate(last)
    keys: set[str] = set()
    bad: list[tuple[int, bytes]] = []
    with open(path, "rb") as fp:
        for n, line in enumerate(fp, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                bad.append((n, line))
            elif key := record_key(obj):
                keys.add(key)
    if bad:
        _set_aside(path, Path(name or path), bad, warn)
    return keys


def _set_aside(path: Path, name: Path, bad: list[tuple[int, bytes]], warn: Callable[[str], None]) -> None:
    """Move corrupt lines out of `path` into NAME.corrupt.jsonl; the rest of the file stays as it was."""
    aside = name.with_name(name.name + ".corrupt.jsonl")
    lines = {n for n, _ in bad}
    with open(aside, "a", encoding="utf-8") as out:
        for n, raw in bad:
            out.write(json.dumps({"file": str(name), "line": n, "problem": "not a JSON object",
                                  "raw": raw.decode("utf-8", "replace").rstrip("\n")}, ensure_ascii=False) + "\n")
            warn(f"{name}:{n}: not a JSON record; set aside in {aside}, its record will be made again")
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for n, line in enumerate(src, 1):
            if n not in lines:
                dst.write(line)
    os.replace(tmp, path)


class Target:
    """One output file of a run: its lock, its side file, and what it already holds."""

    def __init__(self, path: str | None):
        self.path = path
        self.stream = is_stream(path)
        # a symlink stays a link: its target is what gets the side file, the lock and the rename
        self.real = None if self.stream else os.path.realpath(str(path))
        self.partial = None if self.real is None else self.real + PARTIAL
        self._lock: IO[bytes] | None = None

    @property
    def write_path(self) -> str | None:
        """Where records go now: the side file, or the stream itself."""
        return self.path if self.stream else self.partial

    def lock(self) -> None:
        """Take the output's lock, or raise Busy naming the run that holds it."""
        if self.stream:
            return
        lock_path = str(self.real) + ".lock"
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        while True:
            fp = open(lock_path, "a+b")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(fp, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fp.seek(0)
                holder = fp.read().decode("utf-8", "replace").strip() or "another process"
                fp.close()
                raise Busy(f"{self.path} is being written by another selfalign run ({holder}); wait for it to "
                           "finish or stop it") from None
            # the file may have been removed by the run that held it just before we got the lock
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fp.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fp.close()
        fp.seek(0)
        fp.truncate()
        fp.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode())
        fp.flush()
        self._lock = fp

    def prepare(self, resume: bool, warn: Callable[[str], None]) -> set[str]:
        """Get the side file ready: resumed (a finished file moved back under the side name first) or
        started afresh. Returns the keys already written."""
        if self.stream:
            return set()
        assert self.partial is not None and self.real is not None
        if not resume:
            open(self.partial, "w").close()  # noqa: SIM115 - afresh: even with nothing written, the old file goes
            return set()
        if not os.path.exists(self.partial) and os.path.isfile(self.real):
            os.replace(self.real, self.partial)
        open(self.partial, "a").close()  # noqa: SIM115
        return scan(self.partial, warn, self.real)

    def commit(self) -> None:
        """The stage finished: the side file takes the final name (an empty file if nothing was written)."""
        if self.stream or self.partial is None or self.real is None:
            return
        if os.path.exists(self.partial):
            os.replace(self.partial, self.real)

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.remove(str(self.real) + ".lock")
            self._lock.close()
            self._lock = None
