"""`--executor ray`: the same stages, answered by pools of Ray actors that each hold one backend.

A per-record stage (`principle`, `refine`) is a map over records: the driver (the CLI) still reads the input,
reports bad lines, applies --shard and skips the ids already written (resume); the remaining records, in
chunks of the stage's batch size, become a Ray dataset mapped by an actor pool (`map_batches` with
`StageWorker`, which rebuilds the stage from its class and config over its own backend, once). Results stream
back to the driver, which writes and counts them as they arrive, so a killed run resumes by id like a local one.

Other stages run on the driver. `generate` is iterative (the self-instruct pool grows with every accepted
prompt), so its backend is a `RayBackend`, whose `generate` splits each call's prompts over a pool of backend
actors. `dedup` needs every embedding at once for its search, so only the embedding goes out: a `RayEmbedder`
splits each block of texts over a pool of embedding actors.

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
from dataclasses import dataclass, field
from typing import Any

from selfalign.executors import Executor, backend_config, backend_name, metered
from selfalign.executors.ray_workers import RayBackend, RayEmbedder, StageWorker, remote_error

INSTALL = "--executor ray needs Ray: pip install 'selfalign[ray]'"
# An actor whose process dies (OOM killer, a segfault in the engine) is restarted and its chunk retried this
# many times; past that the run ends with one clear line. Ray Data's default is to restart forever, which
# turns a backend that always kills its process into a run that never ends.
ACTOR_RESTARTS = 2


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
    """The Ray pool's options (the CLI's --ray-* options are made from these fields, their help from `metadata`)."""

    address: str | None = field(default=None, metadata={"help": "ray: the cluster to join (e.g. auto, "
                                "ray://head:10001); default: $RAY_ADDRESS, else start a local instance."})
    actors: int = field(default=1, metadata={"help": "ray: actors in the pool, each with its own backend (dedup: "
                        "its own embedding model)."})
    cpus_per_actor: float = field(default=0.5, metadata={"help": "ray: CPUs each actor reserves (fractional by "
                                  "default, so a small machine does not deadlock; whole CPUs also set its torch "
                                  "threads)."})
    gpus_per_actor: float = field(default=0.0, metadata={"help": "ray: GPUs each actor reserves (vllm: 1, or K with "
                                  "--tensor-parallel-size K)."})

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


class RayExecutor(Executor):
    """Stages run by pools of Ray actors (see the module docstring). Ray starts (or is joined) on the first
    `run`, and is left at `close()`."""

    def __init__(self, options: RayOptions | None = None):
        super().__init__()
        options = options or RayOptions()
        options.check()
        self.opts = options
        self.ray = require_ray()
        self.local = False
        self.started_s = 0.0  # seconds ray.init took
        self.started = False
        self._own = False  # Ray was started or joined here (not by the caller's own ray.init): left at close()
        self._saved_stdout: Any = None

    # -- the executor ------------------------------------------------------------------------------
    def run(self, stage: Any, backend: Any, records: Iterable[Any], runner: Any,
            prepared: dict[str, Any] | None = None) -> Iterator[Any]:
        prepared = stage.prepare(runner) if prepared is None else prepared
        if hasattr(backend, "generate"):
            raise ValueError("the Ray executor opens the backend in each actor: give it a BackendConfig, "
                             "not a backend object")
        config = backend_config(backend)
        self.start()
        runner.report.extra.update(self.summary())
        if stage.per_record:
            return self._map(stage, config, records, prepared, runner.report)
        be = self._hold(("backend", config.model_dump_json()),
                        lambda: RayBackend(self, config.model_dump())) if stage.needs_model else None
        spec = stage.embeds()
        embedder = None
        if spec and not stage.needs_model:  # a model stage's actors hold the pool's resources: it embeds here
            embedder = self._hold(("embeddings", spec), lambda: RayEmbedder(self, *spec))
        elif spec:
            from selfalign.executors import local_embedder

            embedder = self._hold(("local embeddings", spec), lambda: local_embedder(*spec))
        return stage.build(metered(be, runner) if be is not None else None, runner, prepared, embedder)(iter(records))

    def starting(self, stage: Any, backend: Any) -> str:
        what = f"{backend_name(backend)} " if stage.needs_model else "embedding " if stage.embeds() else ""
        return f"starting Ray{f' and {self.opts.actors} {what}actors' if what else ''} ..."

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.shutdown()

    # -- session ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start a local Ray instance, or join a cluster (once)."""
        ray = self.ray
        if self.started:
            return
        self.started = True
        if ray.is_initialized():  # the caller's own session (a notebook's ray.init): used, and left running
            return
        self._own = True
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
        if self._own and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = self._own = False
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

    def actor_threads(self) -> int | None:
        """Torch threads per CPU actor: its whole CPUs, or the local cores shared among the actors."""
        if self.opts.gpus_per_actor:
            return None
        if self.opts.cpus_per_actor >= 1:
            return int(self.opts.cpus_per_actor)
        return max(1, (os.cpu_count() or 1) // self.opts.actors) if self.local else 1

    def cache_dir(self) -> str | None:
        # an explicit cache folder (shared storage) follows the job; otherwise each node uses its own
        return os.environ.get("SELFALIGN_CACHE_DIR") or None

    # -- a per-record stage: a dataset map over an actor pool -------------------------------------
    def _map(self, stage: Any, backend: Any, records: Iterable[Any], prepared: dict[str, Any],
             report: Any = None) -> Iterator[Any]:
        """Run `stage` over `records` on the actor pool; yield kept records (dicts) and `Dropped` ones.

        Each record sent comes back exactly once (kept, or dropped with its reason); the runner that consumes
        this stream counts it, as for a local run. The counters a stage keeps in its report's extra (critique:
        revised, no_violation) come back with each chunk and are summed into `report`'s, once a chunk; so do
        the tokens the chunk spent (`report.tokens`).
        """
        ray = self.ray
        from selfalign.records import Dropped

        # reads the input on the driver (bad lines, --shard and resume happen there) and keeps it as JSON
        # text only: a few hundred bytes a record, where the parsed records would take several times that
        lines = [r.model_dump_json() for r in records]
        total = len(lines)
        if not total:
            return
        size = getattr(stage, "batch_size", None) or min(chunk_size(backend.name), math.ceil(total / self.opts.actors))
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
                fn_constructor_kwargs=dict(stage=type(stage), config=stage.model_dump(), prepared=prepared,
                                           backend=backend.model_dump(), cache_dir=self.cache_dir(),
                                           threads=self.actor_threads()),
                max_restarts=ACTOR_RESTARTS, **remote_args)
        seen: set[int] = set()
        counted: set[int] = set()  # chunks whose counters were summed
        for row in _plain_errors(ray, out.iter_rows()):
            kind, seq = str(row["kind"]), int(row["seq"])
            if kind == "error":
                raise RuntimeError(str(row["json"]))
            if kind == "extra":
                if report is not None and seq not in counted:
                    counted.add(seq)
                    for key, n in json.loads(str(row["json"])).items():
                        if key == "tokens":
                            report.tokens.add(n)
                        else:
                            report.extra[key] = report.extra.get(key, 0) + n
                continue
            if seq in seen:  # a chunk retried after an actor died: its records were already written
                continue
            seen.add(seq)
            obj = json.loads(str(row["json"]))
            yield Dropped.model_validate(obj) if kind == "dropped" else obj  # counted by the runner
        if len(seen) != total:
            raise RuntimeError(f"{total - len(seen)} of {total} records did not come back from the Ray actors")


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
        raise RuntimeError(f"a Ray actor failed: {remote_error(e)}") from None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def chunk_size(backend: str) -> int:
    """The backend's own prompts per call, without building it."""
    from selfalign.backends import backend_class

    return int(backend_class(backend).chunk_size)


