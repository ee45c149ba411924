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
- On resume, a drop that may come out differently next time (`RETRIED`: a backend error, a bad input line
  that may since have been completed or fixed) is not done: its entry is taken out of the side file and its
  record or line is tried again, so each id is in the output or the dropped file once.
- The side files a run makes next to an output (`.partial`, `.lock`, `.corrupt.jsonl`, `.tmp`) are opened
  without following a symlink: a link planted there is refused (`UnsafePath`), never written through. The
  output's own path may be a link (the user named it): its target is what gets the side files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

PARTIAL = ".partial"
LINE_REASONS = frozenset({"invalid_input", "duplicate_id"})  # drops known by their input line, not their id
# drops that are tried again on resume: the server may be back, the line may have been completed or fixed
RETRIED = frozenset({"backend_error", "invalid_input"})


class UnsafePath(OSError):
    """A side file's name is taken by a symlink (or something that is not a regular file): not followed."""


def open_side(path: str | Path, mode: str = "a") -> IO:
    """Open a side file this run makes (`.partial`, `.lock`, `.corrupt.jsonl`, `.tmp`) without following a
    symlink at its name: UnsafePath names it. `mode`: "a", "w", "a+b", "wb" or "rb"."""
    flags = {"a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "rb+": os.O_RDWR, "rb": os.O_RDONLY}[mode]
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise UnsafePath(errno.ELOOP, f"{path} is a symbolic link; selfalign does not write through a link "
                             "it did not make: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(errno.EINVAL, f"{path} is not a regular file; remove it")
    if mode.endswith("b") or mode == "rb+":
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8")


class Busy(Exception):
    """Another run holds the lock on an output file."""


def is_stream(path: str | None) -> bool:
    """Stdout, a path under /dev or /proc (`/dev/stdout` may lead to a file: it is still the stream), or an
    existing path that is not a regular file (a device, a pipe): write it, never read it."""
    if path in (None, "-"):
        return True
    assert path is not None
    return path.startswith(("/dev/", "/proc/")) or (os.path.exists(path) and not os.path.isfile(path))


def same_file(a: str, b: str) -> bool:
    """Whether two paths (`-`: stdin) name one file: the same real path, or the same inode (a hard link)."""
    def ident(p: str) -> tuple[str, tuple[int, int] | None] | None:
        try:
            if p == "-":
                st = os.fstat(sys.stdin.fileno())
                return ("", (st.st_dev, st.st_ino)) if stat.S_ISREG(st.st_mode) else None
            st = os.stat(p)
            return os.path.realpath(p), (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None
        except (OSError, ValueError):
            return (os.path.realpath(p), None) if p != "-" else None

    x, y = ident(a), ident(b)
    if x is None or y is None:
        return False
    return bool((x[0] and x[0] == y[0]) or (x[1] is not None and x[1] == y[1]))


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


def scan(path: str | Path, warn: Callable[[str], None] = lambda _: None, name: str | None = None,
         retry: frozenset[str] = frozenset()) -> set[str]:
    """The keys of the records in `path`, read line by line.

    A torn last line is cut off (its record is made again, from the cache). A line in the middle that is not
    a JSON object is moved to `NAME.corrupt.jsonl` (with its line number) and named through `warn`; `name` is
    the file's final name, when `path` is its side file. A drop whose reason is in `retry` is taken out of the
    file and its key left out, so that it is tried again."""
    path = Path(path)
    if not path.is_file():
        return set()
    with open_side(path, "rb+") as fp:
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
    again: set[int] = set()
    with open_side(path, "rb") as fp:
        for n, line in enumerate(fp, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except Exception:  # noqa: BLE001 - any line that does not parse (deep nesting too) is corrupt
                obj = None
            if not isinstance(obj, dict):
                bad.append((n, line))
            elif retry and obj.get("drop_reason") in retry:
                again.add(n)
            elif key := record_key(obj):
                keys.add(key)
    if bad:
        _set_aside(path, Path(name or path), bad, warn)
    if bad or again:
        _rewrite_without(path, again | {n for n, _ in bad})
    return keys


def _set_aside(path: Path, name: Path, bad: list[tuple[int, bytes]], warn: Callable[[str], None]) -> None:
    """Copy corrupt lines of `path` into NAME.corrupt.jsonl, each with its line number."""
    aside = name.with_name(name.name + ".corrupt.jsonl")
    with open_side(aside, "a") as out:
        for n, raw in bad:
            out.write(json.dumps({"file": str(name), "line": n, "problem": "not a JSON object",
                                  "raw": raw.decode("utf-8", "replace").rstrip("\n")}, ensure_ascii=False) + "\n")
            warn(f"{name}:{n}: not a JSON record; set aside in {aside}, its record will be made again")


def _rewrite_without(path: Path, lines: set[int]) -> None:
    """`path` without the given lines (numbered from 1); the rest stays as it was."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover (or a planted link): removed, never followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with open_side(path, "rb") as src, os.fdopen(fd, "wb") as dst:
        for n, line in enumerate(src, 1):
            if n not in lines:
                dst.write(line)
    os.replace(tmp, path)


def hold(fp: IO[bytes], what: object) -> None:
    """Take the exclusive lock on the open lock file `fp`, or close it and raise Busy naming the run that holds
    it (the line it signed) and `what` it is writing."""
    try:
        fcntl.flock(fp, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fp.seek(0)
        holder = fp.read().decode("utf-8", "replace").strip() or "another process"
        fp.close()
        raise Busy(f"{what} is being written by another selfalign run ({holder}); wait for it to finish or stop "
                   "it") from None


def sign(fp: IO[bytes]) -> None:
    """Write who holds the lock into the lock file (what `hold` tells a second run)."""
    fp.seek(0)
    fp.truncate()
    fp.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode())
    fp.flush()


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
        """Take the output's lock, or raise Busy naming the run that holds it (`hold`)."""
        if self.stream:
            return
        lock_path = str(self.real) + ".lock"
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        while True:
            fp = open_side(lock_path, "a+b")  # held until release(); a link planted there is refused
            hold(fp, self.path)
            # the file may have been removed by the run that held it just before we got the lock
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fp.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fp.close()
        sign(fp)
        self._lock = fp

    def prepare(self, resume: bool, warn: Callable[[str], None]) -> set[str]:
        """Get the side file ready: resumed (a finished file moved back under the side name first) or
        started afresh. Returns the keys already written."""
        if self.stream:
            return set()
        assert self.partial is not None and self.real is not None
        if not resume:
            open_side(self.partial, "w").close()  # afresh: even with nothing written, the old file goes
            return set()
        if not os.path.lexists(self.partial) and os.path.isfile(self.real):
            os.replace(self.real, self.partial)
        open_side(self.partial, "a").close()
        return scan(self.partial, warn, self.real, retry=RETRIED)

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
