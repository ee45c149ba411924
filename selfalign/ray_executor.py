"""`--executor ray`: the same stages, answered by a pool of Ray actors that each hold one backend.

`principle` and `refine` are a map over records: the driver (the CLI) still reads the input, reports bad
lines, applies --shard and skips the ids already written (resume); the remaining records, in chunks of
the stage's batch size, become a Ray dataset mapped by an actor pool (`map_batches` with a callable class
that builds the backend, behind the completion cache, and the stage once). Results stream back to the
driver, which writes and counts them as they arrive, so a killed run resumes by id like a local one.

`generate` is iterative (the self-instruct pool grows with every accepted prompt), so it is not a map:
`RayBackend` is a backend whose `generate` splits each call's prompts over a pool of backend actors.
`dedup` needs every embedding at once for its search, so only the embedding goes out: `RayEmbedder` splits
each block of texts over a pool of embedding actors.

Ray is an optional extra (`pip install 'selfalign[ray]'`) imported only here, only when asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

INSTALL = "--executor ray needs Ray: pip install 'selfalign[ray]'"
# An actor whose process dies (OOM killer, a segfault in the engine) is restarted and its chunk retried this
# many times; past that the run ends with one clear line. Ray Data's default is to restart forever, which
# turns a backend that always kills its process into a run that never ends.
ACTOR_RESTARTS = 2
STAGES = ("principle", "refine")


def require_ray() -> Any:
    """The `ray` module, or a RuntimeError that says exactly what to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] extra (pyarrow, pandas) is needed too
    except ImportError:
        raise RuntimeError(INSTALL) from None
    return ray


@dataclass
class RayOptions:
    address: str | None = None  # None: $RAY_ADDRESS if set, else start a local instance
    actors: int = 1
    cpus_per_actor: float = 0.5  # fractional by default: a 2-core machine must not deadlock
    gpus_per_actor: float = 0.0  # 1 per vLLM actor (K with --tensor-parallel-size K)

    def check(self) -> None:
        if self.actors < 1:
            raise ValueError("--ray-actors must be at least 1")
        if self.cpus_per_actor < 0 or self.gpus_per_actor < 0:
            raise ValueError("--ray-cpus-per-actor and --ray-gpus-per-actor cannot be negative")
        if self.cpus_per_actor == 0 and self.gpus_per_actor == 0:
            raise ValueError("an actor needs some CPU or GPU: set --ray-cpus-per-actor or --ray-gpus-per-actor")


# ---- the driver ----------------------------------------------------------------------------------
class _StdoutGuard:
    """sys.stdout while Ray runs: the main thread's writes (the JSONL) go to stdout, any other thread's to
    stderr. Ray prints raylet error messages and worker logs to sys.stdout from background threads, and
    users pipe stdout into files. Those messages can run to a thousand characters a line (a dead worker's
    advice on the OOM killer): each line is kept to its first sentence; the whole text is in Ray's logs."""

    def __init__(self, real: Any, other: Any):
        self.real, self.other = real, other
        self.closing = False  # ray.shutdown() flushes its held-back messages from the main thread

    def write(self, text: str) -> int:
        if threading.current_thread() is threading.main_thread() and not self.closing:
            return self.real.write(text)
        self.other.write("\n".join(_first_sentence(line) for line in text.split("\n")))
        return len(text)

    def flush(self) -> None:
        self.real.flush()
        self.other.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _first_sentence(line: str, longest: int = 240) -> str:
    if len(line) <= longest:
        return line
    end = line.find(". ", 40, longest)
    return (line[:end + 1] if end > 0 else line[:longest] + " ...") + " (more in Ray's logs)"


class RayExecutor:
    """A Ray session for one command: `with RayExecutor(opts) as rx: ...` starts or joins Ray, and leaves it."""

    def __init__(self, options: RayOptions):
        options.check()
        self.opts = options
        self.ray = require_ray()
        self.local = False
        self.started_s = 0.0  # seconds ray.init took
        self._saved_stdout: Any = None

    # -- session ---------------------------------------------------------------------------------
    def __enter__(self) -> RayExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self) -> None:
        ray = self.ray
        self._saved_stdout = sys.stdout
        sys.stdout = _StdoutGuard(sys.stdout, sys.stderr)
        address = self.opts.address or os.environ.get("RAY_ADDRESS") or None
        # The driver's C++ core worker logs to stderr, and Ray Data's actor pools make it log an error-level
        # line on every actor start (ray-project/ray#53727, harmless). Only fatal ones are kept; the line
        # saying so is printed while stderr is set aside (ray.init's own failures still raise below).
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        common = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        t = time.perf_counter()
        try:
            if address:
                _reachable(address)
            with _stderr_set_aside():
                if address:
                    ray.init(address=address, **common)
                else:
                    self.local = True
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                    ray.init(address="local", num_cpus=os.cpu_count() or 1, **common)
        except Exception as e:  # noqa: BLE001 - a wrong address, a cluster that is down: one clear line
            self.shutdown()
            where = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
            raise RuntimeError(f"cannot {where}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
        self.started_s = time.perf_counter() - t
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # stderr belongs to selfalign's own progress and summary
        ctx.print_on_execution_start = False
        for handler in logging.getLogger("ray.data").handlers:
            if not isinstance(handler, logging.FileHandler) and type(handler).__name__ != "SessionFileHandler":
                # its errors come with the traceback of its own scheduler; selfalign says the cause in one
                # line (see _plain_errors), and the whole trace stays in Ray's session log files
                handler.setLevel(logging.CRITICAL)
        self._check_resources()

    def summary(self) -> dict[str, Any]:
        """For the run's report: where it ran, and what starting Ray cost."""
        where = "local instance" if self.local else "cluster"
        actors = f"{self.opts.actors} actor{'s' if self.opts.actors != 1 else ''}"
        return {"executor": f"ray {where}, {actors}", "ray_start_s": round(self.started_s, 2)}

    def shutdown(self) -> None:
        if isinstance(sys.stdout, _StdoutGuard):
            sys.stdout.closing = True
        if self.ray.is_initialized():
            self.ray.shutdown()
        if self._saved_stdout is not None:
            sys.stdout = self._saved_stdout
            self._saved_stdout = None

    def _check_resources(self) -> None:
        """An actor the cluster can never place would wait forever: say so instead."""
        have = self.ray.cluster_resources()
        cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
        o = self.opts
        where = "this machine's local Ray instance" if self.local else "the Ray cluster"
        if o.gpus_per_actor > gpus or o.cpus_per_actor > cpus:
            message = (f"{where} has {cpus:g} CPUs and {gpus:g} GPUs; an actor asks for {o.cpus_per_actor:g} CPUs "
                       f"and {o.gpus_per_actor:g} GPUs (--ray-cpus-per-actor, --ray-gpus-per-actor)")
            if self.local:
                raise RuntimeError(message)
            _warn(message + ": waiting for the cluster to grow")
        elif o.actors * o.cpus_per_actor > cpus or o.actors * o.gpus_per_actor > gpus:
            _warn(f"{where} has {cpus:g} CPUs and {gpus:g} GPUs: not all {o.actors} actors "
                  f"({o.cpus_per_actor:g} CPUs, {o.gpus_per_actor:g} GPUs each) fit at once")

    def _actor_threads(self) -> int | None:
        """Torch threads per CPU actor: its whole CPUs, or the local cores shared among the actors."""
        if self.opts.gpus_per_actor:
            return None
        if self.opts.cpus_per_actor >= 1:
            return int(self.opts.cpus_per_actor)
        return max(1, (os.cpu_count() or 1) // self.opts.actors) if self.local else 1

    def _cache_dir(self) -> str | None:
        # an explicit cache folder (shared storage) follows the job; otherwise each node uses its own
        return os.environ.get("SELFALIGN_CACHE_DIR") or None

    # -- principle / refine: a dataset map over an actor pool -----------------------------------
    def map_stage(self, stage: str, records: Iterable[Any], report: Any, backend: str, options: dict[str, Any],
                  cache: bool, stage_args: dict[str, Any], batch_size: int | None) -> Iterator[Any]:
        """Run `stage` over `records` on the actor pool; yield kept records (dicts) and `Dropped` ones.

        Each record sent comes back exactly once (kept, or dropped with its reason); the runner that consumes
        this stream counts it, as for a local run. `report` gets only this executor's extras.
        """
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r} does not run as a Ray map")
        ray = self.ray
        from selfalign.records import Dropped

        # reads the input on the driver (bad lines, --shard and resume happen there) and keeps it as JSON
        # text only: a few hundred bytes a record, where the parsed records would take several times that
        lines = [r.model_dump_json() for r in records]
        total = len(lines)
        if not total:
            return
        size = batch_size or min(chunk_size(backend), math.ceil(total / self.opts.actors))
        rows = [{"seq": start, "lines": "\n".join(lines[start:start + size])} for start in range(0, total, size)]
        del lines
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one chunk a block: it streams back alone
        remote_args: dict[str, Any] = {"num_cpus": self.opts.cpus_per_actor}
        if self.opts.gpus_per_actor:
            remote_args["num_gpus"] = self.opts.gpus_per_actor
        with warnings.catch_warnings():
            # max_restarts has no named parameter in Ray 2.60; the generic ray_remote_args still take it, with
            # a deprecation warning that is no use to a selfalign user
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            out = ds.map_batches(
                StageWorker, batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(self.opts.actors, len(rows))),
                fn_constructor_kwargs=dict(stage=stage, backend=backend, options=options, cache=cache,
                                           cache_dir=self._cache_dir(), stage_args=stage_args,
                                           threads=self._actor_threads()),
                max_restarts=ACTOR_RESTARTS, **remote_args)
        seen: set[int] = set()
        for row in _plain_errors(ray, out.iter_rows()):
            kind, seq = str(row["kind"]), int(row["seq"])
            if kind == "error":
                raise RuntimeError(str(row["json"]))
            if seq in seen:  # a chunk retried after an actor died: its records were already written
                continue
            seen.add(seq)
            obj = json.loads(str(row["json"]))
            yield Dropped.model_validate(obj) if kind == "dropped" else obj  # counted by the runner
        if len(seen) != total:
            raise RuntimeError(f"{total - len(seen)} of {total} records did not come back from the Ray actors")

    # -- generate: a backend whose calls are split over actors ----------------------------------
    def backend(self, backend: str, options: dict[str, Any], cache: bool) -> RayBackend:
        return RayBackend(self, backend, options, cache)

    # -- dedup: embeddings computed by the pool, the search on the driver -------------------------
    def embedder(self, model: str | None, cache: bool) -> RayEmbedder:
        return RayEmbedder(self, model, cache)



def _reachable(address: str, timeout: float = 10.0) -> None:
    """Ray retries an unreachable cluster address forever: try its host:port once, briefly, first."""
    import socket

    hostport = address.removeprefix("ray://").rstrip("/")
    if hostport in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {host}:{port} ({e.strerror or type(e).__name__})") from None


@contextlib.contextmanager
def _stderr_set_aside() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment (C++ code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _plain_errors(ray: Any, rows: Iterator[Any]) -> Iterator[Any]:
    """Ray's own failures (an actor killed by the OOM killer, a lost node) as one line, not a remote traceback."""
    try:
        yield from rows
    except ray.exceptions.ActorDiedError:
        raise RuntimeError(f"a Ray actor's process died {ACTOR_RESTARTS + 1} times (restarted {ACTOR_RESTARTS} times): "
                           "out of memory, or a crash in the backend? See the worker logs under "
                           "/tmp/ray/session_latest/logs on the node") from None
    except ray.exceptions.RayError as e:
        raise RuntimeError(f"a Ray actor failed: {_remote_error(e)}") from None


def _remote_error(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(e)):
        return _error(cause)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # a remote traceback ends with "SomeError: message"; otherwise Ray's first line says what happened
    last = next((ln for ln in reversed(lines) if ln.split(":", 1)[0].isidentifier() and ":" in ln), None)
    return (last or (lines[0] if lines else type(e).__name__))[:300]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def chunk_size(backend: str) -> int:
    """The backend's own prompts per call, without building it."""
    from selfalign.backends import backend_class

    return int(backend_class(backend).chunk_size)


# ---- the actors ----------------------------------------------------------------------------------
def build_backend(backend: str, options: dict[str, Any], cache: bool) -> Any:
    """What `make_backend` builds on the driver, built inside an actor: the backend behind the cache."""
    from selfalign.backends import open_backend

    return open_backend(backend, cache, **options)


def _actor_setup(cache_dir: str | None, threads: int | None, uses_torch: bool) -> None:
    if cache_dir:
        os.environ["SELFALIGN_CACHE_DIR"] = cache_dir
    if threads and uses_torch:
        import torch

        torch.set_num_threads(threads)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


class StageWorker:
    """One actor of the pool: one backend and one stage, built once; each call answers one chunk.

    Errors do not escape as Ray tracebacks: they come back as one row the driver turns into a clear
    message (a backend that cannot start, or one that dies mid-run).
    """

    def __init__(self, stage: str, backend: str, options: dict[str, Any], cache: bool, cache_dir: str | None,
                 stage_args: dict[str, Any], threads: int | None):
        self.error: str | None = None
        try:
            _actor_setup(cache_dir, threads, backend == "transformers")
            from selfalign.counts import Report

            self.backend = build_backend(backend, options, cache)
            if stage == "principle":
                from selfalign.records import PromptRecord
                from selfalign.stages.principle import PrincipleStage

                runner = PrincipleStage(self.backend, stage_args["principles"], stage_args["exemplars"],
                                        stage_args["config"], Report(stage))
                self.model, self.run = PromptRecord, runner.run
            else:
                from selfalign.records import AlignedRecord
                from selfalign.stages.refine import refine

                cfg = stage_args["config"]
                self.model = AlignedRecord
                self.run = lambda recs: refine(recs, self.backend, cfg, Report(stage))
        except Exception as e:  # noqa: BLE001 - reported through the rows, see the class docstring
            self.error = f"the {backend} backend did not start in a Ray actor: {_error(e)}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from selfalign.records import Dropped

        out: dict[str, list[Any]] = {"seq": [], "kind": [], "json": []}
        for start, lines in zip(batch["seq"], batch["lines"], strict=True):
            if self.error is None:
                try:
                    records = [self.model.model_validate_json(line) for line in str(lines).split("\n")]
                    for i, item in enumerate(self.run(records)):
                        out["seq"].append(int(start) + i)
                        out["kind"].append("dropped" if isinstance(item, Dropped) else "kept")
                        out["json"].append(item.model_dump_json(exclude_none=True))
                    continue
                except Exception as e:  # noqa: BLE001 - the backend died: the chunk in flight is lost, as locally
                    self.error = f"in a Ray actor: {_error(e)}"
            return {"seq": [int(start)], "kind": ["error"], "json": [self.error]}
        return out


class BackendWorker:
    """A Ray actor holding one backend (behind the cache), for `RayBackend`."""

    def __init__(self, backend: str, options: dict[str, Any], cache: bool, cache_dir: str | None,
                 threads: int | None):
        self.error: str | None = None
        try:
            _actor_setup(cache_dir, threads, backend == "transformers")
            self.backend = build_backend(backend, options, cache)
        except Exception as e:  # noqa: BLE001 - returned by info(), raised on the driver
            self.error = f"the {backend} backend did not start in a Ray actor: {_error(e)}"

    def info(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        b = self.backend
        return {"name": b.name, "model": b.model, "max_context": b.max_context,
                "supports_logit_bias": b.supports_logit_bias, "chunk_size": b.chunk_size}

    def generate(self, prompts: list[str], params: Any) -> list[Any]:
        return self.backend.generate(prompts, params)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [self.backend.count_tokens(t) for t in texts]

    def close(self) -> None:
        self.backend.close()


class _ActorPool:
    """`--ray-actors` actors of one class, started together. Each call's items are split into contiguous
    parts, one per actor, and the results come back in order; the actor that gets the first part rotates,
    so calls smaller than the pool still spread over every actor."""

    def __init__(self, executor: RayExecutor, cls: type, *args: Any):
        ray = self._ray = executor.ray
        o = executor.opts
        actor = ray.remote(num_cpus=o.cpus_per_actor, num_gpus=o.gpus_per_actor or None)(cls)
        self.actors = [actor.remote(*args, executor._cache_dir(), executor._actor_threads()) for _ in range(o.actors)]
        infos = ray.get([a.info.remote() for a in self.actors])
        errors = [i["error"] for i in infos if "error" in i]
        if errors:
            self.close()
            raise RuntimeError(errors[0])
        self.info: dict[str, Any] = infos[0]
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
            raise RuntimeError(f"in a Ray actor: {_remote_error(failed)}")
        return parts

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


class RayBackend(_ActorPool):
    """The backend protocol over a pool of `BackendWorker` actors."""

    def __init__(self, executor: RayExecutor, backend: str, options: dict[str, Any], cache: bool):
        super().__init__(executor, BackendWorker, backend, options, cache)
        info = self.info
        self.name, self.model, self.max_context = info["name"], info["model"], int(info["max_context"])
        self.supports_logit_bias, self.chunk_size = bool(info["supports_logit_bias"]), int(info["chunk_size"])

    def count_tokens(self, text: str) -> int:
        return int(self._ray.get(self.actors[0].count_tokens.remote([text]))[0])

    def generate(self, prompts: list[str], params: Any) -> list[Any]:
        if not prompts:
            return []
        return [c for part in self.scatter("generate", prompts, params) for c in part]


class EmbedWorker:
    """A Ray actor holding one sentence-transformers model, behind the node's embedding cache."""

    def __init__(self, model: str | None, cache: bool, cache_dir: str | None, threads: int | None):
        self.error: str | None = None
        try:
            _actor_setup(cache_dir, threads, True)
            from selfalign.embeddings import Embedder
            from selfalign.paths import cache_dir as selfalign_cache

            self.embedder = Embedder(model, cache=selfalign_cache() / "embeddings.sqlite" if cache else None)
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


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0


class RayEmbedder(_ActorPool):
    """`Embedder` (dim, name, encode, cache counts) over a pool of `EmbedWorker` actors."""

    def __init__(self, executor: RayExecutor, model: str | None, cache: bool):
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
