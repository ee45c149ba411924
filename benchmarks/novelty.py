"""Self-instruct novelty filter: embeddings (selfalign) vs ROUGE-L (the original), on the same candidates.

Both filters walk the candidates in order against a growing pool (seeds + accepted). The embedding filter
is selfalign's `Novelty` (embed in batches, tiled search, pool grown incrementally). The ROUGE-L filter is
the original's rule (reject when ROUGE-L F > 0.7 against any pool item) with the `rouge-score` package;
it is quadratic, so past `--rouge-budget` seconds its total time is estimated from its measured cost per
pair and the number of pairs the full run would score (marked "est."). Near-duplicate catches are compared
on the prefix that both filters processed.

    python benchmarks/novelty.py --sizes 2000 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texts import with_planted  # noqa: E402


def embedding_filter(seeds, cands, threshold):
    from selfalign.text.embeddings import Embedder
    from selfalign.stages.generate import Novelty

    emb = Embedder()
    emb.encode(["warm up"])
    t = time.perf_counter()
    nov = Novelty(seeds, threshold, emb)
    rejected = []
    pool_sizes = []
    for start in range(0, len(cands), 64):
        for r in nov.check(cands[start:start + 64]):
            pool_sizes.append(len(nov.seen))  # the pool a ROUGE-L run would compare this candidate against
            rejected.append(r is not None)
    return time.perf_counter() - t, rejected, pool_sizes, emb


def sweep(emb, seeds, cands, planted, thresholds):
    """Recall of planted near duplicates and share of other texts rejected, per threshold (embeddings reused)."""
    from selfalign.text.embeddings import EmbeddingIndex

    s_vec, c_vec = emb.encode(seeds), emb.encode(cands)
    rows = []
    for th in thresholds:
        index = EmbeddingIndex(emb.dim)
        index.add(s_vec)
        rej = []
        for start in range(0, len(cands), 64):
            rej += [v is not None for v in index.add_novel(c_vec[start:start + 64], th)]
        p = [rej[i] for i in range(len(cands)) if i in planted]
        d = [rej[i] for i in range(len(cands)) if i not in planted]
        rows.append({"threshold": th, "recall": round(sum(p) / max(len(p), 1), 3),
                     "other_rejected": round(sum(d) / max(len(d), 1), 3)})
    return rows


def rouge_filter(seeds, cands, threshold, budget):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = list(seeds)
    rejected = []
    pairs = 0
    t = time.perf_counter()
    for c in cands:
        if time.perf_counter() - t > budget:
            break
        bad = False
        for p in pool:
            pairs += 1
            if scorer.score(c, p)["rougeL"].fmeasure > threshold:
                bad = True
                break
        rejected.append(bad)
        if not bad:
            pool.append(c)
    return time.perf_counter() - t, rejected, pairs


def run(n, args):
    texts, planted = with_planted(n + 50, share=0.1, seed=n)
    seeds, cands = texts[:50], texts[50:]
    planted = {i - 50 for i in planted if i >= 50}
    e_time, e_rej, pool_sizes, emb = embedding_filter(seeds, cands, args.threshold)
    r_time, r_rej, pairs = rouge_filter(seeds, cands, 0.7, args.rouge_budget)
    done = len(r_rej)
    full_pairs = sum(pool_sizes[:len(cands)])  # upper bound: the pool the full run compares against
    r_total = r_time if done == len(cands) else r_time / max(pairs, 1) * full_pairs
    def catches(rej, upto):
        p = [i for i in range(upto) if i in planted]
        d = [i for i in range(upto) if i not in planted]
        return (sum(rej[i] for i in p) / max(len(p), 1), sum(rej[i] for i in d) / max(len(d), 1))
    e_recall, e_false = catches(e_rej, done)
    r_recall, r_false = catches(r_rej, done)
    swept = sweep(emb, seeds, cands, planted, args.sweep) if args.sweep and n == min(args.sizes) else []
    return {"sweep": swept, "candidates": len(cands), "planted": len(planted), "embedding_s": round(e_time, 2),
            "rouge_s": round(r_total, 1), "rouge_estimated": done < len(cands), "rouge_done": done,
            "speedup": round(r_total / e_time, 1),
            "compared_on": done, "embedding_recall": round(e_recall, 3), "embedding_false_reject": round(e_false, 3),
            "rouge_recall": round(r_recall, 3), "rouge_false_reject": round(r_false, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--threshold", type=float, default=0.85)
    ap.add_argument("--rouge-budget", type=float, default=60.0, help="seconds of ROUGE-L before estimating")
    ap.add_argument("--sweep", type=float, nargs="*", default=[0.75, 0.8, 0.85, 0.9, 0.95],
                    help="thresholds to sweep on the smallest size")
    ap.add_argument("--json", default="benchmarks/out/novelty.json")
    args = ap.parse_args()
    rows = [run(n, args) for n in args.sizes]
    from rich.console import Console
    from rich.table import Table

    t = Table(title="novelty filter: embeddings (selfalign) vs ROUGE-L > 0.7 (original)")
    for col in ("candidates", "embedding s", "ROUGE-L s", "speed-up", "compared on", "emb recall / false",
                "ROUGE recall / false"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["candidates"]), f"{r['embedding_s']:.1f}",
                  f"{r['rouge_s']:.0f}{' est.' if r['rouge_estimated'] else ''}", f"{r['speedup']:.0f}x",
                  str(r["compared_on"]), f"{r['embedding_recall']:.2f} / {r['embedding_false_reject']:.3f}",
                  f"{r['rouge_recall']:.2f} / {r['rouge_false_reject']:.3f}")
    console = Console(width=150)
    console.print(t)
    for r in rows:
        if r["sweep"]:
            s = Table(title=f"embedding threshold sweep ({r['candidates']} candidates, {r['planted']} planted)")
            for col in ("cosine threshold", "planted caught", "other texts rejected"):
                s.add_column(col, justify="right")
            for w in r["sweep"]:
                s.add_row(f"{w['threshold']:.2f}", f"{w['recall']:.3f}", f"{w['other_rejected']:.3f}")
            console.print(s)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
