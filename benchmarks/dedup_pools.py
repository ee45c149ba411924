"""Dedup on real task pools: distinct tasks wrongly dropped, and true duplicates caught, per pair type.

Data: benchmarks/data/dedup_pools/ (README there says how each row was labelled), written for this project:

- distinct.jsonl: seed tasks in the self-instruct style, all distinct, many of them in groups of tasks on
  the same subject that ask for another output: extract vs classify vs summarise the same text, another
  list of fields, another format, another target language, a poem vs a limerick (`pair` says which kind of
  difference the group has; `single` for tasks alone on their subject). `split`: dev, holdout (a third of
  the groups, not used to write the rule) or fresh (written after the rule was frozen, run once).
- duplicates.jsonl: rewordings of some of them that ask for the same output, each with `of`, its original.
- generated.jsonl (when present): prompts from `selfalign generate` on the embedded model, labelled by
  reading (`dup_of` names an earlier one it repeats).
- The bundled seed pool, selfalign/data/exemplars/seed_tasks.jsonl, read in place: all distinct.

Each pool runs through the real `dedup` stage (exact, lexical and semantic passes, second look) with the
default embedding model, distinct tasks first, then the duplicates. A drop of a distinct task is a false drop;
precision is the share of drops that are true duplicates; recall the share of duplicates dropped. With
--edits, the planted-edit figures of benchmarks/dedup_edits.py are printed beside these, for the same
settings.

    python benchmarks/dedup_pools.py [--edits] [--sweep] [--show [SPLIT ...]] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from selfalign.records import Dropped, PromptRecord  # noqa: E402
from selfalign.report.counts import Report  # noqa: E402
from selfalign.stages.dedup import Dedup, dedup  # noqa: E402

DATA = HERE / "data" / "dedup_pools"
SPLITS = ("all", "dev", "holdout", "fresh")
SEEDS = HERE.parent / "selfalign" / "data" / "exemplars" / "seed_tasks.jsonl"


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()] if path.exists() else []


def pools() -> dict[str, tuple[list[dict], list[dict]]]:
    """name -> (distinct rows, duplicate rows with `of`)."""
    out = {"written": (read(DATA / "distinct.jsonl"), read(DATA / "duplicates.jsonl"))}
    seeds = read(SEEDS)
    if seeds:
        out["bundled seeds"] = ([{"id": f"s{k:03d}", "prompt": r["prompt"], "pair": "single", "split": "dev"}
                                 for k, r in enumerate(seeds, 1)], [])
    gen = read(DATA / "generated.jsonl")
    if gen:
        out["generated"] = ([{**r, "pair": "single", "split": "dev"} for r in gen if not r.get("dup_of")],
                            [{**r, "of": r["dup_of"], "split": "dev"} for r in gen if r.get("dup_of")])
    return out


def run(texts: list[tuple[str, str]], cfg: Dedup, embedder) -> dict[str, Dropped]:  # noqa: ANN001
    recs = [PromptRecord(id=rid, prompt=t) for rid, t in texts]
    return {o.id: o for o in dedup(recs, cfg, Report("dedup"), embedder) if isinstance(o, Dropped)}


def measure(all_pools: dict, embedder, overrides: dict) -> dict:  # noqa: ANN001
    """Per pool and split: drops, false drops, precision, recall, and false drops / recall per pair type."""
    cfg = Dedup(**{k: v for k, v in overrides.items() if k in Dedup.model_fields}).model_copy(
        update={k: v for k, v in overrides.items() if k not in Dedup.model_fields})
    res: dict = {}
    for name, (distinct, dups) in all_pools.items():
        gone = run([(r["id"], r["prompt"]) for r in distinct + dups], cfg, embedder)
        pair_of = {r["id"]: r.get("pair", "single") for r in distinct}
        split_of = {r["id"]: r.get("split", "dev") for r in distinct + dups}
        family = {r["id"]: r["id"] for r in distinct} | {r["id"]: r["of"] for r in dups}
        text = {r["id"]: r["prompt"] for r in distinct + dups}
        for split in SPLITS:
            keep = [r for r in distinct if split == "all" or r.get("split", "dev") == split]
            dkeep = [r for r in dups if split == "all" or r.get("split", "dev") == split]
            if not keep and not dkeep:
                continue
            false = [r["id"] for r in keep if r["id"] in gone]
            caught = [r["id"] for r in dkeep if r["id"] in gone]
            drops = len(false) + len(caught)
            s = {"distinct": len(keep), "duplicates": len(dkeep), "drops": drops, "false_drops": len(false),
                 "precision": len(caught) / drops if drops else 1.0,
                 "recall": len(caught) / len(dkeep) if dkeep else float("nan"),
                 "right_original": sum(family.get(gone[c].duplicate_of) == family[c] for c in caught)}
            per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # distinct, false, dups, caught
            for r in keep:
                per[r.get("pair", "single")][0] += 1
                per[r.get("pair", "single")][1] += r["id"] in gone
            for r in dkeep:
                per[pair_of[r["of"]]][2] += 1
                per[pair_of[r["of"]]][3] += r["id"] in gone
            s["per_pair"] = {k: v for k, v in sorted(per.items())}
            res[f"{name}:{split}"] = s
        res[f"{name}:false"] = [(i, gone[i].duplicate_of, split_of[i], round(gone[i].similarity, 3), text[i],
                                 text.get(gone[i].duplicate_of, "")) for i in text if i in gone and i not in
                                {r["id"] for r in dups}]
        res[f"{name}:missed"] = [(r["id"], r["of"], r.get("split", "dev"), r["prompt"], text[r["of"]]) for r in dups
                                 if r["id"] not in gone]
    return res


def table(res: dict, all_pools: dict) -> None:
    print(f"{'pool':<28}{'distinct':>9}{'dups':>6}{'drops':>7}{'false':>7}{'precision':>10}{'recall':>8}")
    for name in all_pools:
        for split in SPLITS:
            s = res.get(f"{name}:{split}")
            if s is None or (split != "all" and name != "written"):
                continue
            label = name if split == "all" else f"  {split}"
            recall = "-" if s["duplicates"] == 0 else f"{s['recall']:.3f}"
            print(f"{label:<28}{s['distinct']:>9}{s['duplicates']:>6}{s['drops']:>7}{s['false_drops']:>7}"
                  f"{s['precision']:>10.3f}{recall:>8}")
    s = res["written:all"]
    print("\nwritten pool, per pair type       distinct dropped      duplicates caught")
    for kind, (n, false, nd, caught) in s["per_pair"].items():
        print(f"  {kind:<30}{false:>5} / {n:<5}{'':>10}{caught:>5} / {nd}")


def show(res: dict, all_pools: dict, splits: tuple[str, ...]) -> None:
    for name in all_pools:
        for i, of, split, sim, a, b in res[f"{name}:false"]:
            if split not in splits:
                continue
            print(f"  FALSE DROP {name} {i} ({split}) dup of {of} {sim}: {a[:90]!r} ~ {b[:90]!r}")
        for i, of, split, a, b in res[f"{name}:missed"]:
            if split not in splits:
                continue
            print(f"  MISSED {name} {i} ({split}) of {of}: {a[:90]!r} ~ {b[:90]!r}")


def edit_figures(embedder, overrides: dict) -> dict:  # noqa: ANN001
    from dedup_edits import load
    from dedup_edits import measure as edits_measure

    bases, looks = load()
    r = edits_measure(bases, looks, embedder, overrides)
    return {k: r[f"combined:{k}"] for k in ("paraphrase", "swap_1", "edit_2", "insert_1", "delete_1", "reorder",
                                             "lookalike_wrongly_dropped", "distinct_base_dropped")}


def edits_line(e: dict) -> str:
    return (f"edits (dedup_edits.py, combined): paraphrase {e['paraphrase']:.3f}  swap_1 {e['swap_1']:.3f}  edit_2 "
            f"{e['edit_2']:.3f}  insert_1 {e['insert_1']:.3f}  delete_1 {e['delete_1']:.3f}  reorder {e['reorder']:.3f}"
            f"  look-alikes wrongly dropped {e['lookalike_wrongly_dropped']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", action="store_true", help="also run benchmarks/dedup_edits.py's planted edits")
    ap.add_argument("--sweep", action="store_true", help="also sweep the cosine threshold, second look on and off")
    ap.add_argument("--show", nargs="*", choices=SPLITS[1:], help="print every false drop and missed duplicate "
                    "(of these splits; none named: all)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--embedding-model", default="all-mpnet-base-v2",
                    help="dedup's default, all-minilm-l6-v2, or a local sentence-transformers folder")
    args = ap.parse_args()
    from selfalign.io.paths import cache_dir
    from selfalign.text.embeddings import Embedder, dedup_calibration

    all_pools = pools()
    embedder = Embedder(args.embedding_model, cache=cache_dir() / "embeddings.sqlite")
    cosine, bar = dedup_calibration(args.embedding_model)
    print(f"model {args.embedding_model}; defaults: cosine {cosine}, Jaccard {Dedup().jaccard}, second look on "
          f"(substitution bar {bar})\n")
    res = measure(all_pools, embedder, {})
    table(res, all_pools)
    if args.show is not None:
        show(res, all_pools, tuple(args.show) or SPLITS[1:])
    out = {"defaults": res}
    if args.edits:
        out["edits"] = edit_figures(embedder, {})
        print("\n" + edits_line(out["edits"]))
    if args.sweep:
        print("\nsweep: cosine, second look -> written pool false drops, precision, recall (dev/holdout/fresh)"
              + ("; planted edits" if args.edits else ""))
        for second in (True, False):
            for cos in (0.65, 0.70, 0.75, 0.80, 0.85):
                over = {"threshold": cos, "second_look": second}
                r = measure(all_pools, embedder, over)
                out[f"cos{cos}:second{second}"] = r
                a = r["written:all"]
                line = (f"  cosine {cos:.2f} second look {'on ' if second else 'off'}: false drops {a['false_drops']:>3} "
                        f"({'/'.join(str(r[f'written:{x}']['false_drops']) for x in SPLITS[1:])})  precision "
                        f"{a['precision']:.3f}  recall {a['recall']:.3f} "
                        f"({'/'.join(format(r[f'written:{x}']['recall'], '.3f') for x in SPLITS[1:])})")
                if args.edits and second:
                    e = edit_figures(embedder, over)
                    out[f"cos{cos}:edits"] = e
                    line += (f"  | paraphrase {e['paraphrase']:.3f} swap {e['swap_1']:.3f} look-alikes "
                             f"{e['lookalike_wrongly_dropped']:.3f}")
                print(line)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
