"""Lexical near duplicates (MinHash LSH over word shingles, with rensa) and the second look every candidate
pair gets before it is called a duplicate.

Short prompts move a lot in embedding space when one word changes, so the semantic pass alone misses
copies with a word inserted, deleted or swapped; word shingles catch those whatever the embedding says.
Both passes also propose pairs that look alike but mean different things ("What is C++?" / "What is C#?",
"12 times 13" / "12 times 14", "can fly" / "cannot fly", "Fahrenheit to Celsius" / the reverse): the second
look compares numbers, negations, rare tokens and directions, and keeps both when they differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

NUM_PERM = 128
BANDS = 32  # 32 bands of 4 rows: pairs with Jaccard 0.5 are candidates with probability 0.87, 0.6 with 0.99
SEED = 7

from selfalign.records import TOKEN as _TOKEN
from selfalign.records import normalize_text as normalize
from selfalign.records import tokens
_NEGATION = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "can't", "won't",
             "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "shouldn't", "wouldn't",
             "couldn't", "mustn't", "haven't", "hasn't", "hadn't", "n't", "nor"}
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_DIRECTION = {"to", "into", "from", "than", "vs", "versus", "over", "before", "after", "against"}
_STOP = set("""a an the and or of in on at by for with about as is are was were be been do does did can could
would should will shall may might must i me my we our you your it its this that these those what which who how
why when where please just really actually some any""".split())


def shingles(toks: list[str]) -> list[str]:
    """Words and word pairs: one inserted, deleted or swapped word in ten leaves Jaccard near 0.8."""
    return toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]


@dataclass(frozen=True)
class Look:
    """What the second look compares, kept per text (small: no text held in memory)."""

    numbers: frozenset[str]
    negations: int
    rare: frozenset[str]  # names and symbols: capitalised inside a sentence, ALL CAPS, or with + # .
    directed: frozenset[tuple[str, str]]  # (x, y) for "x to y", "x than y", ...
    words: frozenset[str]  # content words, to see whether the other text has a rare one too


def look(text: str) -> Look:
    raw = _TOKEN.findall(text.replace("’", "'"))
    toks = [t.casefold() for t in raw]
    numbers = frozenset(_NUMBER_WORDS.get(t, t) for t in toks if t[0].isdigit() or t in _NUMBER_WORDS)
    negations = sum(t in _NEGATION or t.endswith("n't") for t in toks)
    rare = set()
    sentence_start = True
    for r, t in zip(raw, toks, strict=True):
        if re.search(r"[+#.]", r) and not r[0].isdigit() or (r[:1].isupper() and not sentence_start and t not in _STOP) \
                or (len(r) > 1 and r.isupper() and r.isalpha()):
            rare.add(t)
        sentence_start = False
    for m in re.finditer(r"[.!?]\s+(\S+)", text):  # words that open a later sentence are not names either
        rare.discard(m.group(1).casefold().strip("\"'"))
    directed = set()
    for k, t in enumerate(toks):
        if t in _DIRECTION and 0 < k < len(toks) - 1:
            before = next((x for x in reversed(toks[:k]) if x not in _STOP and x not in _DIRECTION), None)
            after = next((x for x in toks[k + 1:] if x not in _STOP and x not in _DIRECTION), None)
            if before and after and before != after:
                directed.add((before, after))
    return Look(numbers, negations, frozenset(rare), frozenset(directed),
                frozenset(t for t in toks if t not in _STOP))


def differs(a: Look, b: Look) -> str | None:
    """Why two texts that look alike mean different things, or None when nothing tells them apart."""
    if a.numbers != b.numbers:
        return f"numbers differ ({' '.join(sorted(a.numbers ^ b.numbers))})"
    if (a.negations > 0) != (b.negations > 0) or abs(a.negations - b.negations) % 2:
        return "negation differs"
    odd = sorted(t for t in a.rare | b.rare if (t in a.words) != (t in b.words))
    if odd:
        return f"names or symbols differ ({' '.join(odd)})"
    if any((y, x) in b.directed and (x, y) not in b.directed for x, y in a.directed):
        return "direction differs"
    return None


class MinHashIndex:
    """MinHash signatures (rensa) of every row added, and an LSH index over them: each new row's earlier
    candidates with their estimated Jaccard similarity. Memory: NUM_PERM 4-byte values a row."""

    def __init__(self, threshold: float = 0.7, num_perm: int = NUM_PERM, bands: int = BANDS):
        from rensa import RMinHashLSH

        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=bands)
        self.sigs = np.zeros((1024, num_perm), dtype=np.uint32)
        self.size = 0

    def signature(self, text: str):  # noqa: ANN201 - rensa.RMinHash
        from rensa import RMinHash

        m = RMinHash(num_perm=self.num_perm, seed=SEED)
        m.update(shingles(tokens(text)) or [""])
        return m

    def add(self, text: str, search: bool = True) -> tuple[int, list[tuple[int, float]]]:
        """Add one row; return its row number and the earlier rows at or above the threshold."""
        m = self.signature(text)
        sig = np.asarray(m.digest(), dtype=np.uint32)
        found = self.match(m, sig) if search and self.size else []
        if self.size == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.zeros_like(self.sigs)])
        self.sigs[self.size] = sig
        self.lsh.insert(self.size, m)
        self.size += 1
        return self.size - 1, found

    def match(self, m, sig: np.ndarray | None = None) -> list[tuple[int, float]]:  # noqa: ANN001
        """Rows whose estimated Jaccard with the signature `m` is at or above the threshold."""
        sig = np.asarray(m.digest(), dtype=np.uint32) if sig is None else sig
        cands = [c for c in self.lsh.query(m) if c < self.size]
        if not cands:
            return []
        est = (self.sigs[cands] == sig).mean(axis=1)
        return [(int(c), float(j)) for c, j in zip(cands, est, strict=True) if j >= self.threshold]
