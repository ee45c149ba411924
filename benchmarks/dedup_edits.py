"""Dedup recall per edit type, and distinct look-alike prompts wrongly dropped, per pass and combined.

Data: benchmarks/data/dedup_edits.jsonl, written for this project: short prompts, each with a paraphrase,
a one-word synonym swap, a two-word edit and (for two-sentence prompts) a reorder; and pairs of prompts
that look alike but mean different things (C++/C#, 12x13/12x14, can/cannot, F->C/C->F, France/Spain,
increase/decrease, cats/dogs). Copies with case, spacing and punctuation changed, a word inserted and a
word deleted are made here, seeded.

For each edit type the corpus is every base prompt followed by its edited copies; recall is the share of
copies dropped as duplicates of their own base prompt. Look-alikes: every base prompt plus both sides of
each pair; wrongly dropped is the share of look-alike prompts (and of distinct base prompts) dropped.
Runs in process with the bundled embedding model (cached after the first run).

    python benchmarks/dedup_edits.py [--sweep] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from selfalign.records import Dropped, PromptRecord  # noqa: E402
from selfalign.report.counts import Report  # noqa: E402
from selfalign.stages.dedup import Dedup, dedup  # noqa: E402

DATA = HERE / "data" / "dedup_edits.jsonl"
FILLERS = ["please", "really", "actually", "just", "exactly", "here", "now", "simply"]
DROPPABLE = {"a", "an", "the", "please", "really", "just", "very", "actually", "some", "my", "your", "quickly",
             "briefly", "now", "also", "exactly", "simply", "kindly", "here"}
EDITS = ["case_space_punct", "insert_1", "delete_1", "swap_1", "edit_2", "reorder", "paraphrase"]


def load() -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in DATA.open(encoding="utf-8") if line.strip()]
    return [r for r in rows if r["kind"] == "base"], [r for r in rows if r["kind"] == "lookalike"]


def edited(base: dict, kind: str, rng: random.Random) -> str | None:
    p = base["prompt"]
    words = p.split()
    if kind == "case_space_punct":
        out = p.lower() if rng.random() < 0.5 else p.upper()
        out = "  ".join(out.split()).rstrip("?.!") + rng.choice(["", " ?", "!!", "..."])
        return out
    if kind == "insert_1":
        k = rng.randrange(1, len(words) + 1)
        return " ".join(words[:k] + [rng.choice(FILLERS)] + words[k:])
    if kind == "delete_1":
        idx = [k for k, w in enumerate(words) if w.lower().strip(",.?!") in DROPPABLE]
        if not idx:
            idx = [k for k, w in enumerate(words) if k and w[:1].islower() and not any(c.isdigit() for c in w)]
        if not idx:
            return None
        k = rng.choice(idx)
        return " ".join(words[:k] + words[k + 1:])
    field = {"swap_1": "synonym_swap", "edit_2": "two_word_edit", "reorder": "reorder", "paraphrase": "paraphrase"}[kind]
    return base.get(field)


def run(texts: list[tuple[str, str]], cfg: Dedup, embedder) -> dict[str, Dropped]:  # noqa: ANN001
    recs = [PromptRecord(id=rid, prompt=t) for rid, t in texts]
    return {o.id: o for o in dedup(recs, cfg, Report("dedup"), embedder if cfg.threshold is None or cfg.threshold <= 1 else None)
            if isinstance(o, Dropped)}


PASSES = {"lexical": {"threshold": 1.1}, "semantic": {"jaccard": 1.1}, "combined": {}}


def measure(bases: list[dict], looks: list[dict], embedder, overrides: dict, seed: int = 0) -> dict:  # noqa: ANN001
    base_texts = [(b["id"], b["prompt"]) for b in bases]
    out: dict[str, float | int] = {}
    for pass_name, over in PASSES.items():
        given = {**overrides, **over}  # options, and the method's own settings (substitution_bar) set on a copy
        cfg = Dedup(**{k: v for k, v in given.items() if k in Dedup.model_fields}).model_copy(
            update={k: v for k, v in given.items() if k not in Dedup.model_fields})
        for kind in EDITS:
            copies = [(f"{b['id']}~{kind}", t) for b in bases if (t := edited(b, kind, random.Random(f"{seed}{b['id']}{kind}")))]
            gone = run(base_texts + copies, cfg, embedder)
            hit = sum(1 for cid, _ in copies if cid in gone and gone[cid].duplicate_of == cid.split("~")[0])
            out[f"{pass_name}:{kind}"] = hit / len(copies) if copies else float("nan")
            out[f"{pass_name}:{kind}:n"] = len(copies)
            out[f"{pass_name}:{kind}:base_dropped"] = sum(1 for b, _ in base_texts if b in gone)
        pairs = [(f"{lk['id']}~a", lk["a"]) for lk in looks] + [(f"{lk['id']}~b", lk["b"]) for lk in looks]
        gone = run(base_texts + pairs, cfg, embedder)
        out[f"{pass_name}:lookalike_wrongly_dropped"] = sum(1 for pid, _ in pairs if pid in gone) / len(pairs)
        out[f"{pass_name}:lookalike_pairs_merged"] = sum(1 for lk in looks if f"{lk['id']}~b" in gone) / len(looks)
        out[f"{pass_name}:distinct_base_dropped"] = sum(1 for b, _ in base_texts if b in gone) / len(base_texts)
        by_type: dict[str, list[int]] = {}
        for lk in looks:
            by_type.setdefault(lk["type"], []).append(int(f"{lk['id']}~b" in gone))
        for t, xs in by_type.items():
            out[f"{pass_name}:lookalike:{t}"] = sum(xs) / len(xs)
    return out


def table(res: dict, bases: list[dict], looks: list[dict]) -> None:
    print(f"{len(bases)} distinct short prompts, {len(looks)} look-alike pairs (benchmarks/data/dedup_edits.jsonl)")
    print(f"\n{'recall per edit type':<34}" + "".join(f"{p:>10}" for p in PASSES) + "      n")
    for kind in EDITS:
        print(f"  {kind:<32}" + "".join(f"{res[f'{p}:{kind}']:>10.3f}" for p in PASSES) + f"{res[f'combined:{kind}:n']:>7}")
    print(f"\n{'distinct prompts wrongly dropped':<34}" + "".join(f"{p:>10}" for p in PASSES))
    print(f"  {'look-alike prompts (share)':<32}" + "".join(f"{res[f'{p}:lookalike_wrongly_dropped']:>10.3f}" for p in PASSES))
    print(f"  {'look-alike pairs merged':<32}" + "".join(f"{res[f'{p}:lookalike_pairs_merged']:>10.3f}" for p in PASSES))
    for t in sorted({lk["type"] for lk in looks}):
        print(f"    {t:<30}" + "".join(f"{res[f'{p}:lookalike:{t}']:>10.3f}" for p in PASSES))
    print(f"  {'distinct base prompts':<32}" + "".join(f"{res[f'{p}:distinct_base_dropped']:>10.3f}" for p in PASSES))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true", help="also sweep the cosine and Jaccard thresholds, "
                    "with and without the second look")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--sample", type=int, help="only the first N base prompts and N/2 look-alike pairs")
    ap.add_argument("--embedding-model", default="all-mpnet-base-v2",
                    help="dedup's default, all-minilm-l6-v2, or a local sentence-transformers folder")
    args = ap.parse_args()
    from selfalign.text.embeddings import Embedder, dedup_calibration
    from selfalign.io.paths import cache_dir

    bases, looks = load()
    if args.sample:
        bases, looks = bases[: args.sample], looks[: max(1, args.sample // 2)]
    embedder = Embedder(args.embedding_model, cache=cache_dir() / "embeddings.sqlite")
    defaults = Dedup()
    cosine, bar = dedup_calibration(args.embedding_model)
    print(f"model {args.embedding_model}; defaults: cosine {cosine}, Jaccard {defaults.jaccard}, second look on "
          f"(substitution bar {bar})\n")
    res = measure(bases, looks, embedder, {})
    table(res, bases, looks)
    out = {"defaults": res}
    if args.sweep:
        print("\nsweep (combined pass): threshold, second look -> paraphrase, swap_1, insert_1 recall; look-alike "
              "prompts wrongly dropped")
        for second in (True, False):
            for cos in (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90):
                r = measure(bases, looks, embedder, {"threshold": cos, "second_look": second})
                out[f"cos{cos}:second{second}"] = r
                print(f"  cosine {cos:.2f} second look {'on ' if second else 'off'}: paraphrase "
                      f"{r['combined:paraphrase']:.3f}  swap {r['combined:swap_1']:.3f}  insert "
                      f"{r['combined:insert_1']:.3f}  reorder {r['combined:reorder']:.3f}  wrongly dropped "
                      f"{r['combined:lookalike_wrongly_dropped']:.3f}  base {r['combined:distinct_base_dropped']:.3f}")
        for bar in (0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.91):
            r = measure(bases, looks, embedder, {"substitution_bar": bar})
            out[f"bar{bar}"] = r
            print(f"  substitution bar {bar:.2f}: swap {r['combined:swap_1']:.3f}  edit_2 {r['combined:edit_2']:.3f}  "
                  f"wrongly dropped {r['combined:lookalike_wrongly_dropped']:.3f}  (cohyponym {r['combined:lookalike:cohyponym']:.3f}, "
                  f"topic {r['combined:lookalike:topic']:.3f} of pairs merged)")
        for jac in (0.5, 0.6, 0.7, 0.8):
            r = measure(bases, looks, embedder, {"jaccard": jac})
            out[f"jac{jac}"] = r
            print(f"  Jaccard {jac:.2f}: insert {r['lexical:insert_1']:.3f}  delete {r['lexical:delete_1']:.3f}  swap "
                  f"{r['lexical:swap_1']:.3f}  edit_2 {r['lexical:edit_2']:.3f}  wrongly dropped (lexical) "
                  f"{r['lexical:lookalike_wrongly_dropped']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
