"""Content-addressed completion cache in SQLite: a completion is never paid for twice.

The key covers the backend, the model, the server that serves it (a backend's `identity`: an OpenAI-compatible
server's address, credentials left out), every sampling parameter (seed included), the template version and
the rendered prompt. Only finished completions are stored (errors are not), right after each backend
call, so a run killed at any moment loses at most the call in flight.

Several processes may share one cache file (Ray actors on one node): see `sqlite_store`. One connection
may be used from several threads (Ray calls an actor's methods from its own threads), one at a time.
The cache never fails a run: a corrupt, read-only or full file is said once on stderr and the run goes on
without it (or without storing), as `sqlite_store.SqliteCache` describes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from selfalign.backends.base import Completion, SamplingParams
from selfalign.records import TEMPLATE_VERSION
from selfalign.io.sqlite_store import SqliteCache, damage, remove, select_in

COMPLETIONS, EMBEDDINGS = "completions.sqlite", "embeddings.sqlite"  # the files in the cache folder


class CacheError(Exception):
    """A cache command (info, clear) cannot be done; the message is one line that says why and what to do."""


class CompletionCache(SqliteCache):
    what, items, table = "completion cache", "completions", "completions"
    schema = "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, completion TEXT NOT NULL)"

    @staticmethod
    def key(backend: str, model: str, params: SamplingParams, prompt: str, server: str = "") -> str:
        """`server`: where the model is served (a backend's `identity`, e.g. the OpenAI server's address without
        credentials); "" for a local model, whose keys are as they always were."""
        parts: list = [backend, model, params.model_dump(mode="json"), TEMPLATE_VERSION, prompt]
        if server:
            parts.append(server)
        blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, keys: list[str]) -> dict[str, Completion]:
        """The stored completions of `keys` (a row that no longer parses is a miss); {} if the cache is off."""
        sql = "SELECT key, completion FROM completions WHERE key IN ({})"
        rows = self._read(lambda db: list(select_in(db, sql, keys)), [])
        found = {}
        for k, c in rows:
            try:
                found[k] = Completion.model_validate_json(c)
            except ValueError:
                pass
        return found

    def put(self, items: dict[str, Completion]) -> None:
        """Store `items`, unless the cache stopped storing."""
        self._write(lambda db: db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?)",
                                              [(k, c.model_dump_json(exclude={"cached"}))
                                               for k, c in items.items()]))

    def stats(self) -> dict[str, Any]:
        """Path, completions and bytes on disk; CacheError if the cache cannot be read."""
        n = self._read(lambda db: db.execute("SELECT COUNT(*) FROM completions").fetchone()[0], None)
        if n is None:
            raise CacheError(self.describe())
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "completions": n, "bytes": size}

    def clear(self) -> int:
        """Delete every completion and return how many there were; CacheError if the cache cannot be written."""
        counted: list[int] = []

        def delete(db: Any) -> None:
            counted.append(db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])
            db.execute("DELETE FROM completions")

        if not self._write(delete):
            raise CacheError(self.describe())
        self._write(lambda db: db.execute("VACUUM"))  # gives the space back; the rows are gone either way
        return counted[0]


def default_cache(warn: Callable[[str], None] | None = None) -> CompletionCache:
    """The completion cache under the selfalign cache folder (`SELFALIGN_CACHE_DIR`); `warn` as in SqliteCache."""
    from selfalign.io.paths import cache_dir

    return CompletionCache(cache_dir() / COMPLETIONS, warn)


def clear_cache() -> list[str]:
    """`selfalign cache clear`: remove each cache file that is not a readable SQLite database (with its -wal
    and -shm), then empty the completion cache. One line per thing done; CacheError if it cannot be done."""
    from selfalign.io.paths import cache_dir

    done = []
    for path in (cache_dir() / COMPLETIONS, cache_dir() / EMBEDDINGS):
        if path.exists() and (why := damage(path)):
            try:
                remove(path)
            except OSError as e:
                raise CacheError(f"{path} is not a readable SQLite database ({why}); removing it failed: {e}") from None
            done.append(f"removed {path}: it was not a readable SQLite database ({why})")
    n = default_cache(warn=lambda _: None).clear()
    return [*done, f"cleared {n} completions"]


class CachedBackend:
    """Any backend, behind the cache: only prompts without a stored completion reach it. A completion from
    the cache comes back with `cached=True` (its tokens are counted apart: they cost nothing this time)."""

    def __init__(self, inner: Any, cache: CompletionCache):
        self.inner, self.cache = inner, cache
        self.hits = self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        server = str(getattr(self.inner, "identity", "") or "")
        keys = [self.cache.key(self.inner.name, self.inner.model, params, p, server) for p in prompts]
        found = {k: c.model_copy(update={"cached": True}) for k, c in self.cache.get(keys).items()}
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.generate([prompts[i] for i in todo], params)
            self.cache.put({keys[i]: c for i, c in zip(todo, fresh, strict=True) if c.finish_reason != "error"})
            found.update({keys[i]: c for i, c in zip(todo, fresh, strict=True)})
        return [found[k] for k in keys]
