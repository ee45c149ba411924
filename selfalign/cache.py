"""Content-addressed completion cache in SQLite: a completion is never paid for twice.

The key covers the backend, the model, every sampling parameter (seed included), the template version
and the rendered prompt. Only finished completions are stored (errors are not), right after each backend
call, so a run killed at any moment loses at most the call in flight.

Several processes may share one cache file (Ray actors on one node): see `sqlite_store`. One connection
may be used from several threads (Ray calls an actor's methods from its own threads), one at a time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from selfalign.backends.base import Completion, SamplingParams
from selfalign.records import TEMPLATE_VERSION
from selfalign.sqlite_store import connect, select_in


class CompletionCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = connect(path, "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, completion TEXT NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(backend: str, model: str, params: SamplingParams, prompt: str) -> str:
        blob = json.dumps([backend, model, params.model_dump(mode="json"), TEMPLATE_VERSION, prompt],
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, keys: list[str]) -> dict[str, Completion]:
        with self._lock:
            rows = list(select_in(self.db, "SELECT key, completion FROM completions WHERE key IN ({})", keys))
        return {k: Completion.model_validate_json(c) for k, c in rows}

    def put(self, items: dict[str, Completion]) -> None:
        with self._lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?)",
                                [(k, c.model_dump_json()) for k, c in items.items()])

    def stats(self) -> dict[str, Any]:
        (n,) = self.db.execute("SELECT COUNT(*) FROM completions").fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "completions": n, "bytes": size}

    def clear(self) -> int:
        with self.db:
            (n,) = self.db.execute("SELECT COUNT(*) FROM completions").fetchone()
            self.db.execute("DELETE FROM completions")
        self.db.execute("VACUUM")
        return n


def default_cache() -> CompletionCache:
    """The completion cache under the selfalign cache folder (`SELFALIGN_CACHE_DIR`)."""
    from selfalign.embedded import cache_dir

    return CompletionCache(cache_dir() / "completions.sqlite")


def open_backend(name: str, cache: bool = True, **options: Any) -> Any:
    """The backend called `name` (options set to None are left out), behind the completion cache unless
    `cache` is False. The CLI builds it so; so does each Ray actor."""
    from selfalign.backends import load_backend

    backend = load_backend(name, **{k: v for k, v in options.items() if v is not None})
    return CachedBackend(backend, default_cache()) if cache else backend


class CachedBackend:
    """Any backend, behind the cache: only prompts without a stored completion reach it."""

    def __init__(self, inner: Any, cache: CompletionCache):
        self.inner, self.cache = inner, cache
        self.hits = self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        keys = [self.cache.key(self.inner.name, self.inner.model, params, p) for p in prompts]
        found = self.cache.get(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.generate([prompts[i] for i in todo], params)
            self.cache.put({keys[i]: c for i, c in zip(todo, fresh, strict=True) if c.finish_reason != "error"})
            found.update({keys[i]: c for i, c in zip(todo, fresh, strict=True)})
        return [found[k] for k in keys]
