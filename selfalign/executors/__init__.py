"""Executors: where a stage runs. One small interface, two implementations that swap:

    executor.run(stage, backend, records, runner) -> the stage's results (kept records and `Dropped` ones)

`stage` is a stage from `selfalign.stages`; `backend` a `BackendConfig`, a backend object, or None (the
embedded model, opened only if the stage needs one). `run` prepares the stage here (its files read, a bad one
failing before any model loads), starts what it needs, and returns the results as a lazy iterator, for the
runner to write and count. An executor holds what is costly to start (backends, embedding models, Ray) until
`close()`, so the stages of one pipeline share them.

`LocalExecutor` builds the stage in this process. `RayExecutor` (selfalign.executors.ray, imported only when
asked for) sends a per-record stage to a pool of Ray actors, each of which rebuilds it from its class and
config (`cls(**config)`) over its own backend; other stages run here over a backend or embedding model whose
calls are split over a pool of actors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RayOptions", "make_executor"]


class Executor:
    """The interface, and what both executors share: what they started, held until `close()`."""

    def __init__(self) -> None:
        self._held: dict[Any, Any] = {}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, stage: Any, backend: Any, records: Iterable[Any], runner: Any,
            prepared: dict[str, Any] | None = None) -> Iterator[Any]:
        """Run `stage` over `records` (`prepared`: what `stage.prepare(runner)` returned, if already called)."""
        raise NotImplementedError

    def starting(self, stage: Any, backend: Any) -> str:
        """What `run` starts, in a few words (for a spinner)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every backend and embedding model this executor started (not a backend object it was given)."""
        held, self._held = self._held, {}
        for thing in held.values():
            if hasattr(thing, "close"):
                thing.close()

    def _hold(self, key: Any, start: Callable[[], Any]) -> Any:
        if key not in self._held:
            self._held[key] = start()
        return self._held[key]


def backend_config(backend: Any) -> Any:
    """`backend` as a BackendConfig (None: the embedded model's)."""
    from selfalign.steps import BackendConfig

    return BackendConfig() if backend is None else backend


def backend_name(backend: Any) -> str:
    return str(getattr(backend, "name", None) or "transformers")


class LocalExecutor(Executor):
    """Stages run in this process, one after another."""

    def run(self, stage: Any, backend: Any, records: Iterable[Any], runner: Any,
            prepared: dict[str, Any] | None = None) -> Iterator[Any]:
        prepared = stage.prepare(runner) if prepared is None else prepared
        be = metered(self.backend(backend), runner) if stage.needs_model else None
        spec = stage.embeds()
        embedder = self._hold(("embeddings", spec), lambda: local_embedder(*spec)) if spec else None
        return stage.build(be, runner, prepared, embedder)(iter(records))

    def starting(self, stage: Any, backend: Any) -> str:
        if stage.needs_model:
            return f"loading {backend_name(backend)} backend ..."
        return "loading the embedding model ..." if stage.embeds() else f"starting {stage.kind} ..."

    def backend(self, backend: Any) -> Any:
        """The backend object for `backend`: opened once per config, behind the cache unless it says no."""
        if hasattr(backend, "generate"):  # the caller's own: used as is, and not closed here
            return backend
        config = backend_config(backend)
        return self._hold(("backend", config.model_dump_json()), config.open)


def metered(backend: Any, runner: Any) -> Any:
    """`backend`, counting what the stage spends into its runner's report (`selfalign.report.tokens`)."""
    from selfalign.report.tokens import Metered

    report = getattr(runner, "report", None)
    return Metered(backend, report.tokens) if report is not None else backend


def local_embedder(model: str | None, cache: bool) -> Any:
    """A sentence-transformers model, behind the embedding cache if `cache`."""
    from selfalign.text.embeddings import Embedder
    from selfalign.io.paths import cache_dir

    return Embedder(model, cache=cache_dir() / "embeddings.sqlite" if cache else None)


def make_executor(name: str = "local", **ray_options: Any) -> Executor:
    """`local`, or `ray` with RayOptions' fields; a missing Ray is a RuntimeError saying what to install."""
    if name == "local":
        if ray_options:
            given = ", ".join("--ray-" + k.replace("_", "-") for k in ray_options)
            raise ValueError(f"{given}: Ray options apply only with --executor ray")
        return LocalExecutor()
    if name == "ray":
        from selfalign.executors.ray import RayExecutor, RayOptions

        return RayExecutor(RayOptions(**ray_options))
    raise ValueError(f"unknown executor {name!r}: choose local or ray")


def __getattr__(name: str) -> Any:
    if name in ("RayExecutor", "RayOptions"):  # Ray's module only when asked for
        from selfalign.executors import ray

        return getattr(ray, name)
    raise AttributeError(f"module 'selfalign.executors' has no attribute {name!r}")
