"""`make bench-ray`: the same `principle` run locally and on a local Ray instance with 1 and 2 actors.

Every run is the CLI a user would type (a fresh process: model load, Ray start and stop included), on the
embedded model, same prompts, seed, batches (--batch-size) and --no-cache, measured side by side in one
run and printed as ratios to the local run. Ray's fixed cost is measured apart, on the scripted backend
(no model work): the wall time of a 2-prompt run on Ray minus the same run locally, with ray.init's share
read from the run's --report. The pipeline's own ceiling (driver, dataset, actors; no model) is the same
scripted run over --ceiling-prompts prompts. `dedup` is measured the same way: --dedup-texts texts (10% planted
near duplicates) deduplicated locally and with its embeddings on 2 actors, --no-cache, same records out.

    python benchmarks/ray_bench.py [--prompts 16] [--max-tokens 48] [--batch-size 8] [--repeats 1]
                                   [--json benchmarks/out/ray.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "exemplars" / "seed_tasks.jsonl"


def selfalign(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfalign", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"selfalign {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return took


def lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines()) if path.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8, help="prompts per backend call (and per Ray chunk)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each variant, interleaved; medians reported")
    ap.add_argument("--ceiling-prompts", type=int, default=4000, help="scripted prompts for the pipeline ceiling")
    ap.add_argument("--dedup-texts", type=int, default=4000, help="texts for the dedup comparison (0: skip)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "ray.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="selfalign-ray-bench-"))
    src = work / "prompts.jsonl"
    rows = [json.loads(line) for line in SEEDS.read_text().splitlines() if line.strip()]
    src.write_text("".join(json.dumps(r) + "\n" for r in (rows * 4)[: args.prompts]))
    env = {**os.environ}
    load_before = os.getloadavg()

    # Ray's fixed cost: the scripted backend answers at once, so the difference is Ray (start, actors, stop)
    rules = work / "rules.jsonl"
    rules.write_text(json.dumps({"text": " By 2 (informative).\n\nSage: " + "An answer. " * 20}) + "\n")
    tiny = work / "tiny.jsonl"
    tiny.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    scripted = [str(tiny), "--backend", "scripted", "--model", str(rules), "--no-cache", "-q"]
    fixed_local, fixed_ray, init_s = [], [], []
    for i in range(max(2, args.repeats)):
        fixed_local.append(selfalign(["principle", *scripted, "-o", str(work / f"fl{i}.jsonl")], env))
        fixed_ray.append(selfalign(["principle", *scripted, "-o", str(work / f"fr{i}.jsonl"), "--executor", "ray",
                                    "--report", str(work / f"fr{i}.json")], env))
        init_s.append(json.loads((work / f"fr{i}.json").read_text())["ray_start_s"])

    # the pipeline's ceiling: records/s with a backend that costs nothing
    many = work / "many.jsonl"
    many.write_text("".join(json.dumps({"prompt": f"Question {i}: {rows[i % len(rows)]['prompt']}"}) + "\n"
                            for i in range(args.ceiling_prompts)))
    ceiling = {}
    for name, extra in (("local", []), ("ray2", ["--executor", "ray", "--ray-actors", "2"])):
        took = selfalign(["principle", str(many), "--backend", "scripted", "--model", str(rules), "--no-cache", "-q",
                          "-o", str(work / f"many-{name}.jsonl"), *extra], env)
        ceiling[name] = {"s": round(took, 2), "records_per_s": round(args.ceiling_prompts / took)}

    common = ["principle", str(src), "--max-tokens", str(args.max_tokens), "--seed", "0", "--no-cache", "--keep",
              "all", "--batch-size", str(args.batch_size), "-q"]
    variants = {"local": [], "ray1": ["--executor", "ray", "--ray-actors", "1"],
                "ray2": ["--executor", "ray", "--ray-actors", "2"]}
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, list[str]] = {}
    selfalign(["principle", str(tiny), "--max-tokens", "4", "--no-cache", "-q"], env)  # converts the model once if needed
    for i in range(args.repeats):
        for name, extra in variants.items():
            out, dropped = work / f"{name}-{i}.jsonl", work / f"{name}-{i}-d.jsonl"
            print(f"running {name} ({i + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
            times[name].append(selfalign([*common, *extra, "-o", str(out), "--dropped", str(dropped)], env))
            outputs.setdefault(name, lines(out) + lines(dropped))
    dedup_s: dict[str, float] = {}
    dedup_same = None
    if args.dedup_texts:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from texts import with_planted

        texts, _ = with_planted(args.dedup_texts, 0.1, seed=0)
        corpus = work / "dedup.jsonl"
        corpus.write_text("".join(json.dumps({"id": f"t{i}", "prompt": t}) + "\n" for i, t in enumerate(texts)))
        for name, extra in (("local", []), ("ray2", ["--executor", "ray", "--ray-actors", "2"])):
            print(f"running dedup {name} ...", file=sys.stderr, flush=True)
            dedup_s[name] = round(selfalign(["dedup", str(corpus), "--no-cache", "-q", "-o", str(work / f"dd-{name}.jsonl"),
                                             *extra], env), 2)
        dedup_same = lines(work / "dd-local.jsonl") == lines(work / "dd-ray2.jsonl")
    load_after = os.getloadavg()

    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    result: dict[str, Any] = {
        "prompts": args.prompts, "max_tokens": args.max_tokens, "batch_size": args.batch_size,
        "repeats": args.repeats, "cpus": os.cpu_count(), "wall_s": med, "runs_s": times,
        "ratio_ray1_local": round(med["ray1"] / med["local"], 2),
        "ratio_ray2_local": round(med["ray2"] / med["local"], 2),
        "same_records": {k: outputs[k] == outputs["local"] for k in ("ray1", "ray2")},
        "ray_fixed_overhead_s": round(statistics.median(fixed_ray) - statistics.median(fixed_local), 2),
        "ray_init_s": round(statistics.median(init_s), 2),
        "pipeline_ceiling": {"prompts": args.ceiling_prompts, **ceiling},
        "dedup": {"texts": args.dedup_texts, "wall_s": dedup_s, "same_records": dedup_same,
                  "ratio_ray2_local": round(dedup_s["ray2"] / dedup_s["local"], 2) if dedup_s else None},
        "scripted_2_prompts_s": {"local": round(statistics.median(fixed_local), 2),
                                 "ray1": round(statistics.median(fixed_ray), 2)},
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
    }
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"principle: local vs local Ray ({args.prompts} prompts x {args.max_tokens} tokens, embedded model, "
                    f"{os.cpu_count()} CPUs)")
    for col in ("run", "wall s", "vs local", "same records as local"):
        t.add_column(col)
    t.add_row("local", str(med["local"]), "1.00x", "")
    t.add_row("ray, 1 actor", str(med["ray1"]), f"{result['ratio_ray1_local']}x", str(result["same_records"]["ray1"]))
    t.add_row("ray, 2 actors", str(med["ray2"]), f"{result['ratio_ray2_local']}x", str(result["same_records"]["ray2"]))
    Console(width=140, stderr=False).print(t)
    print(f"Ray's fixed cost per command: {result['ray_fixed_overhead_s']} s (of which ray.init {result['ray_init_s']} s); "
          f"load average before {result['loadavg_before'][0]}, after {result['loadavg_after'][0]}")
    print(f"pipeline ceiling (scripted backend, {args.ceiling_prompts} prompts): local {ceiling['local']['records_per_s']}"
          f" records/s, ray 2 actors {ceiling['ray2']['records_per_s']} records/s (fixed cost included)")
    if dedup_s:
        print(f"dedup, {args.dedup_texts} texts: local {dedup_s['local']} s, ray 2 actors {dedup_s['ray2']} s "
              f"({result['dedup']['ratio_ray2_local']}x), same records: {dedup_same}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
