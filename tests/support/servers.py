"""Real servers on the embedded model, for the tests and benchmarks that talk to one over HTTP.

`serving("vllm")` runs vLLM's OpenAI server on the converted model folder (CPU, float32); `serving("llamacpp")`
runs llama-cpp-python's server on the model's GGUF. Each is ready when it lists its model (polled: a
condition, not a fixed wait), and is stopped with its whole process group on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ServerFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(kind: str, port: int, context: int, threads: int | None) -> tuple[list[str], dict[str, str]]:
    from selfalign.io.paths import gguf_path, model_dir

    if kind == "llamacpp":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", "smollm2",
               "--n_ctx", str(context), "--host", "127.0.0.1", "--port", str(port)]
        return cmd + (["--n_threads", str(threads)] if threads else []), dict(os.environ)
    if kind == "vllm":
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir()),
               "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(context), "--dtype", "float32"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4"}  # else the CPU worker asks for 92% of RAM
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        return cmd, env
    raise ValueError(f"unknown server kind {kind!r}")


@contextmanager
def serving(kind: str, context: int = 4096, threads: int | None = None, timeout: float = 900) -> Iterator[str]:
    """The server's /v1 URL while it runs; ServerFailed (naming its log) if it exits or is not ready in time."""
    import httpx

    port = free_port()
    cmd, env = command(kind, port, context, threads)
    log_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"selfalign-{kind}-server-{port}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout
            while True:  # ready when it lists its model
                if proc.poll() is not None:
                    raise ServerFailed(f"the {kind} server exited with {proc.returncode}; see {log_path}")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerFailed(f"the {kind} server was not ready in {timeout:g} s; see {log_path}")
                time.sleep(0.5)  # poll interval
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
