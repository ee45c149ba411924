"""Stage: remove exact duplicates (after normalisation) and semantic ones (embedding cosine).

Streaming in blocks: each block is embedded, compared with everything kept so far (tiled matrix
products) and with itself in order, so the first occurrence in input order is the one kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from pydantic import BaseModel

from selfalign.embed import Embedder, EmbeddingIndex
from selfalign.records import Dropped, Record, normalize_text
from selfalign.report import Report
from selfalign.stages.common import batched, drop

STAGE = "dedup"


class DedupConfig(BaseModel):
    field: str = "prompt"  # prompt | response | both
    threshold: float = 0.92  # cosine at or above which two records are duplicates; >1 turns semantic off
    block: int = 512


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
    data = rec.model_dump()
    if field == "both":
        return f"{data.get('prompt', '')}\n{data.get('response', '')}"
    value = data.get(field)
    if not isinstance(value, str):
        raise ValueError(f"record {rec.id} has no text field {field!r}")
    return value


def dedup(records: Iterable[Record], config: DedupConfig, report: Report,
          embedder: Embedder | None = None, against: list[tuple[str, str]] | None = None
          ) -> Iterator[Record | Dropped]:
    """Drop records equal or too close to a reference set (`against`), to an earlier record, or both."""
    exact: dict[str, str] = {}
    index: EmbeddingIndex | None = None
    kept_ids: list[str] = []
    ref_exact = {normalize_text(t): rid for rid, t in against or []}
    ref_index: EmbeddingIndex | None = None
    ref_ids = [rid for rid, _ in against or []]
    if against and embedder is not None and config.threshold <= 1:
        ref_index = EmbeddingIndex(embedder.dim)
        ref_index.add(embedder.encode([t for _, t in against]))
    for block in batched(records, config.block):
        fresh: list[tuple[Record, str, str]] = []
        for rec in block:
            report.read += 1
            text = dedup_text(rec, config.field)
            key = normalize_text(text)
            if key in ref_exact:
                report.drop("contaminated")
                yield _dup(rec, "contaminated", ref_exact[key], 1.0)
                continue
            if key in exact:
                report.drop("exact_duplicate")
                yield _dup(rec, "exact_duplicate", exact[key], 1.0)
                continue
            exact[key] = rec.id
            fresh.append((rec, text, key))
        if embedder is None or config.threshold > 1 or not fresh:
            for rec, _, _ in fresh:
                report.kept += 1
                yield rec
            continue
        if index is None:
            index = EmbeddingIndex(embedder.dim)
        vectors = embedder.encode([t for _, t, _ in fresh])
        if ref_index is not None:
            best, where = ref_index.nearest(vectors)
            clean = best < config.threshold
            for i in np.flatnonzero(~clean):
                ref_exact[fresh[i][2]] = ref_ids[where[i]]  # later exact copies are contaminated too
                report.drop("contaminated")
                yield _dup(fresh[i][0], "contaminated", ref_ids[where[i]], float(best[i]))
            fresh = [f for f, ok in zip(fresh, clean, strict=True) if ok]
            vectors = vectors[clean]
        verdicts = index.add_novel(vectors, config.threshold)
        for (rec, _, key), verdict in zip(fresh, verdicts, strict=True):
            if verdict is None:
                kept_ids.append(rec.id)  # same order as the index rows
                report.kept += 1
                yield rec
                continue
            sim, row = verdict
            exact[key] = kept_ids[row]  # later exact copies point at the record that was kept
            report.drop("semantic_duplicate")
            yield _dup(rec, "semantic_duplicate", kept_ids[row], sim)


def _dup(rec: Record, reason: str, of: str, similarity: float) -> Dropped:
    d = drop(STAGE, rec, reason, f"duplicate of {of} (cosine {similarity:.3f})")
    return d.model_copy(update={"duplicate_of": of, "similarity": round(similarity, 4)})
