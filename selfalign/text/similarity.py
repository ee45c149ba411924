"""Near-duplicate search over normalised embeddings: candidate pairs, then first-kept resolution.

Two ways to find the pairs at or above a cosine threshold:
- `brute_pairs`: every row against every earlier row, in tiles (memory: the matrix plus one tile).
  Exact, quadratic in N.
- `cluster_pairs`: SemDeDup-style. k-means on the embeddings (trained on a sample), each row joins its
  `probes` nearest clusters, pairs are searched only inside clusters. Near linear in N; a pair whose two
  rows share none of their nearest clusters is missed (benchmarks/dedup.py measures how many).

`first_kept` then walks the rows in input order and keeps a row unless it is close to an earlier kept
row, which is what a sequential pass would decide given the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Progress = Callable[[int, int], None]  # (rows done, rows in all)


def brute_pairs(vectors: np.ndarray, threshold: float, block: int = 1024, tile: int = 8192,
                progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with cosine >= threshold, as arrays (i, j, cosine)."""
    n = len(vectors)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        rows = vectors[r0:r1]
        for c0 in range(0, r1, tile):
            c1 = min(r1, c0 + tile)
            sims = rows @ vectors[c0:c1].T
            hit = sims >= threshold
            if c1 > r0:  # the tile reaches this block: keep only earlier columns
                hit &= (np.arange(c0, c1)[None, :] < np.arange(r0, r1)[:, None])
            jj, ii = np.nonzero(hit)
            if len(jj):
                found.append((ii + c0, jj + r0, sims[jj, ii]))
        if progress:
            progress(r1, n)
    return _concat(found)


def kmeans_labels(vectors: np.ndarray, clusters: int, probes: int, seed: int = 0,
                  sample: int = 128) -> np.ndarray:
    """For each row, its `probes` nearest k-means centroids (n x probes). Trained on a sample of rows."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    train = vectors if len(vectors) <= sample * clusters else vectors[rng.choice(len(vectors), sample * clusters, replace=False)]
    # one thread (OpenMP and BLAS): on a busy machine sklearn's spinning threads took 11.6 s here instead of 0.95 s
    # (12.7k x 384, k = 99; 2 cores, load 3.7)
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=clusters, n_init=1, max_iter=25, random_state=seed).fit(train)
    centroids = km.cluster_centers_.astype(np.float32)
    out = np.empty((len(vectors), probes), dtype=np.int32)
    for start in range(0, len(vectors), 8192):
        sims = vectors[start:start + 8192] @ centroids.T  # rows are unit length: nearest = largest product
        out[start:start + 8192] = np.argsort(-sims, axis=1)[:, :probes]
    return out


def cluster_pairs(vectors: np.ndarray, threshold: float, clusters: int, probes: int = 2, seed: int = 0,
                  tile: int = 4096, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) with cosine >= threshold among rows that share one of their `probes` nearest clusters."""
    n = len(vectors)
    labels = kmeans_labels(vectors, clusters, probes, seed)
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")  # grouped by cluster, rows ascending inside each
    members_of = np.split(order // probes, np.flatnonzero(np.diff(flat[order])) + 1)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    done = 0
    for members in members_of:
        for r0 in range(0, len(members), tile):
            rows = members[r0:r0 + tile]
            queries = vectors[rows]
            for c0 in range(0, r0 + len(rows), tile):
                cols = members[c0: min(c0 + tile, r0 + len(rows))]
                sims = queries @ vectors[cols].T
                hit = (sims >= threshold) & (cols[None, :] < rows[:, None])
                jj, ii = np.nonzero(hit)
                if len(jj):
                    found.append((cols[ii], rows[jj], sims[jj, ii]))
        done += len(members)
        if progress:
            progress(done // probes, n)
    i, j, s = _concat(found)
    if probes > 1 and len(i):  # a pair found in two shared clusters counts once
        _, first = np.unique(i.astype(np.int64) * n + j, return_index=True)
        i, j, s = i[first], j[first], s[first]
    return i, j, s


def first_kept(n: int, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], eligible: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Walk rows 0..n-1 in order; a row goes if it is close to an earlier kept row.

    Returns (duplicate_of, similarity): -1 / 0 for kept rows, else the most similar earlier kept row.
    Rows with `eligible` False are gone already (e.g. contaminated): they never make another row go.
    """
    i, j, s = pairs
    dup_of = np.full(n, -1, dtype=np.int64)
    best = np.zeros(n, dtype=np.float32)
    kept = np.ones(n, dtype=bool) if eligible is None else eligible.copy()
    if len(j):
        order = np.lexsort((i, j))
        i, j, s = i[order], j[order], s[order]
        starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
        ends = np.r_[starts[1:], len(j)]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            row = int(j[a])
            if not kept[row]:
                continue
            alive = kept[i[a:b]]
            if alive.any():
                k = a + int(np.argmax(np.where(alive, s[a:b], -np.inf)))
                kept[row], dup_of[row], best[row] = False, int(i[k]), float(s[k])
    return dup_of, best


def _concat(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return tuple(np.concatenate([f[k] for f in found]) for k in range(3))  # type: ignore[return-value]
