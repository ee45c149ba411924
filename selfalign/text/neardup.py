"""Lexical near duplicates (MinHash LSH over word shingles, with rensa) and the second look every candidate
pair gets before it is called a duplicate.

Short prompts move a lot in embedding space when one word changes, so the semantic pass alone misses
copies with a word inserted, deleted or swapped; word shingles catch those whatever the embedding says.
Both passes also propose pairs that look alike but mean different things ("What is C++?" / "What is C#?",
"12 times 13" / "12 times 14", "can fly" / "cannot fly", "Fahrenheit to Celsius" / the reverse): the second
look compares numbers, negations, rare tokens and directions, and keeps both when they differ. Seed tasks on
one subject that ask for another output ("find the offending phrase" / "classify the sentence", another list of
fields, JSON / a table, into French / into German, a poem / a limerick) are kept apart too (asks(), in tasks.py).
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from selfalign.text.normalize import _STOP, _stem, tokens
from selfalign.text.normalize import NUMBER_WORDS as _NUMBER_WORDS
from selfalign.text.normalize import TOKEN as _TOKEN
from selfalign.text.tasks import asks

NUM_PERM = 128
BANDS = 32  # 32 bands of 4 rows: pairs with Jaccard 0.5 are candidates with probability 0.87, 0.6 with 0.99
SEED = 7

_NEGATION = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "can't", "won't",
             "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "shouldn't", "wouldn't",
             "couldn't", "mustn't", "haven't", "hasn't", "hadn't", "n't"}
_DIRECTION = {"to", "into", "from", "than", "vs", "versus", "over", "before", "after", "against"}
# opposites: a pair of prompts that differ by one of these asks for opposite things
_OPPOSITES = [tuple(p.split("/")) for p in """increase/decrease raise/lower rise/fall grow/shrink gain/lose win/lose
before/after above/below over/under up/down in/out inside/outside top/bottom front/back left/right north/south
east/west early/late first/last start/end begin/end open/close push/pull buy/sell import/export input/output
add/remove add/subtract plus/minus include/exclude accept/reject allow/forbid enable/disable on/off
hot/cold warm/cool heat/cool wet/dry soft/hard light/dark light/heavy fast/slow quick/slow high/low tall/short
long/short big/small large/small wide/narrow thick/thin deep/shallow full/empty strong/weak rich/poor
cheap/expensive young/old new/old old/modern easy/hard easy/difficult simple/complex safe/dangerous
healthy/unhealthy good/bad best/worst better/worse more/less most/least many/few maximum/minimum max/min
positive/negative true/false right/wrong correct/incorrect formal/informal public/private legal/illegal
male/female man/woman boy/girl day/night morning/evening summer/winter spring/autumn spring/fall past/future
ascending/descending advantage/disadvantage advantages/disadvantages pros/cons benefit/drawback
agree/disagree like/dislike love/hate friend/enemy give/take send/receive teach/learn lend/borrow
attack/defend win/loss profit/loss credit/debit income/expense asset/liability import/export
encrypt/decrypt encode/decode compress/decompress upload/download login/logout sign-in/sign-out
enter/exit arrive/leave arrival/departure inbound/outbound internal/external major/minor
odd/even inner/outer upper/lower lowercase/uppercase ascend/descend expand/collapse zoom-in/zoom-out
freeze/thaw melt/freeze fresh/frozen raw/cooked sweet/sour sweet/savory sweet/savoury loud/quiet
noisy/quiet busy/quiet rural/urban indoor/outdoor indoors/outdoors online/offline wireless/wired
analog/digital manual/automatic vertical/horizontal always/never everything/nothing all/none
present/absent pass/fail success/failure succeed/fail include/omit visible/invisible possible/impossible
likely/unlikely read/write reading/writing get/set load/save load/store save/delete create/delete
create/destroy insert/delete show/hide start/stop push/pop parent/child client/server source/destination
request/response sender/receiver buyer/seller employer/employee teacher/student question/answer cause/effect
multiply/divide multiplication/division addition/subtraction numerator/denominator row/column rows/columns
he/she his/her him/her largest/smallest biggest/smallest longest/shortest oldest/youngest oldest/newest
speaking/listening""".split()]
_OPPOSITE = {frozenset(p) for p in _OPPOSITES if len(p) == 2}
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "anti")


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
    words: frozenset[str]  # every token, for the overlap and to see whether the other text has a rare one too
    asks: frozenset[str] = frozenset()  # what the instruction asks for: task verbs, outputs, formats (asks())
    languages: frozenset[str] = frozenset()  # the languages it names (natural and programming)
    items: tuple[frozenset[str], ...] = ()  # the items of its longest list ("the date, time and room")


_UNIT = re.compile(r"^(\d+(?:[.,]\d+)*)(?:st|nd|rd|th|k|km)$")  # 5K, 5km, 10th; 6am/6pm, 5mg/5g stay apart
_PRONOUN_BEFORE_ONE = frozenset("each which this that the any every no some another a little".split())


def _number_word(x: str) -> str | None:
    """The number word `x` is ("sixes", "tens" too; not "ones"), or None."""
    for w in (x, x.removesuffix("es"), x.removesuffix("s")):
        if w in _NUMBER_WORDS and (w == x or w != "one"):  # "ones" is not a count
            return w
    return None


def look(text: str) -> Look:
    text = unicodedata.normalize("NFKC", text).replace("’", "'")  # as tokens() reads it
    raw = _TOKEN.findall(text)
    toks = [t.casefold() for t in raw]
    parts = [x for t in toks for x in re.split(r"-(?=\w)", t)]  # "3-day", "ten-hour"
    # "5K" / "5 km" and "10th" are their figure ("6am" / "6pm" are not one figure); "one" after "each", "which",
    # "the", ... or at the end ("write one?") is a pronoun, not a count
    numbers = frozenset(_UNIT.sub(r"\1", x) if x[:1].isdigit() else _NUMBER_WORDS[w] for k, x in enumerate(parts)
                        if x[:1].isdigit() or ((w := _number_word(x)) and not (
                            w == "one" and (k + 1 == len(parts) or (k and parts[k - 1] in _PRONOUN_BEFORE_ONE)))))
    numbers |= {"-" + m for m in re.findall(r"(?<![\w.])-(\d+(?:\.\d+)?)", text)}  # -5 is not 5
    negations = sum(t in _NEGATION or t.endswith("n't") for t in toks)
    rare = set()
    sentence_start = True
    for r, t in zip(raw, toks, strict=True):
        if (re.search(r"[+#.]", r) and not r[0].isdigit()) or not any(c.isalnum() for c in r) or (r[:1].isupper() and not sentence_start and t not in _STOP
                                                             and not t.startswith("i'")) \
                or (len(r) > 1 and r.isupper() and r.isalpha()):
            rare.add(t.removesuffix("'s"))
        sentence_start = False
    for m in re.finditer(r"[.!?]\s+(\S+)", text):  # words that open a later sentence are not names either
        rare.discard(m.group(1).casefold().strip("\"'"))
    directed = set()
    for k, t in enumerate(toks):  # the two content words on each side of "to", "than", "from", ...
        if t in _DIRECTION and 0 < k < len(toks) - 1:
            before = [x for x in reversed(toks[:k]) if x not in _STOP and x not in _DIRECTION][:2]
            after = [x for x in toks[k + 1:] if x not in _STOP and x not in _DIRECTION][:2]
            directed.update((x, y) for x in before for y in after if x != y)
    return Look(numbers, negations, frozenset(rare), frozenset(directed), frozenset(t.removesuffix("'s") for t in toks),
                *asks(text))


# cosine a pair differing in one content word needs: synonym swaps kept 0.83-0.99 of it (2% under 0.90),
# swaps for another thing of the same kind at most 0.86 (benchmarks/dedup_edits.py)
SUBSTITUTION_BAR = 0.87
LOOKALIKE = 0.4  # share of tokens two texts have in common to be judged as look-alikes


def _variant(x: str, y: str) -> bool:
    """One word in two spellings or forms (colour/color, bake/baking, tooth/teeth is not caught)."""
    n = 0
    for cx, cy in zip(x, y):
        if cx != cy:
            break
        n += 1
    return n >= 4 and n >= 0.6 * min(len(x), len(y)) or _stem(x) == _stem(y)


def _opposite(x: str, y: str) -> bool:
    if frozenset((x, y)) in _OPPOSITE or frozenset((_stem(x), _stem(y))) in _OPPOSITE:
        return True
    return any((x == p + y and len(y) >= 4) or (y == p + x and len(x) >= 4) for p in _NEGATING_PREFIXES)


def differs(a: Look, b: Look, cosine: float | None = None, bar: float = SUBSTITUTION_BAR) -> str | None:
    """Why two texts that look alike mean different things, or None when nothing tells them apart.

    Numbers are compared when both texts have some (a paraphrase may write "a week" for "7 days"): look-alikes
    must have the same ones; a paraphrase may leave out or spell differently some of its figures ("two sixes
    with two dice" / "a pair of dice both showing a six"), so it differs only when each text has a figure the
    other lacks ("12 times 13" / "multiply 12 by 14"). The other checks apply to look-alikes, texts sharing at
    least LOOKALIKE of their tokens: a paraphrase words things differently and is judged by its cosine alone. `cosine` (when known) decides a pair that
    differs in one content word only: a synonym keeps the sentence within SUBSTITUTION_BAR, another thing
    of the same kind ("cats"/"dogs", "tea"/"coffee") moves it further; without a cosine such a pair is
    kept apart. Whatever the overlap, two instructions that each name an output, a target language or list
    items the other does not ask for different things (_asked_differently)."""
    union = a.words | b.words
    if not union:
        return "no words to compare"  # emoji or symbols only: only an exact copy is a duplicate
    alike = len(a.words & b.words) / len(union) >= LOOKALIKE
    if a.numbers and b.numbers and a.numbers != b.numbers and (
            alike or (a.numbers - b.numbers and b.numbers - a.numbers)):
        return f"numbers differ ({' '.join(sorted(a.numbers ^ b.numbers))})"
    if why := _asked_differently(a, b):
        return why
    if not alike:
        return None
    if a.numbers != b.numbers:
        return f"numbers differ ({' '.join(sorted(a.numbers ^ b.numbers))})"
    if (a.negations > 0) != (b.negations > 0) or abs(a.negations - b.negations) % 2:
        return "negation differs"
    odd = sorted(t for t in a.rare | b.rare if (t in a.words) != (t in b.words))
    if odd:
        return f"names or symbols differ ({' '.join(odd)})"
    if any((y, x) in b.directed and (x, y) not in b.directed for x, y in a.directed):
        return "direction differs"
    only_a, only_b = a.words - b.words - _STOP, b.words - a.words - _STOP
    for x in only_a:
        for y in only_b:
            if _opposite(x, y):
                return f"opposites ({x} / {y})"
    if 1 <= len(only_a) == len(only_b) <= 2 and (cosine is None or cosine < bar):
        swapped = [(x, y) for x in sorted(only_a) for y in sorted(only_b) if not _variant(x, y)]
        if len(swapped) == len(only_a) ** 2:  # no word on one side is a form of one on the other
            pairs = ", ".join(f"{x} / {y}" for x, y in zip(sorted(only_a), sorted(only_b)))
            return (f"{'one word differs' if len(only_a) == 1 else 'two words differ'} ({pairs}"
                    f"{'' if cosine is None else f', cosine {cosine:.2f}'})")
    return None


LOOKS_HELD = 8192  # kept_apart holds this many recent Looks (a few KB each) and computes the others again


def kept_apart(i: np.ndarray, j: np.ndarray, text: Callable[[int], str], cosine: Callable[[int, int], float | None],
               bar: float = SUBSTITUTION_BAR, held: int = LOOKS_HELD) -> np.ndarray:
    """Per pair (i[k], j[k]) of rows: whether the second look (differs) keeps the two texts apart. `text(row)` reads
    a row's text back; the Looks of the `held` rows used last are kept, so memory does not grow with the rows."""
    looks: OrderedDict[int, Look] = OrderedDict()

    def look_at(row: int) -> Look:
        if row in looks:
            looks.move_to_end(row)
            return looks[row]
        looks[row] = found = look(text(row))
        if len(looks) > held:
            looks.popitem(last=False)
        return found

    apart = np.zeros(len(i), dtype=bool)
    for c in range(0, len(i), 65536):  # a slice of the pairs as Python ints at a time
        for k, (a, b) in enumerate(zip(i[c:c + 65536].tolist(), j[c:c + 65536].tolist(), strict=True), c):
            apart[k] = bool(differs(look_at(a), look_at(b), cosine(a, b), bar))
    return apart


def _asked_differently(a: Look, b: Look) -> str | None:
    """Why two instructions ask for different outputs, or None: each names an output, a language or list items
    the other does not."""
    if a.asks - b.asks and b.asks - a.asks:
        return f"asks for another output ({' '.join(sorted(a.asks - b.asks))} / {' '.join(sorted(b.asks - a.asks))})"
    if a.languages - b.languages and b.languages - a.languages:
        return (f"another language ({' '.join(sorted(a.languages - b.languages))} / "
                f"{' '.join(sorted(b.languages - a.languages))})")
    # lists are compared between instructions that ask for the same thing ("extract ..."), where they name the fields
    if a.asks and a.asks == b.asks and a.items and b.items and max(len(a.items), len(b.items)) >= 3:
        only_a = [x for x in a.items if not any(x & y for y in b.items)]
        only_b = [y for y in b.items if not any(x & y for x in a.items)]
        if only_a and only_b and len(only_a) + len(only_b) >= 3:  # one synonym swapped in a list is a rewording
            return (f"another list ({', '.join(' '.join(sorted(x)) for x in only_a)} / "
                    f"{', '.join(' '.join(sorted(y)) for y in only_b)})")
    return None


class MinHashIndex:
    """MinHash signatures (rensa) of every row added, and LSH over them: rows sharing one of BANDS bands (runs of
    num_perm // BANDS values) are candidates, kept when their estimated Jaccard similarity reaches the threshold.

    `pairs()` finds them all at once, a band at a time, by sorting (no table of buckets): memory is the signatures
    (num_perm 4-byte values a row, spilled to a temporary file until then) plus one band's sort. With `queryable`
    (a small reference set) the buckets are kept in a dict and `match` looks up one signature at a time."""

    def __init__(self, threshold: float = 0.7, num_perm: int = NUM_PERM, bands: int = BANDS, queryable: bool = False):
        self.threshold, self.num_perm, self.bands = threshold, num_perm, bands
        self.width = num_perm // bands
        self.size = 0
        self._buckets: dict[tuple[int, bytes], list[int]] | None = {} if queryable else None
        self._sigs: list[np.ndarray] = []  # queryable: the signatures, else spilled
        self._spill = None if queryable else tempfile.TemporaryFile(prefix="selfalign-minhash-")

    def signature(self, text: str) -> np.ndarray:
        from rensa import RMinHash

        m = RMinHash(num_perm=self.num_perm, seed=SEED)
        m.update(shingles(tokens(text)) or [text])
        return np.asarray(m.digest(), dtype=np.uint32)

    def add(self, sig: np.ndarray) -> None:
        """Add a row with signature `sig` (from `signature`)."""
        if self._buckets is None:
            self._spill.write(sig.tobytes())
        else:
            self._sigs.append(sig)
            for b in range(self.bands):
                self._buckets.setdefault((b, sig[b * self.width:(b + 1) * self.width].tobytes()), []).append(self.size)
        self.size += 1

    def match(self, sig: np.ndarray) -> list[tuple[int, float]]:
        """(queryable) Rows whose estimated Jaccard with `sig` is at or above the threshold, band by band."""
        cands = list(dict.fromkeys(row for b in range(self.bands)
                                   for row in self._buckets.get((b, sig[b * self.width:(b + 1) * self.width].tobytes()), ())))
        if not cands:
            return []
        est = (np.stack([self._sigs[c] for c in cands]) == sig).mean(axis=1)
        return [(c, float(j)) for c, j in zip(cands, est, strict=True) if j >= self.threshold]

    def pairs(self, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair of rows (i < j) sharing a band with estimated Jaccard at or above the threshold, as arrays
        (i, j, Jaccard) ordered by i then j; each pair once (under the first band they share)."""
        self._spill.flush()
        self._spill.seek(0)
        sigs = np.fromfile(self._spill, dtype=np.uint32).reshape(-1, self.num_perm)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for b in range(self.bands):
            band = sigs[:, b * self.width:(b + 1) * self.width]
            order = np.lexsort(band.T[::-1])
            same = (band[order[1:]] == band[order[:-1]]).all(axis=1)  # sorted neighbours in one bucket
            bucket = np.r_[0, np.cumsum(~same)]
            pos, step = np.flatnonzero(same), 1
            while len(pos):  # every pair of a bucket: its members `step` apart in the sorted order
                for c in range(0, len(pos), chunk):
                    a, z = order[pos[c:c + chunk]], order[pos[c:c + chunk] + step]
                    i, j = np.minimum(a, z), np.maximum(a, z)
                    before = (sigs[i, :b * self.width] == sigs[j, :b * self.width]).reshape(len(i), b, self.width)
                    est = (sigs[i] == sigs[j]).mean(axis=1)
                    hit = (est >= self.threshold) & ~before.all(axis=2).any(axis=1)  # not found under a band before
                    found.append((i[hit], j[hit], est[hit]))
                step += 1
                pos = pos[pos + step < len(order)]
                pos = pos[bucket[pos + step] == bucket[pos]]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        i, j, est = (np.concatenate([f[k] for f in found]) for k in range(3))
        order = np.lexsort((j, i))
        return i[order], j[order], est[order]
