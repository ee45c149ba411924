"""A cache never loses a run: corrupt, truncated, read-only, full or locked cache files are said once and
the run goes on without them; `cache info` and `cache clear` say what is wrong and clear it."""

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from selfalign.backends.base import Completion, SamplingParams
from selfalign.io.cache import CompletionCache
from selfalign.text.embeddings import EmbeddingCache


CORRUPT = "is not a readable SQLite database"


# ---- the same code paths in process: read-only, full, locked, corrupted while open -----------------
def _completion_items(n: int, size: int = 10) -> tuple[type, dict]:
    keys = [CompletionCache.key("scripted", "m", SamplingParams(), f"prompt {i}") for i in range(n)]
    return CompletionCache, {k: Completion(text="x" * size) for k in keys}


def _embedding_items(n: int, size: int = 10) -> tuple[type, dict]:
    return EmbeddingCache, {EmbeddingCache.key(f"text {i}"): np.ones(size, dtype=np.float32) for i in range(n)}


def _open(kind: type, path: Path, said: list[str]):
    return kind(path, warn=said.append) if kind is CompletionCache else kind(path, "m", warn=said.append)


@pytest.mark.parametrize("items", [_completion_items, _embedding_items], ids=["completions", "embeddings"])
def test_put_on_a_read_only_connection_is_said_once_and_hits_are_still_served(tmp_path, items):
    kind, stored = items(3)
    path, said = tmp_path / "c.sqlite", []
    cache = _open(kind, path, said)
    cache.put(dict(list(stored.items())[:2]))
    cache.db.close()
    # as a connection to a file this process may not write (SQLite's mode=ro, whoever runs the test)
    cache.db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    cache.put(stored)
    cache.put(stored)
    assert said == [f"the {cache.what} {path} is read-only; running without storing {cache.items}"]
    assert len(cache.get(list(stored))) == 2


@pytest.mark.parametrize("items", [_completion_items, _embedding_items], ids=["completions", "embeddings"])
def test_a_full_disk_while_storing_is_said_once_and_the_run_goes_on(tmp_path, items):
    kind, stored = items(200, size=2000)
    path, said = tmp_path / "c.sqlite", []
    cache = _open(kind, path, said)
    cache.db.execute("PRAGMA max_page_count=8")  # the file may not grow past 8 pages: SQLite says "full"
    cache.put(stored)
    cache.put(stored)
    assert len(said) == 1 and said[0].endswith(f"running without storing {cache.items}"), said
    assert "full" in said[0] and cache.get(list(stored)) == {}


def test_a_lock_held_past_the_busy_timeout_is_said_once_and_reads_go_on(tmp_path):
    kind, stored = _completion_items(4)
    path, said = tmp_path / "c.sqlite", []
    cache = _open(kind, path, said)
    cache.put(dict(list(stored.items())[:1]))
    cache.db.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(path)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        cache.put(stored)
        assert len(said) == 1 and "locked" in said[0] and "running without storing completions" in said[0]
        assert len(cache.get(list(stored))) == 1  # WAL: readers are not blocked
    finally:
        other.rollback()
        other.close()


def test_a_file_corrupted_while_open_turns_the_cache_off_once(tmp_path):
    kind, stored = _completion_items(400, size=500)
    path, said = tmp_path / "c.sqlite", []
    writer = _open(kind, path, said)
    writer.put(stored)
    writer.db.close()
    cache = _open(kind, path, said)  # it has read the schema on page 1, not the completions
    with open(path, "r+b") as f:  # every page but the first overwritten
        f.seek(4096)
        f.write(os.urandom(path.stat().st_size - 4096))
    assert cache.get(list(stored)) == {}
    cache.put(stored)
    assert cache.get(list(stored)) == {}
    assert len(said) == 1 and CORRUPT in said[0] and "`selfalign cache clear` removes it" in said[0], said


def test_a_healthy_cache_says_nothing(tmp_path):
    kind, stored = _completion_items(3)
    said: list[str] = []
    cache = _open(kind, tmp_path / "c.sqlite", said)
    cache.put(stored)
    assert cache.get(list(stored)) == stored and said == [] and cache.problem is None
