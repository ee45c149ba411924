"""How many threads torch uses on a CPU: the cores that other processes leave free.

torch starts one thread per core. When another process keeps a core busy, each parallel operation waits for the
thread that shares that core with it, and decoding (thousands of small operations a token) slows many times:
on 2 cores beside other work, 8 prompts x 48 tokens behind the principle prompt took 27-42 s with one thread and
74-200 s with two (benchmarks/threads.py measures it side by side). So, the first time selfalign starts torch in a
process, it gives torch the cores the 1-minute load average says are free, at least one.

`SELFALIGN_THREADS=N` sets the number instead; with `OMP_NUM_THREADS` set, or a count already set in the process
(`torch.set_num_threads`, anything but torch's default of one a core), the thread count is left alone.
"""

from __future__ import annotations

import os

_decided: int | None = None
ONEDNN_KERNELS = 8


def free_cores(cores: int, load: float) -> int:
    """Cores not taken by the load (the run queue's 1-minute average), at least 1 and at most `cores`."""
    return max(1, min(cores, round(cores - load)))


def use_free_cores() -> int | None:
    """Set torch's thread count once per process (see the module docstring); returns it, or None where the user's
    OMP_NUM_THREADS decides."""
    global _decided
    if _decided is not None:
        return _decided
    # oneDNN keeps a compiled kernel per input shape (1,024 by default); embedding batches of varying lengths
    # made the principle stage grow by ~100 KB a record (benchmarks/README.md, "scale.py"): keep a few
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNELS))
    given = os.environ.get("SELFALIGN_THREADS", "").strip()
    if not given and os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        n = max(1, int(given)) if given else free_cores(cores, os.getloadavg()[0])
    except (ValueError, OSError):
        n = cores
    import torch

    if not given and torch.get_num_threads() != cores:  # set already by the program that uses selfalign
        return None
    torch.set_num_threads(n)
    _decided = n
    return n
