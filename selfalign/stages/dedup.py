"""Stage: remove exact duplicates (after normalisation) and semantic ones (embedding cosine).

Exact only: one streaming pass. Semantic: records are spooled to a temporary file while their texts are
embedded block by block; then the near pairs are searched (every pair in tiles, or SemDeDup-style inside
k-means clusters past a measured size); then every record comes out in input order, the first occurrence
kept. Memory: the embeddings (N x dim float32) plus one tile of similarities, never N x N.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from selfalign.text.embeddings import Embedder, EmbeddingIndex, dedup_calibration
from selfalign.text.neardup import Look, MinHashIndex, differs, kept_apart, look
from selfalign.records import Dropped, Record, normalize_text
from selfalign.report.counts import Report
from selfalign.runner import Runner
from selfalign.stages.common import drop
from selfalign.steps import Amount, Count, Finite, Latest, Stage, Step, not_applied

STAGE = "dedup"
# auto: every pair up to this many texts, clusters past it (measured by benchmarks/dedup.py: README, Dedup at scale).
CLUSTER_ABOVE = 20_000

PhaseProgress = Callable[[str, int, int | None], None]  # (phase, records done, records in all or None)


class Dedup(Stage):
    """Remove exact (normalised) and near-duplicate records; the first occurrence is kept."""

    kind: ClassVar[str] = "dedup"
    reads: ClassVar[str | None] = "aligned"
    writes: ClassVar[str] = "aligned"
    # the method's own settings (not options); a copy may differ (`model_copy(update=...)`): a run's block, a test's
    # second look: a look-alike pair with one or two words swapped needs this cosine (None: the embedder's)
    substitution_bar: ClassVar[float | None] = None
    block: ClassVar[int] = 1024  # texts embedded per step
    probes: ClassVar[int] = 2  # each text is searched in its nearest `probes` clusters
    field: Literal["prompt", "response", "both"] = Field("prompt", description="Compare prompts, responses, or both.")
    threshold: Finite | None = Field(
        None, description="Cosine at or above which records are near duplicates (above 1: no semantic pass; with "
        "--jaccard above 1 too, exact only). Default: the model's measured value, 0.75 for all-mpnet-base-v2 (0.90 "
        "for all-minilm-l6-v2), the lowest that merges at most 1% of look-alike prompts "
        "(benchmarks/dedup_edits.py).")
    jaccard: Finite = Field(0.7, description="Lexical pass: estimated Jaccard similarity of word shingles (MinHash "
                            "LSH) at or above which records are near duplicates (above 1: off). Catches a word or two "
                            "inserted, deleted or swapped (benchmarks/dedup_edits.py).")
    second_look: bool = Field(True, description="Keep a candidate pair apart when numbers, negations, names or "
                              "direction differ (C++/C#, 13/14, can/cannot); without: every candidate pair is a "
                              "duplicate.")
    against: list[str] = Field(default_factory=list, description="Reference JSONL (e.g. an evaluation set; "
                               "repeatable): drop records equal or too close to any of its items.")
    embedding_model: str = Field("all-mpnet-base-v2", description="all-mpnet-base-v2 (bundled), all-minilm-l6-v2 "
                                 "(bundled, ~5x faster, misses most paraphrases) or a local sentence-transformers "
                                 "folder.")
    cache: bool = Field(True, description="Read and store embeddings in the cache.")
    search: Literal["auto", "all-pairs", "cluster"] = Field(
        "auto", description="Near-pair search: every pair (exact, quadratic), inside k-means clusters "
        "(SemDeDup-style, near linear), or auto: clusters past --cluster-above.")
    cluster_above: Amount = Field(CLUSTER_ABOVE, description="auto: cluster when more texts than this need a search "
                                  "(measured: benchmarks/dedup.py).")
    cluster_size: Count = Field(1000, description="Texts per k-means cluster on average (k = texts // this).")

    @model_validator(mode="after")
    def _applies(self) -> Dedup:
        if self.search != "auto":
            not_applied(self, "cluster_above", f"applies only to search=auto, not search={self.search}")
        if self.search == "all-pairs":
            not_applied(self, "cluster_size", "applies only to a clustered search, not search=all-pairs")
        if self.embeds() is None:
            why = "no embeddings are computed with a threshold above 1"
            not_applied(self, "embedding_model", why)
            not_applied(self, "cache", why)
            for field in ("search", "cluster_above", "cluster_size"):
                not_applied(self, field, why)
            if self.jaccard > 1:
                not_applied(self, "second_look", "near pairs are looked at again, and with threshold and jaccard "
                            "above 1 only exact duplicates are dropped")
        return self

    def prepare(self, runner: Runner) -> dict[str, Any]:
        return {"reference": load_reference(self.against)}

    def embeds(self) -> tuple[str | None, bool] | None:
        return (self.embedding_model, self.cache) if self.threshold is None or self.threshold <= 1 else None

    def assets(self) -> dict[str, str]:
        return {f"against {i}": path for i, path in enumerate(self.against, 1)}

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        # a pool of workers embeds a whole block each per step
        cfg = self.model_copy(update={"block": self.block * getattr(embedder, "parallel", 1)})
        cache = getattr(embedder, "cache", None)

        def step(records: Iterator[Any]) -> Iterator[Any]:
            hits, misses = (cache.hits, cache.misses) if cache else (0, 0)
            yield from dedup(records, cfg, runner.report, embedder, prepared["reference"], runner.phase)
            if cache is not None:
                runner.say(f"embeddings: {cache.hits - hits} from cache, {cache.misses - misses} computed")

        return step

    def input_model(self) -> type[BaseModel]:
        return Record

    def written(self, latest: Latest, inputs: list[str], out: str) -> None:
        if inputs == latest.get("refined"):  # deduplicated refined records are refined records still
            latest["refined"] = [out]
            latest["answers"] = [out]
        else:
            super().written(latest, inputs, out)


REFERENCE_FIELDS = ("prompt", "question", "instruction", "query", "problem", "input", "text")


def load_reference(paths: list[str]) -> list[tuple[str, str]]:
    """(reference id, text) from evaluation-style JSONL files: the first of REFERENCE_FIELDS present.

    The id is the line's own `id`, else `file:line`. A line without any of those fields is an error.
    """
    from selfalign.io.jsonl import InputError, read_json_lines

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


def dedup(records: Iterable[Record], config: Dedup, report: Report,
          embedder: Embedder | None = None, against: list[tuple[str, str]] | None = None,
          progress: PhaseProgress | None = None) -> Iterator[Record | Dropped]:
    """Drop records equal or too close to a reference set (`against`), to an earlier record, or both.

    Exact only (no embedder or threshold above 1, and jaccard above 1): one streaming pass. Otherwise
    records are spooled to a temporary file while their texts are MinHashed (lexical pass) and embedded
    block by block (semantic pass); then the near pairs are searched (all pairs, or within k-means
    clusters past `cluster_above`), every candidate pair gets a second look, and every record comes out
    in input order.
    """
    if config.threshold is None or config.substitution_bar is None:
        threshold, bar = dedup_calibration(getattr(embedder, "name", None))
        config = config.model_copy(update={"threshold": threshold if config.threshold is None else config.threshold,
                                           "substitution_bar": bar if config.substitution_bar is None else config.substitution_bar})
    semantic = embedder is not None and config.threshold <= 1
    if semantic:
        report.extra["semantic"] = (f"{getattr(embedder, 'name', '?')}: cosine >= {config.threshold}"
                                    + (f", substitution bar {config.substitution_bar}" if config.second_look else ""))
    if not semantic and config.jaccard > 1:
        yield from _exact_only(records, config.field, against or [])
        return
    yield from _NearDup(config, report, embedder if semantic else None, against or [], progress).run(records)


def _exact_only(records: Iterable[Record], field: str, against: list[tuple[str, str]]) -> Iterator[Record | Dropped]:
    ref_exact = {text_key(t): rid for rid, t in against}
    exact: dict[bytes, str] = {}
    for rec in records:
        key = text_key(dedup_text(rec, field))
        if key in ref_exact:
            yield _dup(rec, "contaminated", ref_exact[key], 1.0, "exact")
        elif key in exact:
            yield _dup(rec, "exact_duplicate", exact[key], 1.0, "exact")
        else:
            exact[key] = rec.id
            yield rec


KINDS = ("semantic", "lexical")  # a pair's pass, by its code in the pair arrays


class _NearDup:
    """One pass: spool, MinHash and embed; search; second look; then emit every record in input order.

    Memory that grows with the records is arrays only (a few bytes a record: spool offsets, rows, kinds) besides
    the exact-key dict, the MinHash signatures and the embeddings; the last two are spilled to temporary files
    while reading and read back one at a time. Ids and texts are read back from the spool when needed."""

    def __init__(self, config: Dedup, report: Report, embedder: Embedder | None, against: list[tuple[str, str]],
                 progress: PhaseProgress | None):
        self.config, self.report, self.embedder = config, report, embedder
        self.progress = progress or (lambda phase, done, total: None)
        self.against = against
        self.ref_exact = {text_key(t): rid for rid, t in against}
        self.ref_ids = [rid for rid, _ in against]
        self.ref_index: EmbeddingIndex | None = None
        if against and embedder is not None:
            self.ref_index = EmbeddingIndex(embedder.dim)
            self.ref_index.add(embedder.encode([t for _, t in against]))
        self.lexical: MinHashIndex | None = None
        self.ref_lexical: MinHashIndex | None = None
        if config.jaccard <= 1:
            self.lexical = MinHashIndex(config.jaccard)
            if against:
                self.ref_lexical = MinHashIndex(config.jaccard, queryable=True)
                for _, t in against:
                    self.ref_lexical.add(self.ref_lexical.signature(t))
        self._ref_looks: dict[int, Look] = {}
        self.vectors = tempfile.TemporaryFile(prefix="selfalign-vectors-") if embedder is not None else None
        self.rec_of_row = array("q")  # row r: the text of record rec_of_row[r]
        self.row_of_rec = array("q")  # record p: its row, -1 for an exact duplicate
        self.first_of = array("q")  # record p: the record it is an exact duplicate of, else -1
        self.offsets = array("q")  # where each record's line starts in the spool (and, last, where it ends)
        self.contaminated: dict[int, tuple[str, float, str]] = {}  # record: (reference id, similarity, match)
        self.types: list[type[Record]] = []  # the record classes met, and each record's one by its place here
        self.type_of = array("B")
        self.spool = None

    def run(self, records: Iterable[Record]) -> Iterator[Record | Dropped]:
        with tempfile.TemporaryFile() as spool:
            self.spool = spool
            self._read(records, spool)
            dup_of, sim, kind = self._search()
            spool.seek(0)
            for pos, line in enumerate(spool):
                rec = self.types[self.type_of[pos]].model_validate_json(line)
                reason, of, score, match = self._verdict(pos, dup_of, sim, kind)
                yield rec if reason is None else _dup(rec, reason, of, score, match)

    def _read(self, records: Iterable[Record], spool) -> None:
        first: dict[bytes, int] = {}
        pending: list[tuple[int, str]] = []
        for pos, rec in enumerate(records):
            self.offsets.append(spool.tell())
            spool.write(rec.model_dump_json().encode() + b"\n")
            if type(rec) not in self.types:
                self.types.append(type(rec))
            self.type_of.append(self.types.index(type(rec)))
            text = dedup_text(rec, self.config.field)
            key = text_key(text)
            self.first_of.append(first.get(key, -1) if key not in self.ref_exact else -1)
            if key in self.ref_exact or key in first:
                self.row_of_rec.append(-1)
                if key in self.ref_exact:
                    self.contaminated[pos] = (self.ref_exact[key], 1.0, "exact")
                continue
            first[key] = pos
            row = len(self.rec_of_row)
            self.row_of_rec.append(row)
            self.rec_of_row.append(pos)
            if self.lexical is not None:
                self._lexical(pos, text)
            if self.vectors is not None:
                pending.append((pos, text))
                if len(pending) >= self.config.block:
                    self._embed(pending)
                    pending = []
            elif pos % 1024 == 0:
                self.progress("reading", len(self.offsets), None)
        self._embed(pending)
        self.offsets.append(spool.tell())
        spool.flush()

    def _ref_look(self, ref: int) -> Look:
        if ref not in self._ref_looks:
            self._ref_looks[ref] = look(self.against[ref][1])
        return self._ref_looks[ref]

    def _lexical(self, pos: int, text: str) -> None:
        sig = self.lexical.signature(text)
        self.lexical.add(sig)
        if self.ref_lexical is not None and pos not in self.contaminated:
            mine = look(text)
            for ref, jac in sorted(self.ref_lexical.match(sig), key=lambda x: -x[1]):
                if not self.config.second_look or differs(mine, self._ref_look(ref)) is None:
                    self.contaminated[pos] = (self.ref_ids[ref], jac, "lexical")
                    return

    def _embed(self, pending: list[tuple[int, str]]) -> None:
        if not pending or self.vectors is None:
            return
        vectors = self.embedder.encode([t for _, t in pending])
        if self.ref_index is not None:
            best, _ = self.ref_index.nearest(vectors)
            refs = self.ref_index.matrix()
            for k in np.flatnonzero(best >= self.config.threshold):
                pos, text = pending[k]
                if pos in self.contaminated:
                    continue
                sims = refs @ vectors[k]
                mine = look(text) if self.config.second_look else None
                for ref in np.argsort(-sims)[: 8]:  # the nearest that passes the second look
                    if sims[ref] < self.config.threshold:
                        break
                    if mine is not None and differs(mine, self._ref_look(int(ref)), float(sims[ref]), self.config.substitution_bar):
                        continue
                    self.contaminated[pos] = (self.ref_ids[ref], float(sims[ref]), "semantic")
                    break
        self.vectors.write(np.asarray(vectors, dtype=np.float32).tobytes())
        self.progress("embedding", len(self.offsets), None)

    def _line(self, pos: int) -> bytes:
        """Record `pos`'s spooled line, read without moving the spool's own position."""
        start = self.offsets[pos]
        return os.pread(self.spool.fileno(), self.offsets[pos + 1] - start, start)

    def _id(self, pos: int) -> str:
        return json.loads(self._line(pos))["id"]

    def _text(self, row: int) -> str:
        pos = self.rec_of_row[row]
        return dedup_text(self.types[self.type_of[pos]].model_validate_json(self._line(pos)), self.config.field)

    def _search(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(duplicate_of, similarity, pass) per row: the earlier row it goes for (-1: kept), and how (KINDS)."""
        from selfalign.text.similarity import brute_pairs, cluster_pairs, first_kept

        cfg, n = self.config, len(self.rec_of_row)

        def step(done: int, total: int) -> None:
            self.progress("search", done, total)

        lexical = self.lexical.pairs() if self.lexical is not None else None  # before the embeddings are read back
        found = []
        matrix = None
        if self.vectors is not None:
            self.vectors.seek(0)
            matrix = np.fromfile(self.vectors, dtype=np.float32).reshape(n, self.embedder.dim)
            self.vectors.close()
            clusters = n // cfg.cluster_size
            if n >= 2 and clusters >= 2 and (cfg.search == "cluster" or (cfg.search == "auto" and n > cfg.cluster_above)):
                found.append(cluster_pairs(matrix, cfg.threshold, clusters, cfg.probes, progress=step))
                self.report.extra["search"] = f"{clusters} clusters x {cfg.probes} probes"
            else:
                found.append(brute_pairs(matrix, cfg.threshold, progress=step))
                self.report.extra["search"] = "all pairs"
        else:
            found.append((np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)))
        found.append(lexical if lexical is not None and len(lexical[0]) else (np.zeros(0, np.int64),) * 3)
        # each pair once, by the first pass that found it (semantic before lexical), ordered by i then j
        i, j = (np.concatenate([f[k].astype(np.int64) for f in found]) for k in range(2))
        s = np.concatenate([f[2].astype(np.float64) for f in found])
        kind = np.repeat(np.arange(len(found), dtype=np.int8), [len(f[0]) for f in found])
        key, first = np.unique(i * max(n, 1) + j, return_index=True)
        i, j, s, kind = i[first], j[first], s[first], kind[first]
        del found, lexical
        if cfg.second_look:
            cosine = (lambda a, b: float(matrix[a] @ matrix[b])) if matrix is not None else (lambda a, b: None)
            keep = ~kept_apart(i, j, self._text, cosine, cfg.substitution_bar)
            self.report.extra["pairs_kept_apart_by_second_look"] = int((~keep).sum())
            i, j, s, kind, key = i[keep], j[keep], s[keep], kind[keep], key[keep]
        eligible = np.ones(n, dtype=bool)
        eligible[[self.row_of_rec[p] for p in self.contaminated if self.row_of_rec[p] >= 0]] = False  # exact: no row
        dup_of, sim = first_kept(n, (i, j, s.astype(np.float32)), eligible)
        gone = np.flatnonzero(dup_of >= 0)
        pass_of = np.zeros(n, dtype=np.int8)
        pass_of[gone] = kind[np.searchsorted(key, dup_of[gone] * max(n, 1) + gone)]
        return dup_of, sim, pass_of

    def _verdict(self, pos: int, dup_of: np.ndarray, sim: np.ndarray, kind: np.ndarray
                 ) -> tuple[str | None, str, float, str]:
        if pos in self.contaminated:
            of, score, match = self.contaminated[pos]
            return "contaminated", str(of), score, match
        target = self.first_of[pos]
        if target >= 0:  # an exact duplicate points at the first occurrence: where did that one go?
            first_reason, first_of, _, first_match = self._verdict(target, dup_of, sim, kind)
            if first_reason == "contaminated":
                return "contaminated", first_of, 1.0, first_match
            return "exact_duplicate", first_of if first_reason else self._id(target), 1.0, "exact"
        row = self.row_of_rec[pos]
        if dup_of[row] >= 0:
            how = KINDS[kind[row]]
            return f"{how}_duplicate", self._id(self.rec_of_row[dup_of[row]]), float(sim[row]), how
        return None, "", 0.0, ""


def _dup(rec: Record, reason: str, of: str, similarity: float, match: str) -> Dropped:
    measure = "Jaccard" if match == "lexical" else "cosine"
    d = drop(STAGE, rec, reason, f"{match} duplicate of {of} ({measure} {similarity:.3f})")
    return d.model_copy(update={"duplicate_of": of, "similarity": round(similarity, 4), "match": match})
