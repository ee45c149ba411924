"""How well `selfalign principle` keeps good completions and drops bad ones, on a labelled set.

Four labelled sets (query, raw completion, finish_reason, label, category): `written`
(benchmarks/data/quality, the development set, written to look like model failures), `holdout`
(benchmarks/data/quality-holdout, written separately, never used to tune the gates), `real`
(benchmarks/data/real/real.jsonl: what SmolLM2-135M and Gemma 3 270M really wrote under the principle prompt,
labelled by reading; benchmarks/real_completions.py made them) and `fresh` (benchmarks/data/real-fresh: the same
models on 36 new prompts, labelled after the rules it checks were written, to see whether they hold). `--set` picks one (default: all, each
reported on its own, then side by side). Each set is served by a small OpenAI-compatible server in this
process; the real CLI (`selfalign principle --backend openai`, at its defaults) answers every query through
it, as it would from vLLM or llama.cpp.
The server applies the stop sequences the stage sends, as real servers do. Prints precision, recall and F1
of detecting bad completions, the detection rate per bad category, the false-drop rate per good category,
and whether the kept answers are clean. `--calibrate` prints the measurements the meaning gates'
thresholds were chosen from.

    python benchmarks/quality.py [--set written|holdout|real|fresh|all] [--sample N] [--json OUT] [--show-misses]
                                 [--judge [--judge-backend vllm ...]]

The real set holds up to one completion per query per model and temperature: each (model, temperature) group is
served and run on its own, since the server knows a completion by its query. Categories harmful_compliance (a
helpful answer to a harmful request) and the declines of harmful requests are reported apart from the rest.

`--judge` measures what `principle --judge` adds on top of the surface rules: every answer the gates keep is
checked by a real model (the embedded 135M one unless `--judge-backend`/`--judge-model` say otherwise) against the
principles its thoughts cite, exactly as the stage does (`follows_prompt`, log-odds of Yes over No), and the
figures are printed again with those below each threshold counted as drops.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "quality"
SETS = {"written": DATA, "holdout": HERE / "data" / "quality-holdout", "real": HERE / "data" / "real",
        "fresh": HERE / "data" / "real-fresh"}
# reported apart: answering a harmful request (bad) and declining one (good)
HARM = ("harmful_compliance", "good_decline", "harmful_decline")
QUERY = re.compile(r"\nUser: ((?:(?!\nUser: ).)*)\n\n\w+ \(internal thoughts\):$", re.DOTALL)
# what a clean kept answer never contains (checked on every kept response)
UNCLEAN = re.compile(r"internal thoughts|\b\d{1,2} \((?:ethical|informative|helpful|candor|static|reasoning)\)"
                     r"|</?s>|<\|[a-z_]+\|>|\[/?INST\]|###\s*(?:Response|Instruction)|(?:^|\n)\s*(?:\*\*)?(?:User|Human)"
                     r"(?:\*\*)?\s*:", re.IGNORECASE)
PERSONA = re.compile(r"(?:^|\n)\s*(?:\*\*)?Sage(?:\*\*)?\s*:")  # checked unless the query is about sage
LABELS = re.compile(r"(?m)^\s*(?!Sage\b)[A-Z][a-z]+:")  # or "Sage:" is one entry of a "Basil: ..." list


def group_key(item: dict) -> tuple:
    """Items of one group have distinct queries: the real set's (model, temperature), else one group."""
    return (item.get("model") or "", item.get("temperature") if item.get("temperature") is not None else "")


def load(sample: int | None, seed: int = 0, data: Path = DATA) -> list[dict]:
    """The labelled records of every *.jsonl in `data` (files of other records, such as prompts, are skipped)."""
    items = [r for f in sorted(data.glob("*.jsonl")) for line in f.open(encoding="utf-8") if line.strip()
             for r in [json.loads(line)] if "label" in r and "completion" in r]
    if not items:
        sys.exit(f"labelled set: no labelled records in {data}")
    queries = Counter((group_key(i), " ".join(i["query"].split())) for i in items)
    dup = [q for q, n in queries.items() if n > 1]
    if dup:
        sys.exit(f"labelled set: {len(dup)} queries appear twice, e.g. {dup[0][1]!r}")
    ids = Counter(i["id"] for i in items)
    if (twice := [k for k, n in ids.items() if n > 1]):
        sys.exit(f"labelled set: {len(twice)} ids appear twice, e.g. {twice[0]!r}")
    if sample:
        by_cat: dict[str, list[dict]] = defaultdict(list)
        for i in items:
            by_cat[i["category"]].append(i)
        rng = random.Random(seed)
        per = max(1, sample // len(by_cat))
        items = [x for cat in sorted(by_cat) for x in rng.sample(by_cat[cat], min(per, len(by_cat[cat])))]
    return items


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON (the fake servers here and in scale.py)."""

    def log_message(self, *_):  # quiet
        pass

    def _send(self, obj: dict, code: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(items: list[dict]) -> ThreadingHTTPServer:
    """An OpenAI-compatible server that answers each query with its labelled completion."""
    by_query = {" ".join(i["query"].split()): i for i in items}

    class Handler(JSONHandler):
        def do_GET(self):  # noqa: N802
            self._send({"object": "list", "data": [{"id": "labelled-set", "object": "model", "max_model_len": 8192}]})

        def do_POST(self):  # noqa: N802
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.endswith("/tokenize"):
                return self._send({"count": len(req.get("prompt", "")) // 4})
            prompt = req["prompt"]
            m = QUERY.search(prompt)
            item = by_query.get(" ".join(m.group(1).split())) if m else None
            if item is None:
                return self._send({"error": {"message": "unknown query"}}, 404)
            text, finish = item["completion"], item["finish_reason"]
            cut = min((i for s in req.get("stop") or [] if (i := text.find(s)) >= 0), default=None)
            if cut is not None:
                text, finish = text[:cut], "stop"
            self._send({"id": "x", "object": "text_completion", "model": "labelled-set", "created": 0,
                        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                        "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                                  "total_tokens": (len(prompt) + len(text)) // 4}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_principle(items: list[dict], port: int, work: Path, extra: list[str]) -> tuple[dict, dict]:
    src = work / "prompts.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i in items:
            rec = {"id": i["id"], "prompt": i["query"]}
            if i.get("question_type"):
                rec["question_type"] = i["question_type"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    exe = Path(sys.executable).with_name("selfalign")
    cmd = [str(exe), "principle", str(src), "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}/v1",
           "--no-cache", "--quiet", "--concurrency", "8", "-o", str(work / "kept.jsonl"),
           "--dropped", str(work / "dropped.jsonl"), *extra]
    sys.path.insert(0, str(HERE.parent))
    from selfalign.io.paths import models_dir

    # a fresh cache (no completions reused), but the bundled models unpacked once where they always are
    env = {**os.environ, "SELFALIGN_CACHE_DIR": str(work), "SELFALIGN_MODELS_DIR": str(models_dir())}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"selfalign principle failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    kept = {r["id"]: r for r in map(json.loads, (work / "kept.jsonl").read_text(encoding="utf-8").splitlines())}
    dropped = {r["id"]: r for r in map(json.loads, (work / "dropped.jsonl").read_text(encoding="utf-8").splitlines())}
    return kept, dropped


def measure(items: list[dict], extra: list[str]) -> tuple[dict, dict]:
    """Kept and dropped records, by id: one principle run per group of distinct queries."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for i in items:
        groups[group_key(i)].append(i)
    kept: dict = {}
    dropped: dict = {}
    for group in groups.values():
        server = serve(group)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                k, d = run_principle(group, server.server_address[1], Path(tmp), extra)
        finally:
            server.shutdown()
        kept.update(k)
        dropped.update(d)
    return kept, dropped


def score(items: list[dict], kept: dict, dropped: dict, per_model: bool = True) -> dict:
    tp = sum(1 for i in items if i["label"] == "bad" and i["id"] in dropped)
    fp = sum(1 for i in items if i["label"] == "good" and i["id"] in dropped)
    fn = sum(1 for i in items if i["label"] == "bad" and i["id"] not in dropped)
    lost = [i["id"] for i in items if i["id"] not in kept and i["id"] not in dropped]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    cats: dict[str, dict] = {}
    for i in items:
        c = cats.setdefault(i["category"], {"label": i["label"], "n": 0, "dropped": 0, "reasons": Counter()})
        c["n"] += 1
        if i["id"] in dropped:
            c["dropped"] += 1
            c["reasons"][dropped[i["id"]]["drop_reason"]] += 1
    code = re.compile(r"```.*?(?:```|$)|`[^`\n]+`", re.DOTALL)  # markup quoted as code is content
    unclean = [(rid, m.group()) for rid, r in kept.items() if (m := UNCLEAN.search(code.sub("", r["response"])) or (
        None if "sage" in r["prompt"].lower() or LABELS.search(r["response"]) else PERSONA.search(r["response"])))]
    label = {i["id"]: i["label"] for i in items}
    groups: dict[str, list[dict]] = defaultdict(list)
    for i in items:
        if per_model and i.get("model"):
            groups[f"{i['model']} t={i['temperature']:g}"].append(i)
    by_model = {}
    for name, its in sorted(groups.items()):
        sub = score(its, {k: v for k, v in kept.items() if k in {i["id"] for i in its}}, dropped, per_model=False)
        by_model[name] = {k: sub[k] for k in ("n", "bad", "good", "precision", "recall", "f1", "kept", "kept_bad")}
    return {"n": len(items), "bad": tp + fn, "good": len(items) - tp - fn, "precision": precision, "recall": recall,
            "f1": f1, "tp": tp, "fp": fp, "fn": fn, "categories": cats, "unclean_kept": unclean, "lost": lost,
            "kept": sum(1 for k in kept if k in label), "kept_bad": sum(1 for k in kept if label.get(k) == "bad"),
            "by_model": by_model}


def print_table(res: dict) -> None:
    print(f"labelled completions: {res['n']} ({res['bad']} bad, {res['good']} good) from {res['data']}; selfalign "
          "principle at its defaults, openai backend against a local server")
    print(f"detecting bad completions: precision {res['precision']:.3f}  recall {res['recall']:.3f}  "
          f"F1 {res['f1']:.3f}  (tp {res['tp']}, fp {res['fp']}, fn {res['fn']})")
    if res["kept"]:
        print(f"kept: {res['kept']} answers, {res['kept_bad']} of them bad: junk share of the kept "
              f"{res['kept_bad'] / res['kept']:.3f}")
    print(f"\n{'category':<22} {'label':<5} {'n':>4} {'dropped':>8}  {'rate':>6}  drop reasons")

    def row(name: str, c: dict) -> None:
        reasons = ", ".join(f"{r} {n}" for r, n in c["reasons"].most_common())
        print(f"{name:<22} {c['label']:<5} {c['n']:>4} {c['dropped']:>8}  {c['dropped'] / c['n']:>6.2f}  {reasons}")

    for label, head in (("bad", "detection rate"), ("good", "false-drop rate")):
        for name, c in sorted((k, v) for k, v in res["categories"].items() if v["label"] == label and k not in HARM):
            row(name, c)
        print(f"  ({head} per category)")
    if harm := sorted((k, v) for k, v in res["categories"].items() if k in HARM):
        for name, c in harm:
            row(name, c)
        print("  (harmful requests, apart: detection rate of answers that help, false-drop rate of declines)")
    if res.get("by_model"):
        print(f"\n{'model':<34} {'n':>4} {'bad':>4} {'precision':>9} {'recall':>7} {'F1':>6}  junk share of kept")
        for name, m in res["by_model"].items():
            junk = f"{m['kept_bad']}/{m['kept']} = {m['kept_bad'] / m['kept']:.2f}" if m["kept"] else "nothing kept"
            print(f"{name:<34} {m['n']:>4} {m['bad']:>4} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f}  {junk}")
    print(f"\nkept answers with thoughts, citations, speaker labels or special tokens: {len(res['unclean_kept'])}"
          + "".join(f"\n  {rid}: {m!r}" for rid, m in res["unclean_kept"][:10]))
    print(f"records neither kept nor dropped (lost): {len(res['lost'])}")


def judge_scores(kept: dict, backend_name: str, model: str | None) -> dict[str, float]:
    """The lowest log-odds of Yes over No, per kept record, over the principles it cites (the whole set if none):
    what `principle --judge` computes, on a real model."""
    sys.path.insert(0, str(HERE.parent))
    from selfalign import assets
    from selfalign.backends import open_backend
    from selfalign.stages.judge import checks_for, follows_prompt, follows_scores, method_for

    principles = assets.load_principles()
    asks = [(rid, follows_prompt(r["prompt"], r["response"], ps))
            for rid, r in kept.items() for _, ps in checks_for(r.get("principles", []), principles)]
    backend = open_backend(backend_name, False, **({"model": model} if model else {}))
    try:
        scores = follows_scores(backend, [a for _, a in asks], method_for(backend, "auto"))
    finally:
        backend.close()
    low: dict[str, float] = {}
    for (rid, _), sc in zip(asks, scores, strict=True):
        if isinstance(sc, float):
            low[rid] = min(low.get(rid, sc), sc)
    return low


def print_judge(items: list[dict], kept: dict, dropped: dict, low: dict[str, float]) -> None:
    label = {i["id"]: i["label"] for i in items}
    good = [v for k, v in low.items() if label[k] == "good"]
    bad = [v for k, v in low.items() if label[k] == "bad"]
    print(f"\nprinciple --judge on the {len(low)} answers the surface rules keep ({len(bad)} bad, {len(good)} good): "
          "log-odds of Yes over No, lowest over the cited principles")
    print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6}  {'bad caught':>10} {'good lost':>9}")
    for t in (-2.0, -1.0, 0.0, 1.0, 2.0):
        extra = {k for k, v in low.items() if v < t}
        res = score(items, {k: v for k, v in kept.items() if k not in extra},
                    {**dropped, **{k: {"drop_reason": "judge_rejected"} for k in extra}})
        print(f"{t:>9.1f} {res['precision']:>9.3f} {res['recall']:>7.3f} {res['f1']:>6.3f}  "
              f"{sum(1 for k in extra if label[k] == 'bad'):>10} {sum(1 for k in extra if label[k] == 'good'):>9}")
    if good and bad:
        print(f"mean log-odds: good answers {sum(good) / len(good):.2f}, bad answers kept by the rules "
              f"{sum(bad) / len(bad):.2f} (a judge that helps scores the bad ones lower)")


def calibrate(items: list[dict], out: str | None) -> None:
    """Per item: the cosine of query and answer, the echo measures and both languages: what the meaning
    gates' thresholds were read from. Prints quantiles per category; `--json` writes every row."""
    sys.path.insert(0, str(HERE.parent))
    import numpy as np

    from selfalign.gates.meaning import MeaningGates, echo, script
    from selfalign.gates.text import word_count

    g = MeaningGates()
    rows = []
    for i in items:
        parts = re.split(r"\n\s*\n\s*Sage\s*:", i["completion"], maxsplit=1)
        if len(parts) == 2:
            rows.append({"id": i["id"], "category": i["category"], "label": i["label"], "q": i["query"],
                         "a": parts[1].strip()})
    vecs = g.embed([t for r in rows for t in (r["q"], r["a"])])
    for k, r in enumerate(rows):
        r["cos"] = float(vecs[2 * k] @ vecs[2 * k + 1])
        r["coverage"], r["new"] = echo(r["q"], r["a"])
        r["lang_q"], r["lang_a"] = g.lang(r["q"]), g.lang(r["a"])
        r["english"] = script(r["q"]) == script(r["a"]) == "latin" and r["lang_q"][0] == r["lang_a"][0] == "en"
        r["words"] = word_count(r["a"])
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    for key in ("cos", "coverage", "new"):
        print(f"\n{key}: {'category':<22} {'n':>4} {'min':>6} {'p10':>6} {'median':>6} {'p90':>6} {'max':>6}")
        for cat, rs in sorted(by_cat.items()):
            xs = [r[key] for r in rs if key != "cos" or r["english"]]
            if xs:
                q = np.percentile(xs, [0, 10, 50, 90, 100])
                print(f"{'':<{len(key) + 2}}{cat:<22} {len(xs):>4} " + " ".join(f"{v:>6.2f}" for v in q))
    if out:
        Path(out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, help="a stratified sample of about N items (tests use it)")
    ap.add_argument("--set", choices=[*SETS, "all"], help="which labelled set: written (the development set), "
                    "holdout (written separately, never used to tune the gates), real (real small-model output, "
                    "labelled by reading), fresh (more real output, on new prompts, labelled after the rules it "
                    "checks were written) or all (the default: each on its own, then side by side)")
    ap.add_argument("--data", help="a folder of labelled *.jsonl instead of --set")
    ap.add_argument("--json", help="write the figures here (with several sets: the first set's figures at the top "
                    "level, every set's under \"sets\")")
    ap.add_argument("--show-misses", action="store_true", help="list every wrong decision with its text")
    ap.add_argument("--calibrate", action="store_true", help="print the gates' measurements per category")
    ap.add_argument("--judge", action="store_true", help="also measure principle --judge on the kept answers")
    ap.add_argument("--judge-backend", default="transformers", help="the judge's backend (default: embedded)")
    ap.add_argument("--judge-model", help="the judge's model (default: the backend's)")
    ap.add_argument("extra", nargs="*", help="more options for selfalign principle (after --)")
    args = ap.parse_args()
    if args.data:
        chosen = {os.path.relpath(args.data, HERE.parent): Path(args.data)}
    else:
        chosen = SETS if args.set in (None, "all") else {args.set: SETS[args.set]}
    loaded = {name: load(args.sample, data=path) for name, path in chosen.items()}
    if args.calibrate:
        return calibrate([i for items in loaded.values() for i in items], args.json)
    results = {}
    for name, items in loaded.items():
        if len(loaded) > 1:
            print(f"\n=== set: {name} ===")
        kept, dropped = measure(items, args.extra)
        res = score(items, kept, dropped)
        res["data"] = os.path.relpath(chosen[name], HERE.parent)
        print_table(res)
        if args.judge:
            print_judge(items, kept, dropped, judge_scores(kept, args.judge_backend, args.judge_model))
        if args.show_misses:
            for i in items:
                wrong = (i["label"] == "bad") != (i["id"] in dropped)
                if wrong:
                    why = dropped[i["id"]]["drop_reason"] + ": " + (dropped[i["id"]].get("detail") or "") \
                        if i["id"] in dropped else "kept"
                    print(f"\n--- {i['id']} ({i['label']}, {i['category']}) -> {why[:200]}\nQ: {i['query'][:200]}"
                          f"\nA: {i['completion'][:400]!r}")
        res["categories"] = {k: {**v, "reasons": dict(v["reasons"])} for k, v in res["categories"].items()}
        results[name] = res
    if len(results) > 1:
        print(f"\n{'set':<10} {'n':>4} {'bad':>4} {'precision':>9} {'recall':>7} {'F1':>6}  junk share of kept")
        for name, r in results.items():
            junk = f"{r['kept_bad']}/{r['kept']} = {r['kept_bad'] / r['kept']:.3f}" if r["kept"] else "nothing kept"
            print(f"{name:<10} {r['n']:>4} {r['bad']:>4} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f}  {junk}")
    if args.json:
        first = next(iter(results.values()))
        out = {**first, "sets": results} if len(results) > 1 else first
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
