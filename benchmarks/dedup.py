"""`selfalign dedup` at scale: total time vs embedding alone, memory, the all-pairs/cluster switch point,
planted recall and precision per threshold, and ROUGE-L pairwise dedup for comparison. One run, side by side.

Texts: real docstring sentences of the installed packages, 10% of them planted near duplicates of an
earlier one (edits and paraphrase-like rewrites: benchmarks/texts.py). Nothing is downloaded.

    python benchmarks/dedup.py                       # 10k, 50k, 100k (~25 min on 2 cores)
    python benchmarks/dedup.py --sizes 2000 10000    # quick
    python benchmarks/dedup.py --memory 10000 30000 100000   # peak memory of the stage, fake embedder (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texts import near_duplicate, with_planted  # noqa: E402

SELFALIGN = [sys.executable, "-m", "selfalign"]


def run_dedup(path: Path, env: dict, *extra: str) -> dict:
    """`selfalign dedup` in a child process: wall seconds, peak RSS (MiB) and its --report."""
    report = path.with_suffix(".report.json")
    # /usr/bin/time measures the peak of its own child: a child forked straight from this (large) process
    # would report this process's pages as its own peak
    rss = path.with_suffix(".rss")
    timer = ["/usr/bin/time", "-f", "%M", "-o", str(rss)] if Path("/usr/bin/time").exists() else []
    t = time.perf_counter()
    proc = subprocess.Popen([*timer, *SELFALIGN, "dedup", str(path), "-o", str(path.with_suffix(".out.jsonl")),
                             "--dropped", str(path.with_suffix(".dropped.jsonl")), "--report", str(report), "-q", *extra],
                            env={**os.environ, **env}, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"selfalign dedup failed on {path}: {proc.stderr.read().decode()[-2000:]}")
    peak_kib = int(rss.read_text().split()[-1]) if timer else usage.ru_maxrss
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_mib": round(peak_kib / 1024, 1), "report": json.loads(report.read_text())}


def embed_alone(texts: list[str], model: str) -> tuple[float, float]:
    """Wall and CPU seconds to embed the texts dedup embeds (distinct after normalisation), model loaded, no cache."""
    from selfalign.text.embeddings import Embedder
    from selfalign.records import normalize_text

    unique = list({normalize_text(t): t for t in texts}.values())
    emb = Embedder(model)
    emb.encode(["warm up"])
    t, c = time.perf_counter(), time.process_time()
    for start in range(0, len(unique), 1024):
        emb.encode(unique[start:start + 1024])
    return time.perf_counter() - t, time.process_time() - c


def word_edits(a: str, b: str) -> int:
    """Words inserted, deleted or replaced to turn a into b (after normalisation)."""
    import difflib

    from selfalign.records import normalize_text

    ops = difflib.SequenceMatcher(None, normalize_text(a).split(), normalize_text(b).split()).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def quality(vectors: np.ndarray, planted: set[int], thresholds: list[float], texts: list[str]) -> list[dict]:
    """Planted near duplicates caught (recall) and share of drops that are planted (precision), all pairs.

    `precision_edit` also counts as right a drop of an unplanted text that is within 2 word edits of the
    text it was matched with: the corpus has such pairs of its own ("Get the X." / "Set the X."), which
    are near duplicates by the planted edits' own definition, whatever they mean.
    """
    from selfalign.text.similarity import brute_pairs, first_kept

    i, j, s = brute_pairs(vectors, min(thresholds))
    truth = np.zeros(len(vectors), dtype=bool)
    truth[list(planted)] = True
    rows = []
    for th in thresholds:
        keep = s >= th
        dup_of, _ = first_kept(len(vectors), (i[keep], j[keep], s[keep]))
        dropped = dup_of >= 0
        tp = int((dropped & truth).sum())
        close = sum(word_edits(texts[int(dup_of[k])], texts[k]) <= 2 for k in np.flatnonzero(dropped & ~truth))
        rows.append({"threshold": th, "recall": round(tp / max(truth.sum(), 1), 3),
                     "precision": round(tp / max(dropped.sum(), 1), 3),
                     "precision_edit": round((tp + close) / max(dropped.sum(), 1), 3), "dropped": int(dropped.sum())})
    return rows


def switch_point(vectors: np.ndarray, sizes: list[int], threshold: float, cluster_size: int, probes: int) -> list[dict]:
    """Search seconds, all pairs vs clusters, on prefixes; and the drops the clusters miss."""
    from selfalign.text.similarity import brute_pairs, cluster_pairs, first_kept

    rows = []
    for n in sizes:
        v = vectors[:n]
        t = time.perf_counter()
        full = first_kept(n, brute_pairs(v, threshold))[0] >= 0
        t_all = time.perf_counter() - t
        t = time.perf_counter()
        clus = first_kept(n, cluster_pairs(v, threshold, max(2, n // cluster_size), probes))[0] >= 0
        t_clu = time.perf_counter() - t
        rows.append({"n": n, "all_pairs_s": round(t_all, 2), "cluster_s": round(t_clu, 2),
                     "drops_all_pairs": int(full.sum()), "drops_missed_by_clusters": int((full & ~clus).sum()),
                     "extra_drops_by_clusters": int((clus & ~full).sum())})
    return rows


def rouge_dedup(texts: list[str], threshold: float, budget: float) -> dict:
    """The ROUGE-L pairwise filter (each text against every kept one) for `budget` s, then extrapolated.

    It is novelty.py's ROUGE-L filter with an empty seed pool.
    """
    from novelty import rouge_filter

    spent, rejected, pairs = rouge_filter([], texts, threshold, budget)
    done = len(rejected)
    # every text is compared with (about) every kept one: ~ n^2/2 pairs with ~10% dropped
    full = len(texts) * (len(texts) - 1) / 2 * 0.9
    est = spent if done == len(texts) else spent / max(pairs, 1) * full
    return {"texts": len(texts), "done": done, "seconds": round(est, 1), "estimated": done < len(texts)}


def print_scale(result: dict, biggest: int, planted: set[int], emb_s: float, emb_cpu: float, cold: dict,
                mem: list[dict], json_path: str | None):  # noqa: ANN201 - a rich Console
    from rich.console import Console
    from rich.table import Table

    out = Console(width=150)
    t1 = Table(title=f"dedup of {biggest:,} texts ({len(planted):,} planted near duplicates)")
    for col in ("", "embedding alone", "selfalign dedup (all of it)", "total / embedding"):
        t1.add_column(col, justify="right")
    t1.add_row("wall s", f"{emb_s:.1f}", f"{cold['wall_s']:.1f}", f"{result['total_over_embedding']:.3f}")
    t1.add_row("CPU s", f"{emb_cpu:.1f}", f"{cold['cpu_s']:.1f}", f"{result['total_over_embedding_cpu']:.3f}")
    t1.caption = (f"search: {cold['report'].get('search')}; load average {result['load_before']} before, "
                  f"{result['load_after']} after (the CPU ratio is the one to trust on a busy machine); "
                  f"drops: {cold['report'].get('dropped')}")
    out.print(t1)
    t2 = Table(title="peak memory (whole process, embedding model included)")
    for col in ("texts", "peak MiB", "MiB per 10k texts over the previous size", "search"):
        t2.add_column(col, justify="right")
    prev = None
    for m in mem:
        slope = "" if prev is None else f"{(m['peak_mib'] - prev['peak_mib']) / (m['n'] - prev['n']) * 10_000:.1f}"
        t2.add_row(f"{m['n']:,}", f"{m['peak_mib']:.0f}", slope, str(m["search"]))
        prev = m
    out.print(t2)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return out


# ---- --memory: peak RSS of the dedup stage itself, the embedding model replaced by a cheap fake -------------
SUBJECTS = ("the list", "a file", "the cache", "each request", "the parser", "an index", "the table", "a thread",
            "the socket", "a matrix", "the config", "each record", "the queue", "a token", "the schema", "a report")
VERBS = ("Return", "Read", "Write", "Sort", "Check", "Build", "Parse", "Compute", "Merge", "Split", "Load", "Save",
         "Count", "Find", "Remove", "Format", "Encode", "Update", "Validate", "Compare")
WORDS = ("quickly", "safely", "twice", "lazily", "in place", "by name", "with a lock", "for each user", "as bytes",
         "in order", "from disk", "over the network", "without copying", "at startup", "on error", "per line",
         "in batches", "by default", "if needed", "when empty", "for testing", "under load", "as json", "in memory")


def synthetic_texts(n: int, seed: int = 7):  # noqa: ANN201 - a generator of str
    """n varied sentences (verb, two subjects, three of WORDS, a number), 10% near duplicates (texts.py's edits)
    of one of the 2,000 before; streamed, so the generator holds nothing that grows with n."""
    import random
    from collections import deque

    rng = random.Random(seed)
    recent: deque[str] = deque(maxlen=2000)
    for _ in range(n):
        if recent and rng.random() < 0.1:
            text = near_duplicate(rng.choice(recent), rng, rewrites=True)
        else:
            text = (f"{rng.choice(VERBS)} {rng.choice(SUBJECTS)} and {rng.choice(SUBJECTS)} "
                    f"{' '.join(rng.sample(WORDS, 3))}, up to {rng.randrange(100_000)} items.")
        recent.append(text)
        yield text


class HashedWords:
    """A fake embedder, fast and deterministic: each word adds +-1 to 4 dimensions picked by its hash, then the
    vector is made unit length. Texts sharing most words get a high cosine, as with a real model."""

    name, dim = "all-mpnet-base-v2", 768  # dedup's default: its threshold and its vector size

    def encode(self, texts: list[str]) -> np.ndarray:
        import hashlib

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for k, text in enumerate(texts):
            for word in text.lower().split():
                h = hashlib.blake2b(word.encode(), digest_size=8).digest()
                for b in range(4):
                    out[k, (h[2 * b] << 8 | h[2 * b + 1]) % self.dim] += 1.0 if h[b] & 1 else -1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def memory_child(n: int, search: str) -> None:
    """Run the stage on n synthetic texts and print one JSON line: peak RSS, the records out, their digest."""
    import hashlib
    import resource
    from collections import Counter

    from selfalign.records import Dropped, PromptRecord
    from selfalign.report.counts import Report
    from selfalign.stages.dedup import Dedup, dedup

    import rensa  # noqa: F401 - the libraries the stage loads count in the start, not per text
    import sklearn.cluster  # noqa: F401

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    records = (PromptRecord(id=f"t{i}", prompt=t) for i, t in enumerate(synthetic_texts(n)))
    cfg = Dedup(search=search)
    digest, reasons = hashlib.sha256(), Counter()
    t = time.perf_counter()
    for out in dedup(records, cfg, Report("dedup"), HashedWords()):
        digest.update(out.model_dump_json().encode())
        reasons[out.drop_reason if isinstance(out, Dropped) else "kept"] += 1
    print(json.dumps({"n": n, "search": search, "seconds": round(time.perf_counter() - t, 1),
                      "start_kib": base, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "records": dict(reasons), "digest": digest.hexdigest()[:16]}))


def memory_top(n: int, search: str, top: int = 12) -> None:
    """tracemalloc when the search hands its pairs to first_kept (every per-text structure alive): the top lines.
    Memory outside Python's allocator (rensa's Rust LSH index) is not traced: compare with the RSS."""
    import resource
    import tracemalloc

    from selfalign.text import similarity

    tracemalloc.start(1)
    seen = {}
    first_kept = similarity.first_kept

    def watched(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        seen["traced"], seen["snap"] = tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()
        seen["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return first_kept(*args, **kw)

    similarity.first_kept = watched
    memory_child(n, search)
    print(f"traced at the search's end: {seen['traced'] / 2**20:.1f} MiB (peak RSS so far {seen['rss'] / 1024:.0f} "
          f"MiB); traced peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB")
    for stat in seen["snap"].statistics("lineno")[:top]:
        print(f"{stat.size / 2**20:8.1f} MiB {stat.count:>9,} blocks  {stat.traceback[0]}")


def memory(sizes: list[int], searches: list[str]) -> None:
    """One child process per size and search mode (a fresh peak each); the table of peak RSS."""
    print(f"{'texts':>8} {'search':>9} {'peak MiB':>9} {'embeddings MiB':>15} {'MiB w/o emb.':>13} "
          f"{'KB/text':>8} {'KB/text more':>12} {'seconds':>8}  records out (digest)")
    for search in searches:
        prev = None
        for n in sizes:
            proc = subprocess.run([sys.executable, __file__, "--memory-child", str(n), search],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.splitlines()[-1])
            kept = r["records"].get("kept", 0)
            emb = (n - r["records"].get("exact_duplicate", 0)) * HashedWords.dim * 4 / 2**20
            peak = r["peak_kib"] / 1024
            per = (peak - emb - r["start_kib"] / 1024) * 2**20 / 1000 / n  # KB (1000 bytes) a text over the start
            # KB a text more than the previous size: the slope, free of what the start leaves out
            more = "" if prev is None else f"{(peak - emb - prev[1]) * 2**20 / 1000 / (n - prev[0]):.2f}"
            prev = (n, peak - emb)
            print(f"{n:>8,} {search:>9} {peak:>9.0f} {emb:>15.0f} {peak - emb:>13.0f} {per:>8.2f} {more:>12} "
                  f"{r['seconds']:>8.1f}"
                  f"  {kept:,} kept, {n - kept:,} dropped ({r['digest']})", flush=True)


def main() -> None:
    if sys.argv[1:2] in (["--memory-child"], ["--memory-top"]):
        return (memory_child if sys.argv[1] == "--memory-child" else memory_top)(int(sys.argv[2]), sys.argv[3])
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--switch-sizes", type=int, nargs="*", default=[2_000, 5_000, 10_000, 20_000, 50_000, 100_000])
    ap.add_argument("--quality-size", type=int, default=20_000)
    ap.add_argument("--thresholds", type=float, nargs="+", help="default: 0.70-0.90 for mpnet, 0.80-0.95 for MiniLM")
    ap.add_argument("--rouge-size", type=int, default=20_000)
    ap.add_argument("--rouge-budget", type=float, default=60.0)
    ap.add_argument("--threshold", type=float, help="default: the model's (embeddings.dedup_calibration)")
    ap.add_argument("--embedding-model", default="all-mpnet-base-v2", help="dedup's default, all-minilm-l6-v2, "
                    "or a local sentence-transformers folder")
    ap.add_argument("--json", default="benchmarks/out/dedup.json")
    ap.add_argument("--scale-only", action="store_true", help="only the total-vs-embedding and memory figures")
    ap.add_argument("--memory", type=int, nargs="+", metavar="N", help="only the stage's peak memory with a fake "
                    "embedder, per N (a process each); --memory-top N all-pairs|cluster: tracemalloc's top lines")
    ap.add_argument("--memory-search", nargs="+", default=["all-pairs", "cluster"],
                    choices=["all-pairs", "cluster"])
    args = ap.parse_args()
    if args.memory:
        return memory(args.memory, args.memory_search)
    from selfalign.text.embeddings import dedup_calibration
    from selfalign.io.paths import models_dir

    args.threshold = args.threshold or dedup_calibration(args.embedding_model)[0]
    if not args.thresholds:
        args.thresholds = ([0.80, 0.85, 0.88, 0.90, 0.92, 0.95] if args.threshold >= 0.9
                           else [0.70, 0.75, 0.80, 0.85, 0.90])
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=150)
    biggest = max(args.sizes)
    texts, planted = with_planted(biggest, share=0.1, seed=7, rewrites=True)
    work = Path(tempfile.mkdtemp(prefix="selfalign-dedup-bench-"))
    env = {"SELFALIGN_CACHE_DIR": str(work / "cache"), "SELFALIGN_MODELS_DIR": str(models_dir())}
    files = {}
    for n in sorted(args.sizes):
        files[n] = work / f"texts-{n}.jsonl"
        files[n].write_text("".join(json.dumps({"id": f"t{i}", "prompt": t}) + "\n" for i, t in enumerate(texts[:n])))
    result: dict = {"texts": biggest, "planted": len(planted)}

    console.print(f"[bold]1.[/] {biggest:,} texts: embedding alone, then the whole `selfalign dedup` (empty cache)")
    load = os.getloadavg()[0]
    model = ["--embedding-model", args.embedding_model]
    result["embedding_model"], result["threshold"] = args.embedding_model, args.threshold
    emb_s, emb_cpu = embed_alone(texts, args.embedding_model)
    cold = run_dedup(files[biggest], env, *model)
    result["load_before"], result["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
    result["embedding_alone_s"], result["embedding_alone_cpu_s"] = round(emb_s, 1), round(emb_cpu, 1)
    result["dedup_total_s"], result["dedup_total_cpu_s"] = cold["wall_s"], cold["cpu_s"]
    result["total_over_embedding"] = round(cold["wall_s"] / emb_s, 3)
    result["total_over_embedding_cpu"] = round(cold["cpu_s"] / emb_cpu, 3)
    result["cold_report"] = cold["report"]

    console.print("[bold]2.[/] peak memory per size (embeddings from the cache, so the search and records dominate)")
    mem = []
    for n in sorted(args.sizes):
        r = run_dedup(files[n], env, *model)
        mem.append({"n": n, "wall_s": r["wall_s"], "peak_mib": r["peak_mib"], "search": r["report"].get("search")})
    result["memory"] = mem

    if args.scale_only:
        return print_scale(result, biggest, planted, emb_s, emb_cpu, cold, mem, args.json)
    from selfalign.text.embeddings import Embedder

    emb = Embedder(args.embedding_model, cache=work / "cache" / "embeddings.sqlite")
    vectors = emb.encode(texts)
    console.print("[bold]3.[/] switch point: all pairs vs k-means clusters")
    result["switch"] = switch_point(vectors, [n for n in args.switch_sizes if n <= biggest], args.threshold, 1000, 2)
    console.print("[bold]4.[/] planted near duplicates: recall and precision per threshold")
    q = min(args.quality_size, biggest)
    result["quality"] = quality(vectors[:q], {p for p in planted if p < q}, args.thresholds, texts[:q])
    result["quality_texts"], result["quality_planted"] = q, sum(p < q for p in planted)
    console.print(f"[bold]5.[/] ROUGE-L pairwise dedup on {min(args.rouge_size, biggest):,} texts ({args.rouge_budget:.0f} s, then extrapolated)")
    r_texts = texts[:min(args.rouge_size, biggest)]
    from selfalign.text.similarity import brute_pairs, first_kept

    t = time.perf_counter()
    emb2 = Embedder(args.embedding_model)
    emb2.encode(["warm up"])
    t = time.perf_counter()
    v = np.concatenate([emb2.encode(r_texts[s:s + 1024]) for s in range(0, len(r_texts), 1024)])
    first_kept(len(v), brute_pairs(v, args.threshold))
    ours = time.perf_counter() - t
    rouge = rouge_dedup(r_texts, 0.7, args.rouge_budget)
    result["rouge"] = {**rouge, "selfalign_s": round(ours, 1), "speedup": round(rouge["seconds"] / ours, 1)}

    out = print_scale(result, biggest, planted, emb_s, emb_cpu, cold, mem, None)
    t3 = Table(title=f"search only (threshold {args.threshold}): all pairs vs clusters of ~1000, 2 probes")
    for col in ("texts", "all pairs s", "clusters s", "ratio", "drops (all pairs)", "missed by clusters", "extra"):
        t3.add_column(col, justify="right")
    for s in result["switch"]:
        t3.add_row(f"{s['n']:,}", f"{s['all_pairs_s']:.2f}", f"{s['cluster_s']:.2f}",
                   f"{s['all_pairs_s'] / max(s['cluster_s'], 1e-9):.1f}x", str(s["drops_all_pairs"]),
                   str(s["drops_missed_by_clusters"]), str(s["extra_drops_by_clusters"]))
    out.print(t3)
    t4 = Table(title=f"planted near duplicates ({result['quality_texts']:,} texts, {result['quality_planted']:,} planted)")
    for col in ("cosine threshold", "recall", "precision (planted only)", "precision (planted or <= 2 word edits)", "dropped"):
        t4.add_column(col, justify="right")
    for row in result["quality"]:
        t4.add_row(f"{row['threshold']:.2f}", f"{row['recall']:.3f}", f"{row['precision']:.3f}",
                   f"{row['precision_edit']:.3f}", str(row["dropped"]))
    out.print(t4)
    r = result["rouge"]
    out.print(f"ROUGE-L > 0.7 pairwise on {r['texts']:,} texts: {r['seconds']:.0f} s{' (est.)' if r['estimated'] else ''} "
              f"vs selfalign embed + search {r['selfalign_s']:.1f} s: {r['speedup']:.0f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
