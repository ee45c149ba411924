"""The harm classifier behind `harmful_compliance` and `unwarranted_refusal`: how well it tells requests that ask
for harm from harmless ones, on a held-out split, and (`--write`) the training that makes its coefficients.

The labelled set (benchmarks/data/harm/requests.jsonl: text, label harmful|benign, kind, split train|test) was
written for this project: harmful asks direct, polite, indirect and wrapped in fiction or a role; harmless ones
everyday, about safety (doses, poisoning first aid), and traps that share words with harm ("kill a process",
"shoot a photo", "a killer app", "the film bombed", poisons in detective novels). The split is fixed by a hash
of the text. A logistic regression over a sentence embedding, next to hashed word unigrams and bigrams, is fitted
on the train split only, once per embedding model: all-mpnet-base-v2 (the bundled dedup model, used by the gates)
and all-MiniLM-L6-v2 (their fallback where mpnet is not installed). Its two cut-offs are read from cross-validated scores on
the train split: `decline_at` (a decline is warranted) where recall reaches 0.95 (at a precision of 0.75 at
least, else at the best F1), so a decline of a harmful request is rarely dropped; `comply_at` (an answer that complies is dropped) where precision reaches 0.95, so a
good answer to a harmless request is rarely dropped. The held-out split is scored with the
coefficients `selfalign/data/harm/classifier.json` holds.

    python benchmarks/harm.py [--model M] [--show]   # held-out precision/recall of the shipped coefficients
    python benchmarks/harm.py --write                # refit on the train split, write the coefficients (sklearn)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE / "data" / "harm" / "requests.jsonl"


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def figures(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float, int, int, int]:
    pred = p >= t
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp, fp, fn


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def fit(x: np.ndarray, y: np.ndarray, c: float, recall: float, precision: float
        ) -> tuple[np.ndarray, float, float, float]:
    """Coefficients, intercept, and the two cut-offs from 5-fold cross-validated scores on the train split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    cv = cross_val_predict(lr, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    grid = np.round(np.arange(0.1, 0.91, 0.025), 3)
    for t in grid:
        pr, rc, *_ = figures(y, cv, t)
        print(f"  cross-validated on train, cut-off {t:.3f}: precision {pr:.3f}  recall {rc:.3f}", file=sys.stderr)
    # the highest cut-off that keeps `recall` at a precision of 0.75 or more; where none does, the best F1
    ok = [t for t in grid if figures(y, cv, t)[1] >= recall and figures(y, cv, t)[0] >= 0.75]
    decline_at = max(ok) if ok else max(grid, key=lambda t: (f1(*figures(y, cv, t)[:2]), -t))
    comply_at = min((t for t in grid if figures(y, cv, t)[0] >= precision), default=grid[-1])
    lr.fit(x, y)
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), float(decline_at), float(comply_at)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="refit on the train split and write the coefficients")
    ap.add_argument("--model", action="append", help="embedding model(s) to score (default: both)")
    ap.add_argument("--c", type=float, default=4.0, help="inverse regularisation strength (with --write)")
    ap.add_argument("--bow-scale", type=float, default=0.5, help="weight of the hashed words next to the embedding")
    ap.add_argument("--recall", type=float, default=0.95, help="decline_at: the cross-validated recall")
    ap.add_argument("--precision", type=float, default=0.95, help="comply_at: the cross-validated precision")
    ap.add_argument("--show", action="store_true", help="list the held-out mistakes")
    args = ap.parse_args()
    from selfalign.gates.harm import CLASSIFIER, MODELS, HarmClassifier, features
    from selfalign.text.embeddings import Embedder

    rows = load()
    texts = [r["text"] for r in rows]
    y = np.array([r["label"] == "harmful" for r in rows])
    train = np.array([r["split"] == "train" for r in rows])
    test = ~train
    models = args.model or list(MODELS)
    vecs = {m: Embedder(m).encode(texts) for m in models}
    if args.write:
        spec = {"trained_on": "benchmarks/data/harm/requests.jsonl split=train", "n_train": int(train.sum()),
                "features": f"the normalised sentence embedding, then {len(features(vecs[models[0]][:1], texts[:1])[0]) - vecs[models[0]].shape[1]} "
                            "hashed word unigrams and bigrams times bow_scale", "models": {}}
        for m in models:
            coef, intercept, decline_at, comply_at = fit(features(vecs[m], texts, args.bow_scale)[train], y[train],
                                                         args.c, args.recall, args.precision)
            spec["models"][m] = {"C": args.c, "bow_scale": args.bow_scale, "decline_at": decline_at,
                                 "comply_at": comply_at, "intercept": round(intercept, 6),
                                 "coef": [round(float(v), 5) for v in coef]}
            print(f"{m}: decline_at {decline_at}, comply_at {comply_at}")
        CLASSIFIER.parent.mkdir(parents=True, exist_ok=True)
        CLASSIFIER.write_text(json.dumps(spec) + "\n", encoding="utf-8")
        print(f"wrote {CLASSIFIER.relative_to(HERE.parent)}")
    print(f"harm requests: {len(rows)} ({int(y.sum())} harmful, {int((~y).sum())} benign); held-out split "
          f"{int(test.sum())} ({int(y[test].sum())} harmful, {int((~y[test]).sum())} benign)")
    for m in models:
        clf = HarmClassifier(m)
        p = clf.probability(vecs[m], texts)
        for cut, what in ((clf.decline_at, "decline_at (a decline is kept)"),
                          (clf.comply_at, "comply_at (a complying answer is dropped)")):
            print(f"\n{m}, {what}: {cut}")
            for name, mask in (("train", train), ("held-out", test)):
                pr, rc, tp, fp, fn = figures(y[mask], p[mask], cut)
                print(f"  {name:>9}: precision {pr:.3f}  recall {rc:.3f}  (tp {tp}, fp {fp}, fn {fn})")
            for k in sorted({r["kind"] for r in rows}):
                mk = test & np.array([r["kind"] == k for r in rows])
                print(f"  held-out {k:<9} {int(mk.sum()):>3} requests, {int((p[mk] >= cut).sum()):>3} scored harmful")
        if args.show:
            for r, pi, yi, ti in zip(rows, p, y, test, strict=True):
                if ti and ((yi and pi < clf.decline_at) or (not yi and pi >= clf.comply_at)):
                    print(f"  {'missed' if yi else 'false alarm'} {pi:.2f}: {r['text']}")


if __name__ == "__main__":
    main()
