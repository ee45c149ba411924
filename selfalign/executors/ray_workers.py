"""The Ray actors and the pools of them, for `selfalign.executors.ray`.

`StageWorker` rebuilds a per-record stage from its class and config (`cls(**config)`) over its own backend,
and answers one chunk of records a call (a Ray Data actor pool). `RayBackend` and `RayEmbedder` are a backend
and an embedding model whose calls are split over a pool of `BackendWorker` / `EmbedWorker` actors.

Errors do not escape as Ray tracebacks: an actor that cannot start, or whose backend dies, says so in one line
that the driver raises.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any


def _actor_setup(cache_dir: str | None, threads: int | None, uses_torch: bool) -> None:
    if cache_dir:
        os.environ["SELFALIGN_CACHE_DIR"] = cache_dir
    if threads and uses_torch:
        os.environ["SELFALIGN_THREADS"] = str(threads)  # what selfalign.threads gives torch in this actor
        from selfalign.threads import use_free_cores

        use_free_cores()


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


def remote_error(e: BaseException) -> str:
    """A Ray error as one line: its cause's, else the last line of the remote traceback."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(e)):
        return _error(cause)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # a remote traceback ends with "SomeError: message"; otherwise Ray's first line says what happened
    last = next((ln for ln in reversed(lines) if ln.split(":", 1)[0].isidentifier() and ":" in ln), None)
    return (last or (lines[0] if lines else type(e).__name__))[:300]


def _open_backend(config: dict[str, Any], cache_dir: str | None, threads: int | None) -> Any:
    """The backend a BackendConfig's fields describe, opened inside an actor (behind the node's cache)."""
    from selfalign.steps import BackendConfig

    backend = BackendConfig(**config)
    _actor_setup(cache_dir, threads, backend.name == "transformers")
    return backend.open()


def _not_started(config: dict[str, Any], e: BaseException) -> str:
    return f"the {config.get('name', 'transformers')} backend did not start in a Ray actor: {_error(e)}"


class StageWorker:
    """One actor of a Ray Data pool: the stage rebuilt from its class and config over one backend, once;
    each call answers one chunk (rows of `seq`, the chunk's first index, and `lines`, its records as JSON)."""

    def __init__(self, stage: type, config: dict[str, Any], prepared: dict[str, Any], backend: dict[str, Any],
                 cache_dir: str | None, threads: int | None):
        self.error: str | None = None
        try:
            from selfalign.executors import metered
            from selfalign.runner import Runner

            st = stage(**config)
            self.model = st.input_model()
            runner = Runner(st.kind)
            self.report = runner.report
            self.run = st.build(metered(_open_backend(backend, cache_dir, threads), runner), runner, prepared)
        except Exception as e:  # noqa: BLE001 - reported through the rows, see the module docstring
            self.error = _not_started(backend, e)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from selfalign.records import Dropped

        out: dict[str, list[Any]] = {"seq": [], "kind": [], "json": []}
        for start, lines in zip(batch["seq"], batch["lines"], strict=True):
            if self.error is None:
                try:
                    before, spent = self._counters(), self.report.tokens.copy()
                    records = [self.model.model_validate_json(line) for line in str(lines).split("\n")]
                    for i, item in enumerate(self.run(iter(records))):
                        out["seq"].append(int(start) + i)
                        out["kind"].append("dropped" if isinstance(item, Dropped) else "kept")
                        out["json"].append(item.model_dump_json(exclude_none=True))
                    grown: dict[str, Any] = {k: n - before.get(k, 0) for k, n in self._counters().items()
                                             if n != before.get(k, 0)}
                    if tokens := self.report.tokens.minus(spent):
                        grown["tokens"] = tokens.as_dict()
                    if grown:  # the chunk's counters (critique: revised, no_violation; tokens), summed by the driver
                        out["seq"].append(int(start))
                        out["kind"].append("extra")
                        out["json"].append(json.dumps(grown))
                    continue
                except Exception as e:  # noqa: BLE001 - the backend died: the chunk in flight is lost, as locally
                    self.error = f"in a Ray actor: {_error(e)}"
            return {"seq": [int(start)], "kind": ["error"], "json": [self.error]}
        return out


    def _counters(self) -> dict[str, int]:
        """The numbers the stage counts in its report's extra, as a local run's report would have them."""
        return {k: v for k, v in self.report.extra.items() if isinstance(v, int) and not isinstance(v, bool)}


class BackendWorker:
    """A Ray actor holding one backend (behind the cache), for `RayBackend`."""

    def __init__(self, config: dict[str, Any], cache_dir: str | None, threads: int | None):
        self.error: str | None = None
        try:
            self.backend = _open_backend(config, cache_dir, threads)
        except Exception as e:  # noqa: BLE001 - returned by info(), raised on the driver
            self.error = _not_started(config, e)

    def info(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        b = self.backend
        return {"name": b.name, "model": b.model, "max_context": b.max_context,
                "supports_logit_bias": b.supports_logit_bias, "chunk_size": b.chunk_size,
                "supports_logprobs": bool(getattr(b, "supports_logprobs", False))}

    def generate(self, prompts: list[str], params: Any) -> list[Any]:
        return self.backend.generate(prompts, params)

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> tuple[list[Any], dict[str, int]]:
        """The scores, and what scoring them spent (the backend's `choice_usage` grew by it)."""
        usage = getattr(self.backend, "choice_usage", None)
        before = dict(usage) if isinstance(usage, dict) else {}
        out = self.backend.choice_logprobs(prompts, choices)
        return out, {k: v - before.get(k, 0) for k, v in usage.items()} if isinstance(usage, dict) else {}

    def count_tokens(self, texts: list[str]) -> list[int]:
        from selfalign.stages.common import count_tokens

        return count_tokens(self.backend, texts)

    def close(self) -> None:
        self.backend.close()


class EmbedWorker:
    """A Ray actor holding one sentence-transformers model, behind the node's embedding cache."""

    def __init__(self, model: str | None, cache: bool, cache_dir: str | None, threads: int | None):
        self.error: str | None = None
        try:
            _actor_setup(cache_dir, threads, True)
            from selfalign.executors import local_embedder

            self.embedder = local_embedder(model, cache)
        except Exception as e:  # noqa: BLE001 - returned by info(), raised on the driver
            self.error = f"the embedding model did not start in a Ray actor: {_error(e)}"

    def info(self) -> dict[str, Any]:
        return {"error": self.error} if self.error else {"dim": self.embedder.dim, "name": self.embedder.name}

    def encode(self, texts: list[str]) -> tuple[Any, int, int]:
        """The embeddings, and how many of the texts came from the cache and how many were computed."""
        cache = self.embedder.cache
        if cache is None:
            return self.embedder.encode(texts), 0, 0
        hits, misses = cache.hits, cache.misses
        vectors = self.embedder.encode(texts)
        return vectors, cache.hits - hits, cache.misses - misses


class _ActorPool:
    """`--ray-actors` actors of one class, started together. Each call's items are split into contiguous
    parts, one per actor, and the results come back in order; the actor that gets the first part rotates,
    so calls smaller than the pool still spread over every actor."""

    def __init__(self, executor: Any, cls: type, *args: Any):
        ray = self._ray = executor.ray
        o = executor.opts
        actor = ray.remote(num_cpus=o.cpus_per_actor, num_gpus=o.gpus_per_actor or None)(cls)
        self.actors = [actor.remote(*args, executor.cache_dir(), executor.actor_threads()) for _ in range(o.actors)]
        infos = ray.get([a.info.remote() for a in self.actors])
        errors = [i["error"] for i in infos if "error" in i]
        if errors:
            self.close()
            raise RuntimeError(errors[0])
        self.info: dict[str, Any] = infos[0]
        self.parallel = len(self.actors)
        self.calls = 0

    def scatter(self, method: str, items: list[Any], *args: Any) -> list[Any]:
        """`method(part, *args)` on every actor at once, one part of `items` each; the results in order."""
        self.calls += 1
        ray, actors = self._ray, self.actors
        size = math.ceil(len(items) / min(len(actors), len(items)))
        refs = [getattr(actors[(self.calls + i) % len(actors)], method).remote(items[s:s + size], *args)
                for i, s in enumerate(range(0, len(items), size))]
        parts, failed = [], None
        for ref in refs:  # every part is fetched, so no failure is left unread (Ray would log it at exit)
            try:
                parts.append(ray.get(ref))
            except ray.exceptions.RayError as e:  # it died in its actor: one line, as locally
                failed = failed or e
        if failed is not None:
            raise RuntimeError(f"in a Ray actor: {remote_error(failed)}")
        return parts

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


class RayBackend(_ActorPool):
    """The backend protocol over a pool of `BackendWorker` actors."""

    def __init__(self, executor: Any, config: dict[str, Any]):
        super().__init__(executor, BackendWorker, config)
        info = self.info
        self.name, self.model, self.max_context = info["name"], info["model"], int(info["max_context"])
        self.supports_logit_bias, self.chunk_size = bool(info["supports_logit_bias"]), int(info["chunk_size"])
        self.supports_logprobs = bool(info.get("supports_logprobs"))
        from selfalign.backends.base import new_usage

        self.choice_usage = new_usage()  # summed over the actors' own

    def count_tokens(self, text: str) -> int:
        return int(self._ray.get(self.actors[0].count_tokens.remote([text]))[0])

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """Counted on the actors, a part each, in one round trip per actor (not one per text)."""
        return [n for part in self.scatter("count_tokens", texts) for n in part] if texts else []

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[Any]:
        """Each prompt's log-probabilities of the one-token `choices`, read on the actors (the judge's scores)."""
        if not prompts:
            return []
        parts = self.scatter("choice_logprobs", prompts, choices)
        for _, spent in parts:
            for k, v in spent.items():
                self.choice_usage[k] = self.choice_usage.get(k, 0) + v
        return [c for scores, _ in parts for c in scores]

    def generate(self, prompts: list[str], params: Any) -> list[Any]:
        if not prompts:
            return []
        return [c for part in self.scatter("generate", prompts, params) for c in part]


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0


class RayEmbedder(_ActorPool):
    """`Embedder` (dim, name, encode, cache counts) over a pool of `EmbedWorker` actors."""

    def __init__(self, executor: Any, model: str | None, cache: bool):
        super().__init__(executor, EmbedWorker, model, cache)
        self.dim, self.name = int(self.info["dim"]), str(self.info["name"])
        self.cache = CacheCounts() if cache else None

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = self.scatter("encode", texts)
        if self.cache is not None:
            self.cache.hits += sum(p[1] for p in parts)
            self.cache.misses += sum(p[2] for p in parts)
        return np.concatenate([p[0] for p in parts])
