"""Real texts with planted near duplicates, for the novelty / dedup benchmarks.

The texts are docstring sentences of the installed Python packages (no data set is downloaded); each planted near duplicate is an edit of an
earlier text: a word swapped for a synonym, words dropped, a clause added, or the order changed.
"""

from __future__ import annotations

import random
from pathlib import Path

SYNONYMS = {"returns": "gives back", "Return": "Give back", "Returns": "Gives back", "the": "a", "list": "sequence",
            "number": "count", "value": "item", "file": "document", "object": "instance", "function": "routine",
            "given": "specified", "data": "information", "string": "text", "Get": "Fetch", "Set": "Assign",
            "Create": "Make", "new": "fresh", "check": "test", "all": "every", "method": "routine",
            "class": "type", "used": "employed", "specified": "given", "Compute": "Calculate", "error": "failure"}


def real_sentences(n: int) -> list[str]:
    """n distinct real English sentences: first sentences of docstrings of the installed packages.

    Deterministic (sorted files), offline, and far more varied than any template: a fair stand-in for
    generated prompts when no data set can be downloaded.
    """
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["purelib"])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    out: list[str] = []
    for folder in (stdlib, root):
        for path in sorted(folder.rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
            except (SyntaxError, ValueError, RecursionError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.Module)):
                    continue
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                first = " ".join(doc.split("\n\n")[0].split())
                first = first.split(". ")[0].rstrip(".") + "."
                words = first.split()
                if 6 <= len(words) <= 40 and first[0].isalpha() and first.isascii() and first.lower() not in seen:
                    seen.add(first.lower())
                    out.append(first)
                    if len(out) >= n:
                        return out
    raise RuntimeError(f"only {len(out)} docstring sentences found, wanted {n}")


LEAD_INS = ["In short,", "Basically,", "Put simply,", "Note that", "In other words,", "Simply put,"]


def near_duplicate(text: str, rng: random.Random, rewrites: bool = False) -> str:
    """An edit of `text`; with `rewrites`, also paraphrase-like ones (clauses swapped, a lead-in, two edits)."""
    words = text.rstrip(".").split()
    kind = rng.randrange(7 if rewrites else 4)
    if kind == 4:  # swap the two halves around the first comma or "and"
        body = text.rstrip(".")
        for sep in (", ", " and "):
            if sep in body:
                a, b = body.split(sep, 1)
                return f"{b[0].upper()}{b[1:]}{sep}{a[0].lower()}{a[1:]}."
        kind = 5
    if kind == 5:  # a lead-in phrase
        return f"{rng.choice(LEAD_INS)} {words[0].lower() if words[0][1:].islower() else words[0]} {' '.join(words[1:])}."
    if kind == 6:  # two edits
        return near_duplicate(near_duplicate(text, rng), rng)
    if kind == 0:  # swap up to two words for synonyms
        spots = [i for i, w in enumerate(words) if w in SYNONYMS]
        for i in rng.sample(spots, min(2, len(spots))):
            words[i] = SYNONYMS[words[i]]
        if not spots:
            kind = 1
    if kind == 1 and len(words) > 6:  # drop a word
        del words[rng.randrange(1, len(words))]
    elif kind == 2:  # add a short clause
        words += rng.choice([["if", "needed"], ["in", "this", "case"], ["by", "default"], ["as", "well"]])
    elif kind == 3:  # a typo in one word
        i = rng.randrange(len(words))
        w = words[i]
        words[i] = w[:-1] if len(w) > 3 else w + "s"
    out = " ".join(words) + "."
    if out == text:  # no synonym to swap and too short to drop a word: add a clause instead
        out = " ".join(words + ["as", "well"]) + "."
    return out


def with_planted(n: int, share: float, seed: int = 0, rewrites: bool = False) -> tuple[list[str], set[int]]:
    """n texts of which about `share` are near duplicates of an earlier one; returns their positions."""
    rng = random.Random(seed)
    base = real_sentences(n)
    rng.shuffle(base)
    texts: list[str] = []
    planted: set[int] = set()
    src = iter(base)
    while len(texts) < n:
        if texts and rng.random() < share:
            planted.add(len(texts))
            texts.append(near_duplicate(rng.choice(texts[max(0, len(texts) - 2000):]), rng, rewrites))
        else:
            texts.append(next(src))
    return texts, planted
