"""How many answers a second the principle stage's quality gates let through, and where their time goes.

The stage runs in this process on the scripted backend (no generation cost: it replays a pool of realistic
completions, by default the labelled set in benchmarks/data/quality, good and bad, each query once), with the
real gates: the surface rules (the answer split and selfalign/gates/text.py), the language gate (py3langid) and
the relevance gates (restates_question / off_topic: all-MiniLM-L6-v2 embeddings). The models are loaded and
warmed up on other texts (the held-out set) before the clock starts. Prints answers per second (wall and CPU
time), and the share of the time in each part, as a table; `--json OUT` writes the figures.

    python benchmarks/gates.py [--data DIR] [--label good|bad] [--passes N] [--batch-size B] [--json OUT]

A pass is one run of the stage over the whole pool with fresh caches; the figures are the median pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PARTS = ["generation (scripted)", "surface rules", "language gate", "relevance gates (no embedding)", "embedding",
         "stage, rest"]


def load(data: Path, label: str | None) -> list[dict]:
    items = [json.loads(line) for f in sorted(data.glob("*.jsonl")) for line in f.open(encoding="utf-8")
             if line.strip()]
    return [i for i in items if label is None or i["label"] == label]


class Clock:
    """Wall and CPU seconds per part, by wrapping the methods that do each part."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sizes: dict[str, int] = defaultdict(int)

    def wrap(self, obj: Any, name: str, part: str) -> None:
        fn = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[part] += time.perf_counter() - w
                self.cpu[part] += time.process_time() - c
                self.calls[part] += 1
                if args and isinstance(args[0], list):
                    self.sizes[part] += len(args[0])

        setattr(obj, name, timed)


def one_pass(items: list[dict], meaning: Any, batch_size: int | None) -> dict:
    from selfalign import assets
    from selfalign.backends.scripted import ScriptedBackend
    from selfalign.records import Dropped, PromptRecord
    from selfalign.report.counts import Report
    from selfalign.stages.principle import Principle, PrincipleStage

    rules = [{"text": i["completion"], "finish_reason": i["finish_reason"]} for i in items]
    backend = ScriptedBackend(rules=rules)  # no `match`: the rules answer the records in turn, in order
    stage = PrincipleStage(backend, assets.load_principles(), assets.load_exemplars(),
                           Principle(batch_size=batch_size), Report("principle"), meaning=meaning)
    forget = getattr(meaning, "forget", None)
    if forget:
        forget()  # a fresh cache: each pass sees every text for the first time
    clock = Clock()
    clock.wrap(backend, "generate", "generation (scripted)")
    clock.wrap(stage, "judge", "surface rules")
    clock.wrap(meaning, "wrong_language", "language gate")
    clock.wrap(meaning, "embed", "embedding")
    clock.wrap(meaning, "apply", "meaning gates")
    records = [PromptRecord(id=i["id"], prompt=i["query"], question_type=i.get("question_type")) for i in items]
    w, c = time.perf_counter(), time.process_time()
    outs = list(stage.run(records))
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    for attr in ("wrong_language", "embed", "apply"):
        vars(meaning).pop(attr, None)  # unwrap: the next pass wraps the class's methods again
    drops: dict[str, int] = defaultdict(int)
    for o in outs:
        if isinstance(o, Dropped):
            drops[o.drop_reason] += 1
    res: dict[str, Any] = {"answers": len(outs), "wall_s": wall, "cpu_s": cpu, "drops": dict(drops),
                           "kept": sum(not isinstance(o, Dropped) for o in outs), "parts": {},
                           "embedded_texts": clock.sizes["embedding"], "embed_calls": clock.calls["embedding"]}
    for table, total in ((clock.wall, wall), (clock.cpu, cpu)):
        parts = {p: table[p] for p in PARTS[:3]}
        parts["embedding"] = table["embedding"]
        parts["relevance gates (no embedding)"] = table["meaning gates"] - table["language gate"] - table["embedding"]
        parts["stage, rest"] = total - sum(parts.values())
        for p, v in parts.items():
            res["parts"].setdefault(p, {})["wall_s" if table is clock.wall else "cpu_s"] = v
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE / "data" / "quality"), help="folder of labelled *.jsonl (the pool)")
    ap.add_argument("--label", choices=["good", "bad"], help="only these completions (good: every answer reaches "
                    "the meaning gates)")
    ap.add_argument("--passes", type=int, default=3, help="timed passes over the pool (the median is printed)")
    ap.add_argument("--batch-size", type=int, help="prompts per backend call (default: the scripted backend's 16)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    from selfalign.gates.meaning import MeaningGates

    items = load(Path(args.data), args.label)
    load0 = os.getloadavg()
    meaning = MeaningGates()
    warm = load(HERE / "data" / "quality-holdout", None)[:48]  # other texts: loads the models, warms torch
    one_pass(warm, meaning, args.batch_size)
    passes = [one_pass(items, meaning, args.batch_size) for _ in range(max(1, args.passes))]
    load1 = os.getloadavg()
    med = sorted(passes, key=lambda p: p["wall_s"])[len(passes) // 2]
    import torch

    res = {**med, "answers_per_s": med["answers"] / med["wall_s"], "cpu_s_per_answer": med["cpu_s"] / med["answers"],
           "pass_wall_s": [p["wall_s"] for p in passes], "pool": os.path.relpath(args.data, HERE.parent),
           "label": args.label or "all", "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
           "cuda": torch.cuda.is_available(), "load_before": load0, "load_after": load1}
    embedder = getattr(meaning, "_embedder", None)
    if embedder is not None:
        res["embedding_device"] = str(getattr(embedder.st, "device", "?"))
        res["embedding_max_tokens"] = getattr(embedder.st, "max_seq_length", None)

    print(f"bench-gates: {res['answers']} answers ({res['label']} of {res['pool']}; kept {res['kept']}), "
          f"{len(passes)} passes, median shown; torch threads {res['torch_threads']} of {res['cores']} cores, "
          f"embedding on {res.get('embedding_device', '-')}; load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    print(f"answers per second: {res['answers_per_s']:.1f} (wall {med['wall_s']:.2f} s; passes "
          + ", ".join(f"{w:.2f}" for w in res["pass_wall_s"]) + f" s); CPU seconds per answer "
          f"{res['cpu_s_per_answer']:.4f}; texts embedded {med['embedded_texts']} in {med['embed_calls']} calls")
    print(f"\n{'part':<32} {'wall s':>8} {'share':>6} {'ms/answer':>9} {'CPU s':>8} {'share':>6}")
    for p in PARTS:
        v = med["parts"][p]
        print(f"{p:<32} {v['wall_s']:>8.3f} {v['wall_s'] / med['wall_s']:>6.1%} "
              f"{1000 * v['wall_s'] / med['answers']:>9.2f} {v['cpu_s']:>8.3f} {v['cpu_s'] / max(med['cpu_s'], 1e-9):>6.1%}")
    print(f"{'total':<32} {med['wall_s']:>8.3f} {1:>6.1%} {1000 * med['wall_s'] / med['answers']:>9.2f} "
          f"{med['cpu_s']:>8.3f} {1:>6.1%}")
    print("drops: " + ", ".join(f"{k} {v}" for k, v in sorted(med["drops"].items(), key=lambda kv: -kv[1])))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
