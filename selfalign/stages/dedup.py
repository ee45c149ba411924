"""Stage: remove exact duplicates (after normalisation) and semantic ones (embedding cosine).

Exact only: one streaming pass. Semantic: records are spooled to a temporary file while their texts are
embedded block by block; then the near pairs are searched (every pair in tiles, or SemDeDup-style inside
k-means clusters past a measured size); then every record comes out in input order, the first occurrence
kept. Memory: the embeddings (N x dim float32) plus one tile of similarities, never N x N.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from pydantic import BaseModel

from selfalign.embed import Embedder, EmbeddingIndex
from selfalign.records import Dropped, Record, normalize_text
from selfalign.report import Report
from selfalign.stages.common import drop

STAGE = "dedup"
# auto: every pair up to this many texts, clusters past it (measured by benchmarks/dedup.py: README, Dedup at scale).
CLUSTER_ABOVE = 20_000

PhaseProgress = Callable[[str, int, int | None], None]  # (phase, records done, records in all or None)


class DedupConfig(BaseModel):
    field: str = "prompt"  # prompt | response | both
    # cosine at or above which two records are duplicates; >1 turns semantic off. 0.90: the best balance of
    # recall (0.86) and precision (0.82) on planted near duplicates in benchmarks/dedup.py
    threshold: float = 0.90
    block: int = 1024  # texts embedded per step
    search: str = "auto"  # all-pairs | cluster | auto (cluster past cluster_above texts)
    cluster_above: int = CLUSTER_ABOVE
    cluster_size: int = 1000  # k-means: k = texts // cluster_size
    probes: int = 2  # each text is searched in its nearest `probes` clusters


REFERENCE_FIELDS = ("prompt", "question", "instruction", "query", "problem", "input", "text")


def load_reference(paths: list[str]) -> list[tuple[str, str]]:
    """(reference id, text) from evaluation-style JSONL files: the first of REFERENCE_FIELDS present.

    The id is the line's own `id`, else `file:line`. A line without any of those fields is an error.
    """
    from selfalign.io import InputError, read_json_lines

    out = []
    for path in paths:
        for lineno, obj in read_json_lines(path):
            if isinstance(obj, InputError):
                raise obj
            text = next((obj[f] for f in REFERENCE_FIELDS if isinstance(obj.get(f), str) and obj[f].strip()), None)
            if text is None:
                raise InputError(path, lineno, f"no text field (one of {', '.join(REFERENCE_FIELDS)})")
            out.append((str(obj.get("id") or f"{path}:{lineno}"), text))
    return out


def dedup_text(rec: Record, field: str) -> str:
    # attributes, not model_dump(): the semantic pass already serialises each record once, for the spool
    if field == "both":
        return f"{getattr(rec, 'prompt', '')}\n{getattr(rec, 'response', '')}"
    value = getattr(rec, field, None)
    if not isinstance(value, str):
        raise ValueError(f"record {rec.id} has no text field {field!r}")
    return value


def text_key(text: str) -> bytes:
    """16 bytes standing for the normalised text: exact-duplicate memory does not grow with text length."""
    return hashlib.blake2b(normalize_text(text).encode(), digest_size=16).digest()


def dedup(records: Iterable[Record], config: DedupConfig, report: Report,
          embedder: Embedder | None = None, against: list[tuple[str, str]] | None = None,
          progress: PhaseProgress | None = None) -> Iterator[Record | Dropped]:
    """Drop records equal or too close to a reference set (`against`), to an earlier record, or both.

    Exact only (no embedder, or threshold above 1): one streaming pass. Semantic: records are spooled
    to a temporary file while their texts are embedded block by block, then the near pairs are searched
    (all pairs, or within k-means clusters past `cluster_above`), then every record comes out in input order.
    """
    if embedder is None or config.threshold > 1:
        yield from _exact_only(records, config.field, report, against or [])
        return
    yield from _Semantic(config, report, embedder, against or [], progress).run(records)


def _exact_only(records: Iterable[Record], field: str, report: Report, against: list[tuple[str, str]]) -> Iterator[Record | Dropped]:
    ref_exact = {text_key(t): rid for rid, t in against}
    exact: dict[bytes, str] = {}
    for rec in records:
        report.read += 1
        key = text_key(dedup_text(rec, field))
        if key in ref_exact:
            report.drop("contaminated")
            yield _dup(rec, "contaminated", ref_exact[key], 1.0)
        elif key in exact:
            report.drop("exact_duplicate")
            yield _dup(rec, "exact_duplicate", exact[key], 1.0)
        else:
            exact[key] = rec.id
            report.kept += 1
            yield rec


class _Semantic:
    """One semantic pass: spool and embed, search, then emit every record in input order."""

    def __init__(self, config: DedupConfig, report: Report, embedder: Embedder, against: list[tuple[str, str]],
                 progress: PhaseProgress | None):
        self.config, self.report, self.embedder = config, report, embedder
        self.progress = progress or (lambda phase, done, total: None)
        self.ref_exact = {text_key(t): rid for rid, t in against}
        self.ref_ids = [rid for rid, _ in against]
        self.ref_index: EmbeddingIndex | None = None
        if against:
            self.ref_index = EmbeddingIndex(embedder.dim)
            self.ref_index.add(embedder.encode([t for _, t in against]))
        self.vectors = EmbeddingIndex(embedder.dim)  # row r: the text of record rec_of_row[r]
        self.rec_of_row: list[int] = []
        self.row_of_rec: dict[int, int] = {}
        self.eligible: list[bool] = []  # False: contaminated, so it can't make a later record go
        self.fate: dict[int, tuple[str, int | str, float]] = {}  # decided before the search
        self.ids: list[str] = []
        self.kinds: list[type[Record]] = []

    def run(self, records: Iterable[Record]) -> Iterator[Record | Dropped]:
        with tempfile.TemporaryFile() as spool:
            self._read(records, spool)
            dup_of, sim = self._search()
            spool.seek(0)
            for pos, line in enumerate(spool):
                rec = self.kinds[pos].model_validate_json(line)
                reason, of, score = self._verdict(pos, dup_of, sim)
                if reason is None:
                    self.report.kept += 1
                    yield rec
                else:
                    self.report.drop(reason)
                    yield _dup(rec, reason, of, score)

    def _read(self, records: Iterable[Record], spool) -> None:
        first: dict[bytes, int] = {}
        pending: list[tuple[int, str]] = []
        for pos, rec in enumerate(records):
            self.report.read += 1
            spool.write(rec.model_dump_json().encode() + b"\n")
            self.ids.append(rec.id)
            self.kinds.append(type(rec))
            text = dedup_text(rec, self.config.field)
            key = text_key(text)
            if key in self.ref_exact:
                self.fate[pos] = ("contaminated", self.ref_exact[key], 1.0)
            elif key in first:
                self.fate[pos] = ("exact_duplicate", first[key], 1.0)
            else:
                first[key] = pos
                pending.append((pos, text))
                if len(pending) >= self.config.block:
                    self._embed(pending)
                    pending = []
        self._embed(pending)

    def _embed(self, pending: list[tuple[int, str]]) -> None:
        if not pending:
            return
        vectors = self.embedder.encode([t for _, t in pending])
        clean = np.ones(len(pending), dtype=bool)
        if self.ref_index is not None:
            best, where = self.ref_index.nearest(vectors)
            clean = best < self.config.threshold
            for k in np.flatnonzero(~clean):
                self.fate[pending[k][0]] = ("contaminated", self.ref_ids[where[k]], float(best[k]))
        for pos, _ in pending:
            self.row_of_rec[pos] = len(self.rec_of_row)
            self.rec_of_row.append(pos)
        self.eligible.extend(clean.tolist())
        self.vectors.add(vectors)
        self.progress("embedding", self.report.read, None)

    def _search(self) -> tuple[np.ndarray, np.ndarray]:
        from selfalign.similarity import brute_pairs, cluster_pairs, first_kept

        cfg, n = self.config, len(self.rec_of_row)
        matrix = self.vectors.matrix()

        def step(done: int, total: int) -> None:
            self.progress("search", done, total)

        clusters = n // cfg.cluster_size
        if n >= 2 and clusters >= 2 and (cfg.search == "cluster" or (cfg.search == "auto" and n > cfg.cluster_above)):
            pairs = cluster_pairs(matrix, cfg.threshold, clusters, cfg.probes, progress=step)
            self.report.extra["search"] = f"{clusters} clusters x {cfg.probes} probes"
        else:
            pairs = brute_pairs(matrix, cfg.threshold, progress=step)
            self.report.extra["search"] = "all pairs"
        return first_kept(n, pairs, np.array(self.eligible, dtype=bool))

    def _verdict(self, pos: int, dup_of: np.ndarray, sim: np.ndarray) -> tuple[str | None, str, float]:
        reason, of, score = self.fate.get(pos, (None, -1, 0.0))
        if reason == "contaminated":
            return reason, str(of), score
        if reason == "exact_duplicate":  # points at the first occurrence: where did that one go?
            target = int(of)
            first_reason, first_of, _ = self._verdict(target, dup_of, sim)
            if first_reason == "contaminated":
                return "contaminated", first_of, 1.0
            return reason, first_of if first_reason else self.ids[target], 1.0
        row = self.row_of_rec[pos]
        if dup_of[row] >= 0:
            return "semantic_duplicate", self.ids[self.rec_of_row[dup_of[row]]], float(sim[row])
        return None, "", 0.0


def _dup(rec: Record, reason: str, of: str, similarity: float) -> Dropped:
    d = drop(STAGE, rec, reason, f"duplicate of {of} (cosine {similarity:.3f})")
    return d.model_copy(update={"duplicate_of": of, "similarity": round(similarity, 4)})
