"""Why selfalign sets OMP_WAIT_POLICY=PASSIVE and gives torch only the free cores: torch on a busy CPU.

Times one of the embedded model's linear layers (576 -> 1536, a batch of 8 rows of one token, fp32: what each
decoding step does 210 times) in a fresh process per setting, side by side in one run, on an idle machine and
with one busy process per spare core beside it: OpenMP's default wait policy with torch's threads (one a core),
PASSIVE with them, and PASSIVE with one thread. OpenMP's default lets a waiting thread spin; when the core it
waits for is taken by another process, every parallel region waits for a time slice.

    python benchmarks/threads.py [--calls 400] [--repeat 3]

Prints ms per call (the median of --repeat fresh processes) per setting and load, and each as a share of the default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import time, torch
if {threads}:
    torch.set_num_threads({threads})
w = torch.nn.Linear(576, 1536)
x = torch.randn(8, 1, 576)
for _ in range(20):
    w(x)
t = time.perf_counter()
for _ in range({calls}):
    w(x)
print((time.perf_counter() - t) / {calls} * 1000)
"""


def one(policy: str | None, calls: int, threads: int = 0) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD.format(calls=calls, threads=threads)], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; torch threads: {cores} (torch's default); ms per call, median of {args.repeat}")
    for busy in (0, max(1, cores - 1)):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            row = {}
            for policy, threads in ((None, 0), ("PASSIVE", 0), ("PASSIVE", 1)):
                row[policy, threads] = statistics.median(one(policy, args.calls, threads) for _ in range(args.repeat))
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        base = row[None, 0]
        print(f"busy processes beside it: {busy}: default {base:.3f} ms, PASSIVE {row['PASSIVE', 0]:.3f} ms "
              f"({row['PASSIVE', 0] / base:.2f}x), PASSIVE with 1 thread {row['PASSIVE', 1]:.3f} ms "
              f"({row['PASSIVE', 1] / base:.2f}x)")


if __name__ == "__main__":
    main()
