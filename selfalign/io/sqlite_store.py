"""The two SQLite caches (completions, embeddings) open, read and write their files the same way.

Several processes may open one file at the same moment (Ray actors starting together on one node, two
pipelines sharing `~/.cache/selfalign`). WAL mode lets readers run beside the one writer, and a writer waits
up to `BUSY_TIMEOUT` for the lock. Switching a new file to WAL and creating its table are the exception:
SQLite answers "database is locked" at once there, without waiting, when another process does the same,
so the setup is retried until it passes.

A cache never fails a run (`SqliteCache`): a file that is corrupt, read-only, full or locked for too long
is said once on stderr, in one line, and the run goes on without the part of the cache that failed.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

BUSY_TIMEOUT = 60.0
CHUNK = 500  # keys per `IN (...)`: under SQLite's old 999-variable limit
T = TypeVar("T")
_said: set[str] = set()  # warnings already printed by this process


def connect(path: str | Path, schema: str) -> sqlite3.Connection:
    """A connection to `path` (made if missing) in WAL mode with `schema` (a CREATE TABLE IF NOT EXISTS)
    applied. Usable from several threads, one at a time."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT, check_same_thread=False)
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                db.execute(schema)
            return db
        except sqlite3.Error as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(random.uniform(0.01, 0.1))


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A connection that never writes `path` (SQLite's `mode=ro`); it still needs `path`-shm beside it."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False)


def select_in(db: sqlite3.Connection, sql: str, keys: Sequence[str], *params: Any) -> Iterator[tuple]:
    """The rows of `sql` (which ends in `IN ({})`) for every key, asked in chunks; `params` come first."""
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        yield from db.execute(sql.format(",".join("?" * len(chunk))), [*params, *chunk]).fetchall()


def is_corrupt(e: BaseException) -> bool:
    """Whether `e` says the file is not (or no longer) a readable SQLite database."""
    return getattr(e, "sqlite_errorname", "").startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))


def damage(path: str | Path) -> str | None:
    """Why the file at `path` is not a readable SQLite database (garbage, truncated, corrupt), or None if it
    is one, or if it cannot be checked for another reason (missing, unreadable folder). Writes nothing."""
    try:
        db = connect_read_only(path)
        try:
            rows = db.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        return str(e) if is_corrupt(e) else None
    return None if rows == [("ok",)] else str(rows[0][0])


def remove(path: str | Path) -> None:
    """Delete a database file with its -wal and -shm."""
    for p in (Path(path), Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def warning(message: str) -> None:
    """The default `warn` of a cache: one line on stderr, once per process."""
    if message not in _said:
        _said.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


class SqliteCache:
    """A cache in one SQLite file that never fails its caller.

    `_read` and `_write` run a function on the connection, one thread at a time. A `sqlite3.Error` is not
    raised: the cache says once through `warn` what is wrong and how the run goes on, keeps it in `problem`
    (`describe()` adds the fix), and stops using what failed:
    - not a readable database (garbage, truncated, corrupt): neither reads nor writes;
    - read-only (the file, or its folder at open time): reads go on from a `mode=ro` connection, no writes;
    - another error while writing (disk full, locked past `BUSY_TIMEOUT`): reads go on, no writes;
    - another error while reading or opening: neither. A read that is skipped is a miss.
    """

    what: ClassVar[str] = "cache"  # in messages: "the completion cache PATH ..."
    items: ClassVar[str] = "entries"  # what it stores, in messages
    table: ClassVar[str] = ""
    schema: ClassVar[str] = ""  # CREATE TABLE IF NOT EXISTS `table`

    def __init__(self, path: str | Path, warn: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.warn = warn or warning
        self.db: sqlite3.Connection | None = None
        self.readable = self.writable = False
        self.problem: str | None = None
        self.fix: str | None = None
        self._lock = threading.Lock()
        try:
            self.db = connect(self.path, self.schema)
            self.readable = self.writable = True
        except (sqlite3.Error, OSError) as e:
            if getattr(e, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
                self._open_read_only(e)
            else:
                self._lose(e, reads=True)

    def describe(self) -> str | None:
        """What is wrong with the cache and how to fix it, in one line; None if nothing is."""
        return self.problem and (f"{self.problem}. {self.fix}" if self.fix else self.problem)

    def _open_read_only(self, error: BaseException) -> None:
        try:
            db = connect_read_only(self.path)
        except sqlite3.Error as e:
            return self._lose(e, reads=True)
        try:
            db.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchall()
        except sqlite3.Error as e:
            db.close()
            return self._lose(e, reads=True)
        self.db, self.readable = db, True
        self._lose(error, reads=False)

    def _read(self, fn: Callable[[sqlite3.Connection], T], default: T) -> T:
        with self._lock:
            if not self.readable or self.db is None:
                return default
            try:
                return fn(self.db)
            except sqlite3.Error as e:
                self._lose(e, reads=True)
                return default

    def _write(self, fn: Callable[[sqlite3.Connection], object]) -> bool:
        """Whether `fn` ran and was committed."""
        with self._lock:
            if not self.writable or self.db is None:
                return False
            try:
                with self.db:
                    fn(self.db)
                return True
            except sqlite3.Error as e:
                self._lose(e, reads=False)
                return False

    def _lose(self, e: BaseException, reads: bool) -> None:
        """Stop writing (and reading, if `reads` or the file is corrupt) after `e`; say so once."""
        name, where = getattr(e, "sqlite_errorname", ""), f"the {self.what} {self.path}"
        self.fix = None
        if is_corrupt(e):
            reads = True
            self.problem = f"{where} is not a readable SQLite database ({e})"
            self.fix, then = "`selfalign cache clear` removes it", "running without it"
        elif name == "SQLITE_READONLY_DIRECTORY" and reads:
            self.problem = f"{where} cannot be read: its folder is not writable (SQLite needs to add files there)"
            self.fix, then = "set SELFALIGN_CACHE_DIR to a writable folder", "running without it"
        elif name.startswith("SQLITE_READONLY") and not reads:
            self.problem, then = f"{where} is read-only", f"running without storing {self.items}"
        elif reads:
            self.problem, then = f"{where} cannot be used ({e})", "running without it"
        else:
            self.problem, then = f"{where} could not store {self.items} ({e})", f"running without storing {self.items}"
        self.writable = False
        if reads:
            self.readable = False
            if self.db is not None:
                self.db.close()
                self.db = None
        self.warn(f"{self.problem}; {then}" + (f". {self.fix}" if self.fix else ""))
