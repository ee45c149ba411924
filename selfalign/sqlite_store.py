"""The two SQLite caches (completions, embeddings) open and read their files the same way.

Several processes may open one file at the same moment (Ray actors starting together on one node, two
pipelines sharing `~/.cache/selfalign`). WAL mode lets readers run beside the one writer, and a writer waits
up to `BUSY_TIMEOUT` for the lock. Switching a new file to WAL and creating its table are the exception:
SQLite answers "database is locked" at once there, without waiting, when another process does the same,
so the setup is retried until it passes.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BUSY_TIMEOUT = 60.0
CHUNK = 500  # keys per `IN (...)`: under SQLite's old 999-variable limit


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
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(random.uniform(0.01, 0.1))


def select_in(db: sqlite3.Connection, sql: str, keys: Sequence[str], *params: Any) -> Iterator[tuple]:
    """The rows of `sql` (which ends in `IN ({})`) for every key, asked in chunks; `params` come first."""
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        yield from db.execute(sql.format(",".join("?" * len(chunk))), [*params, *chunk]).fetchall()
