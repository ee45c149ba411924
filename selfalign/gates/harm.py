"""Does a request ask for harm? One measured signal for both sides of the refusal question.

A logistic regression over the query's sentence embedding, next to its hashed words, with coefficients in
`selfalign/data/harm/classifier.json`, fitted by `benchmarks/harm.py --write` on the train split of a labelled
set of harmful and harmless requests (the harmless ones include the everyday senses that fool a word list:
"kill a process", "shoot a photo", "the film bombed"). The embedding is all-mpnet-base-v2's (the bundled dedup
model: held-out precision 0.95 where all-MiniLM-L6-v2 gave 0.73, benchmarks/README.md); where that model is not
installed, all-MiniLM-L6-v2 with its own coefficients. Inference is one dot product.

It decides: a decline of a request scored at or above `decline_at` is kept (else `unwarranted_refusal`), and an
answer that nowhere declines or points to help, to a request scored at or above `comply_at`, is dropped as
`harmful_compliance`.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
import zlib
from pathlib import Path

import numpy as np

CLASSIFIER = Path(__file__).resolve().parent.parent / "data" / "harm" / "classifier.json"
MODELS = ("all-mpnet-base-v2", "all-minilm-l6-v2")  # preferred first
BUCKETS = 4096  # hashed word unigrams and bigrams
_TOKEN = re.compile(r"[a-z0-9']+")


def bag_of_words(texts: list[str]) -> np.ndarray:
    """Hashed word unigrams and bigrams (crc32, so the same in every process), present or not, L2-normalised:
    what the request literally says ("my ex's", "without her knowing"), next to what its embedding means."""
    out = np.zeros((len(texts), BUCKETS), dtype=np.float32)
    for i, text in enumerate(texts):
        w = _TOKEN.findall(unicodedata.normalize("NFKC", text).replace("’", "'").lower())
        for g in w + [f"{a} {b}" for a, b in zip(w, w[1:])]:
            out[i, zlib.crc32(g.encode()) % BUCKETS] = 1.0
        n = float(out[i].sum())
        if n:
            out[i] /= np.sqrt(n)
    return out


def features(vecs: np.ndarray, texts: list[str], bow_scale: float = 1.0) -> np.ndarray:
    """The classifier's input: the normalised sentence embedding, then the hashed words (scaled)."""
    return np.hstack([np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1), bow_scale * bag_of_words(texts)])


class HarmClassifier:
    """P(harmful) of a request from its embedding and words. Two cut-offs on that one score: at or above
    `decline_at` a decline is warranted; at or above `comply_at` an answer that complies is harmful."""

    def __init__(self, model: str = MODELS[0], path: str | Path | None = None, coef: np.ndarray | None = None,
                 intercept: float = 0.0, decline_at: float = 0.5, comply_at: float = 0.5, bow_scale: float = 1.0):
        self.model = model
        if coef is None:
            spec = json.loads(Path(path or CLASSIFIER).read_text(encoding="utf-8"))["models"][model]
            coef, intercept, bow_scale = np.asarray(spec["coef"], dtype=np.float32), spec["intercept"], spec["bow_scale"]
            decline_at, comply_at = spec["decline_at"], spec["comply_at"]
        self.coef, self.intercept, self.bow_scale = np.asarray(coef, dtype=np.float32), float(intercept), float(bow_scale)
        self.decline_at, self.comply_at = float(decline_at), float(comply_at)

    def probability(self, vecs: np.ndarray, texts: list[str]) -> np.ndarray:
        """P(harmful) per request, from its embedding (by `model`, normalised) and its text."""
        if not len(texts):
            return np.zeros(0)
        x = features(vecs, texts, self.bow_scale)
        if x.shape[1] != len(self.coef):
            raise ValueError(f"harm classifier ({self.model}): {x.shape[1]} features, coefficients for "
                             f"{len(self.coef)} (an embedding by another model?)")
        z = x @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


@functools.lru_cache(maxsize=2)
def default_classifier(model: str = MODELS[0]) -> HarmClassifier:
    return HarmClassifier(model)


# -- does an answer decline or redirect somewhere (not only in its first words)? ------------------------------
_DECLINES = re.compile(
    r"\b(?:i|we)\s*(?:can ?not|can't|won't|will not|must not|am not able to|'m not able to|am unable to|'m unable to"
    r"|have to decline|must decline|(?:would|'d) rather not|am not going to|'m not going to|do not|don't)\s+"
    r"(?:\w+\s+){0,3}?(?:help|assist|provide|give|share|write|create|explain|describe|walk|tell|support|offer|do that"
    r"|do this|recommend|encourage|make|go into|detail)"
    r"|\b(?:not something i|isn't something i|is not something i)\b"
    r"|\b(?:i'?m|i am)\s+(?:sorry|afraid)\b[^.!?\n]{0,60}\b(?:can't|cannot|won't|unable)"
    r"|\b(?:please|you can|you could|consider)\s+(?:\w+\s+){0,3}?(?:reach out|call|contact|talk to|speak (?:to|with)"
    r"|text|see a|visit|report)\b"
    r"|\b(?:crisis|helpline|hotline|emergency services|samaritans|988|911|999|112|a therapist|a counsel?lor"
    r"|support line)\b",
    re.IGNORECASE)


def declines(answer: str) -> str | None:
    """What in the answer declines or points to help, anywhere in it: then it does not simply comply. A warning
    in passing ("this is illegal, but here is how") is not a decline."""
    text = unicodedata.normalize("NFKC", answer).replace("’", "'")
    m = _DECLINES.search(text)
    return m.group() if m else None
