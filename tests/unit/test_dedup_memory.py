"""The dedup stage's records out, pinned: which records go, why, for which earlier record and at what similarity.

The figures were produced by the stage before its per-text state moved into arrays (dicts, lists and rensa's
LSH index then); they must not move when its memory is reworked. benchmarks/dedup.py --memory measures that memory.
"""

import hashlib
import random

import numpy as np
import pytest

SUBJECTS = ["the cache", "a list", "each file", "the parser", "a socket", "the queue", "an index", "the report"]
VERBS = ["Sort", "Read", "Write", "Merge", "Split", "Check", "Count", "Parse", "Load", "Save"]
TAILS = ["quickly", "in place", "by name", "from disk", "twice", "per line", "as json", "on error", "in order"]


class HashedWords:
    """A fake embedder: each word adds +-1 to two dimensions picked by its hash (texts sharing words are close)."""

    name, dim = "all-mpnet-base-v2", 64

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for k, t in enumerate(texts):
            for w in t.lower().replace(".", "").split():
                h = hashlib.blake2b(w.encode(), digest_size=4).digest()
                out[k, h[0] % self.dim] += 1.0 if h[1] & 1 else -1.0
                out[k, h[2] % self.dim] += 1.0 if h[3] & 1 else -1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def texts(n=120, seed=3):
    """Template sentences; a tenth exact copies (upper case), a quarter edits of an earlier one."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if out and r < 0.1:
            out.append(rng.choice(out).upper())
        elif out and r < 0.35:
            w = rng.choice(out).rstrip(".").split()
            k = rng.randrange(4)
            if k == 0:
                w.insert(rng.randrange(len(w)), rng.choice(TAILS))
            elif k == 1 and len(w) > 4:
                del w[rng.randrange(1, len(w))]
            elif k == 2:
                w[rng.randrange(len(w))] = rng.choice(VERBS).lower()
            else:
                w = w[::-1]
            out.append(" ".join(w) + ".")
        else:
            out.append(f"{rng.choice(VERBS)} {rng.choice(SUBJECTS)} and {rng.choice(SUBJECTS)} "
                       f"{' '.join(rng.sample(TAILS, 3))} {rng.randrange(3) + 1} times.")
    return out


def run(search="all-pairs", embedder=True):
    from selfalign.records import Dropped, PromptRecord
    from selfalign.report.counts import Report
    from selfalign.stages.dedup import Dedup, dedup

    ts = texts()
    recs = [PromptRecord(id=f"r{i}", prompt=t) for i, t in enumerate(ts)]
    against = [("ref-a", ts[5].lower()), ("ref-b", ts[17] + " as well"), ("ref-c", "Count the queue by name in place 2 times.")]
    cfg = Dedup(threshold=0.9, search=search, **({"cluster_size": 20} if search == "cluster" else {}))
    report = Report("dedup")
    out = [f"{o.id} {o.drop_reason} {o.duplicate_of} {o.similarity} {o.match}" if isinstance(o, Dropped) else o.id
           for o in dedup(recs, cfg, report, HashedWords() if embedder else None, against)]
    return out, report.extra.get("pairs_kept_apart_by_second_look")


SEMANTIC = [
    "r3 contaminated ref-a 1.0 exact", "r5 contaminated ref-a 1.0 exact", "r6 contaminated ref-a 1.0 semantic",
    "r9 semantic_duplicate r4 0.9537 semantic", "r11 contaminated ref-a 0.967 semantic",
    "r13 exact_duplicate r1 1.0 exact", "r15 exact_duplicate r1 1.0 exact", "r16 contaminated ref-a 0.9199 semantic",
    "r17 contaminated ref-b 0.8516 lexical", "r19 exact_duplicate r1 1.0 exact",
    "r22 semantic_duplicate r1 0.9737 semantic", "r24 contaminated ref-a 0.9199 semantic",
    "r28 exact_duplicate r23 1.0 exact", "r31 semantic_duplicate r4 1.0 semantic",
    "r33 semantic_duplicate r26 0.9412 semantic", "r39 exact_duplicate r34 1.0 exact",
    "r42 contaminated ref-b 0.9181 semantic", "r46 exact_duplicate r32 1.0 exact",
    "r63 semantic_duplicate r32 0.9432 semantic", "r69 semantic_duplicate r4 0.9617 semantic",
    "r70 exact_duplicate r23 1.0 exact", "r74 exact_duplicate r55 1.0 exact",
    "r75 semantic_duplicate r67 0.9474 semantic", "r78 semantic_duplicate r72 0.9737 semantic",
    "r80 semantic_duplicate r32 0.9706 semantic", "r82 semantic_duplicate r23 1.0 semantic",
    "r86 contaminated ref-a 0.8281 lexical", "r88 semantic_duplicate r1 0.9432 semantic",
    "r93 semantic_duplicate r84 0.9723 semantic", "r96 semantic_duplicate r76 0.9504 semantic",
    "r102 semantic_duplicate r47 0.9688 semantic", "r106 exact_duplicate r51 1.0 exact",
    "r107 exact_duplicate r32 1.0 exact", "r108 exact_duplicate r23 1.0 exact",
    "r112 semantic_duplicate r104 0.9643 semantic", "r113 exact_duplicate r87 1.0 exact",
    "r116 semantic_duplicate r61 0.9316 semantic", "r117 semantic_duplicate r77 1.0 semantic",
    "r118 exact_duplicate r37 1.0 exact", "r119 semantic_duplicate r52 0.96 semantic",
]
LEXICAL = [
    "r3 contaminated ref-a 1.0 exact", "r5 contaminated ref-a 1.0 exact", "r9 lexical_duplicate r4 0.8672 lexical",
    "r11 lexical_duplicate r6 0.9375 lexical", "r13 exact_duplicate r1 1.0 exact",
    "r15 exact_duplicate r1 1.0 exact", "r17 contaminated ref-b 0.8516 lexical", "r19 exact_duplicate r1 1.0 exact",
    "r22 lexical_duplicate r1 0.8203 lexical", "r28 exact_duplicate r23 1.0 exact",
    "r33 lexical_duplicate r26 0.7656 lexical", "r39 exact_duplicate r34 1.0 exact",
    "r46 exact_duplicate r32 1.0 exact", "r63 lexical_duplicate r32 0.7891 lexical",
    "r70 exact_duplicate r23 1.0 exact", "r74 exact_duplicate r55 1.0 exact",
    "r78 lexical_duplicate r72 0.7734 lexical", "r80 lexical_duplicate r32 0.8516 lexical",
    "r86 contaminated ref-a 0.8281 lexical", "r93 lexical_duplicate r84 0.8359 lexical",
    "r96 lexical_duplicate r76 0.7969 lexical", "r102 lexical_duplicate r47 0.8672 lexical",
    "r106 exact_duplicate r51 1.0 exact", "r107 exact_duplicate r32 1.0 exact", "r108 exact_duplicate r23 1.0 exact",
    "r110 lexical_duplicate r42 0.8672 lexical", "r113 exact_duplicate r87 1.0 exact",
    "r116 lexical_duplicate r61 0.7812 lexical", "r118 exact_duplicate r37 1.0 exact",
    "r119 lexical_duplicate r52 0.9766 lexical",
]


@pytest.mark.parametrize("search", ["all-pairs", "cluster"])
def test_semantic_and_lexical_passes_drop_the_same_records_for_the_same_reasons(search):
    out, apart = run(search)
    assert [o.split()[0] for o in out] == [f"r{i}" for i in range(120)]  # every record, in input order
    assert [o for o in out if " " in o] == SEMANTIC
    assert apart == 25


def test_lexical_pass_alone_drops_the_same_records():
    out, apart = run(embedder=False)
    assert [o.split()[0] for o in out] == [f"r{i}" for i in range(120)]
    assert [o for o in out if " " in o] == LEXICAL
    assert apart == 13


def test_minhash_pairs_are_the_pairs_rensas_lsh_index_finds():
    """pairs() (bands grouped by sorting) against rensa's own LSH index queried row by row, as the stage did."""
    from rensa import RMinHash, RMinHashLSH

    from selfalign.text.neardup import NUM_PERM, SEED, MinHashIndex, shingles
    from selfalign.text.normalize import tokens

    ts = texts(400, seed=11)
    index = MinHashIndex(0.6)
    lsh = RMinHashLSH(threshold=0.6, num_perm=NUM_PERM, num_bands=index.bands)
    sigs, expected = [], set()
    for row, t in enumerate(ts):
        m = RMinHash(num_perm=NUM_PERM, seed=SEED)
        m.update(shingles(tokens(t)) or [t])
        sig = np.asarray(m.digest(), dtype=np.uint32)
        assert (sig == index.signature(t)).all()
        for c in lsh.query(m):
            est = float((sigs[c] == sig).mean())
            if est >= 0.6:
                expected.add((c, row, est))
        lsh.insert(row, m)
        sigs.append(sig)
        index.add(sig)
    i, j, est = index.pairs(chunk=7)  # small chunks: pairs cut across them
    got = list(zip(i.tolist(), j.tolist(), est.tolist(), strict=True))
    assert len(got) == len(set(got)) and got == sorted(got)
    assert set(got) == expected and len(expected) > 50
