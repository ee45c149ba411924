"""How often `selfalign judge` picks the better answer of a labelled pair.

The labelled set (benchmarks/data/judge/pairs.jsonl, written for selfalign) holds 40 pairs: a prompt, a clearly
better and a clearly worse answer by one principle of the default set, and sometimes a trap: the worse answer
is the longer one (`longer_worse`), the better one is a polite refusal of a harmful request (`refusal`), the
worse one answers a different question (`off_topic`), or the worse one refuses a harmless request
(`needless_refusal`). Each pair is judged by its own principle (or `--principle all`: the whole set), both
orders scored as the stage does; the better answer is the revision in half of the pairs and the original in the
other half. Prints agreement (pairs where the judge chose the labelled better answer; a tie counts as a miss)
overall, per principle and per trap, what either order alone would have agreed (the position bias the two
orders cancel), the mean bias towards "A" in log-odds, how much probability the two choices held
(`choice_mass`: low means the model hardly follows the format), agreement by margin bucket (`by_margin`: where
`export --min-margin` belongs), and two baselines: always the longer answer,
and chance (50%).

    python benchmarks/judge.py                                  # the embedded model, and vLLM when installed
    python benchmarks/judge.py --backends transformers --model /path/to/Qwen2.5-7B-Instruct
    python benchmarks/judge.py --backends vllm --model /path/to/model      # on a GPU
    python benchmarks/judge.py --base-url http://127.0.0.1:8000/v1         # any OpenAI-compatible server
    python benchmarks/judge.py --method vote --samples 5                   # the sampled vote instead

A 135M model (the embedded default) is a weak judge; the numbers it gets are reported as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data" / "judge" / "pairs.jsonl"


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def records(pairs: list[dict]) -> list[dict]:
    """One record a pair; the better answer is the revision for even rows and the original for odd ones."""
    out = []
    for i, p in enumerate(pairs):
        first, second = (p["worse"], p["better"]) if i % 2 == 0 else (p["better"], p["worse"])
        out.append({"id": p["id"], "prompt": p["prompt"], "response": first, "revision": second,
                    "expected": "revision" if i % 2 == 0 else "response"})
    return out


def run_judge(backend: Any, pairs: list[dict], principle: str, method: str, samples: int, seed: int) -> dict[str, dict]:
    """The `judge` dict of each pair id, judged by its own principle (or by `principle` for all)."""
    from selfalign import assets
    from selfalign.records import Dropped
    from selfalign.stages.judge import Judge, judge

    principles = assets.load_principles()
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec, p in zip(records(pairs), pairs, strict=True):
        groups[p["principle"] if principle == "own" else principle].append(rec)
    out: dict[str, dict] = {}
    for pid, recs in groups.items():
        vote = {} if method == "logprobs" else {"samples": samples}  # (logprobs refuses a vote's options)
        cfg = Judge(principle=pid, method=method, seed=seed, **vote)
        for r in judge(recs, backend, cfg, principles):
            if isinstance(r, Dropped):
                out[r.id] = {"dropped": r.drop_reason, "detail": r.detail}
            else:
                out[r.id] = {**r.judge, "expected": r.model_dump()["expected"]}
    return out


def summarise(pairs: list[dict], verdicts: dict[str, dict]) -> dict[str, Any]:
    def share(xs: list[bool]) -> float | None:
        return round(sum(xs) / len(xs), 3) if xs else None

    hit = {p["id"]: "chosen" in verdicts[p["id"]] and verdicts[p["id"]]["chosen"] == verdicts[p["id"]]["expected"]
           for p in pairs}
    by_principle: dict[str, list[bool]] = defaultdict(list)
    by_trap: dict[str, list[bool]] = defaultdict(list)
    for p in pairs:
        by_principle[p["principle"]].append(hit[p["id"]])
        by_trap[p["trap"] or "none"].append(hit[p["id"]])
    judged = [v for v in verdicts.values() if "chosen" in v]
    numeric = all(k.isdigit() for k in by_principle)
    summary: dict[str, Any] = {
        "pairs": len(pairs), "judged": len(judged), "agreement": share(list(hit.values())),
        "by_principle": {k: share(v) for k, v in sorted(by_principle.items(),
                                                        key=lambda kv: int(kv[0]) if numeric else kv[0])},
        "by_trap": {k: share(v) for k, v in sorted(by_trap.items())},
        "dropped": {k: v["dropped"] for k, v in verdicts.items() if "dropped" in v},
    }
    orders = [(v, v["orders"]) for v in judged if "orders" in v]
    if orders:  # logprobs: what either order alone would say, and the bias towards position A
        sign = {"revision": 1, "response": -1}
        summary["order1_only"] = share([(d[0] > 0) == (sign[v["expected"]] > 0) for v, d in orders])
        summary["order2_only"] = share([(d[1] > 0) == (sign[v["expected"]] > 0) for v, d in orders])
        summary["a_bias_logodds"] = round(sum((d[1] - d[0]) / 2 for _, d in orders) / len(orders), 3)
        summary["choice_mass"] = round(sum(v["choice_mass"] for v, _ in orders) / len(orders), 3)
        summary["mean_margin"] = round(sum(v["margin"] for v, _ in orders) / len(orders), 3)
    summary["by_margin"] = by_margin(judged)
    votes = [v for v in judged if "votes" in v]
    if votes:
        summary["invalid_votes"] = round(sum(v["votes"]["invalid"] for v in votes) / sum(v["n"] for v in votes), 3)
        summary["mean_confidence"] = round(sum(v["confidence"] for v in votes) / len(votes), 3)
    return summary


MARGIN_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def by_margin(judged: list[dict]) -> dict[str, dict[str, Any]]:
    """Agreement by margin bucket (pairs with edge <= margin < next edge) and at or above each edge: where the
    judge stops agreeing with the labels no better than chance is where `export --min-margin` belongs."""
    out: dict[str, dict[str, Any]] = {}
    for lo, hi in zip(MARGIN_EDGES, (*MARGIN_EDGES[1:], float("inf")), strict=True):
        inside = [v["chosen"] == v["expected"] for v in judged if lo <= v["margin"] < hi]
        above = [v["chosen"] == v["expected"] for v in judged if v["margin"] >= lo]
        if above:
            out[f"{lo:g}"] = {"n": len(inside), "agree": sum(inside), "n_above": len(above), "agree_above": sum(above)}
    return out


def baselines(pairs: list[dict]) -> dict[str, float]:
    longer = [len(p["better"]) > len(p["worse"]) for p in pairs]
    return {"always_longer": round(sum(longer) / len(pairs), 3), "chance": 0.5}


def show(name: str, s: dict[str, Any], seconds: float) -> None:
    print(f"\n== {name}: agreement {s['agreement']:.1%} on {s['pairs']} pairs ({s['judged']} judged, {seconds:.0f} s)")
    if "order1_only" in s:
        print(f"   one order alone: {s['order1_only']:.1%} (revision as B) / {s['order2_only']:.1%} (revision as A); "
              f"bias towards A: {s['a_bias_logodds']:+.2f} log-odds; choice mass {s['choice_mass']:.2f}; "
              f"mean margin {s['mean_margin']:.2f}")
    if "invalid_votes" in s:
        print(f"   votes that were neither A nor B: {s['invalid_votes']:.1%}; "
              f"mean confidence {s['mean_confidence']:.2f}")
    if s.get("by_margin"):
        print("   by margin:    " + ", ".join(
            f">={k}: {b['agree']}/{b['n']} (all >={k}: {b['agree_above']}/{b['n_above']})" for k, b in s["by_margin"].items()))
    print("   by principle: " + ", ".join(f"{k}: {v:.0%}" for k, v in s["by_principle"].items()))
    print("   by trap:      " + ", ".join(f"{k}: {v:.0%}" for k, v in s["by_trap"].items()))
    if s["dropped"]:
        print(f"   dropped: {s['dropped']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default=None,
                    help="comma-separated: transformers, vllm (default: transformers, and vllm when installed; "
                         "none with --base-url)")
    ap.add_argument("--model", default=None, help="a local model folder (default: the embedded SmolLM2-135M)")
    ap.add_argument("--base-url", default=None, help="also judge through the openai backend against this server")
    ap.add_argument("--server-model", default=None, help="the served model's name (default: the server's first)")
    ap.add_argument("--principle", default="own", help="'own' (each pair's principle) or 'all' (the whole set)")
    ap.add_argument("--method", default="auto", choices=["auto", "logprobs", "vote"])
    ap.add_argument("--samples", type=int, default=5, help="votes per order for the vote")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-model-len", type=int, default=4096, help="vLLM's context (bounds its memory)")
    ap.add_argument("--json", default=None, help="write the summaries and every verdict here")
    ap.add_argument("--show", action="store_true", help="print every pair's verdict")
    args = ap.parse_args()

    from selfalign.backends import load_backend

    pairs = load()
    if args.backends is None:
        names = [] if args.base_url else ["transformers"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    else:
        names = [n for n in args.backends.split(",") if n]
    runs: list[tuple[str, str, dict]] = [(n, n, {"model": args.model}) for n in names]
    if args.base_url:
        runs.append((f"openai @ {args.base_url}", "openai", {"base_url": args.base_url, "model": args.server_model}))
    print(f"{len(pairs)} labelled pairs; baselines: always the longer answer "
          f"{baselines(pairs)['always_longer']:.1%}, chance 50%")
    report: dict[str, Any] = {"baselines": baselines(pairs), "runs": {}}
    for label, name, options in runs:
        if name == "vllm":
            options["max_model_len"] = args.max_model_len
        backend = load_backend(name, **{k: v for k, v in options.items() if v is not None})
        try:
            t0 = time.perf_counter()
            verdicts = run_judge(backend, pairs, args.principle, args.method, args.samples, args.seed)
            seconds = time.perf_counter() - t0
        finally:
            backend.close()
        s = summarise(pairs, verdicts)
        show(f"{label} ({backend.model})", s, seconds)
        if args.show:
            for p in pairs:
                v = verdicts[p["id"]]
                ok = "ok  " if "chosen" in v and v["chosen"] == v["expected"] else "MISS"
                score = v.get("score", float("nan"))
                print(f"   {ok} {p['id']} p{p['principle']:>2} {p['trap'] or '':16} score {score:+.3f} "
                      f"{p['prompt'][:60]}")
        report["runs"][label] = {"model": backend.model, "seconds": round(seconds, 1), "summary": s,
                                 "verdicts": verdicts}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
