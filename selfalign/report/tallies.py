"""Streaming tallies for `selfalign report`: a fixed-size reservoir sample, and the preference-data counts
(critiqued and judged records, judge margins) with memory bounded on million-record files."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from typing import Any

LENGTHS = 5000  # texts kept per length distribution
MARGIN_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0)  # judge margin histogram: [0, 0.25), [0.25, 0.5), ..., [4, inf)
MARGIN_BINS = [f"{lo:g}-{hi:g}" for lo, hi in zip((0.0, *MARGIN_EDGES), MARGIN_EDGES)] + [f"{MARGIN_EDGES[-1]:g}+"]
MARGIN_NOTE = ("both methods give log-odds, but a vote's is smoothed and bounded by its number of votes "
               "(log((n + 0.5) / 0.5): 3.0 for 10 votes), while log-probabilities are not: compare them with care")


class Reservoir:
    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.items, self.seen = size, rng, [], 0

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.items[j] = item


def _pid_order(pid: str) -> tuple[int, int, str]:
    return (0, int(pid), "") if pid.isdigit() else (1, 0, pid)


class Margins:
    """One judging method's margins: count, min, max, streaming mean, fixed bins, a reservoir for the median."""

    def __init__(self, rng: random.Random):
        self.n = self.missing = 0
        self.total, self.lo, self.hi = 0.0, float("inf"), float("-inf")
        self.bins = [0] * len(MARGIN_BINS)
        self.sample = Reservoir(LENGTHS, rng)

    def add(self, margin: Any) -> None:
        if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not math.isfinite(margin):
            self.missing += 1
            return
        m = float(margin)
        self.n += 1
        self.total += m
        self.lo, self.hi = min(self.lo, m), max(self.hi, m)
        self.bins[sum(m >= e for e in MARGIN_EDGES)] += 1
        self.sample.add(m)

    def as_dict(self) -> dict[str, Any]:
        stats = {"n": self.n, "no_margin": self.missing}
        if self.n:
            stats.update(min=self.lo, median=statistics.median(self.sample.items), mean=self.total / self.n,
                         max=self.hi, median_exact=self.n <= LENGTHS)
        return {**stats, "histogram": dict(zip(MARGIN_BINS, self.bins))}


class Preferences:
    """Tallies over critiqued records (`checked_principles`) and judged records (a `judge` dict)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.critiqued = self.revised = 0
        self.checked: Counter[str] = Counter()
        self.violated: Counter[str] = Counter()
        self.judged = 0
        self.pairs: Counter[str] = Counter()  # revision (response vs revision), sampled (responses[0] vs [1])
        self.revision_chosen: Counter[str] = Counter()  # revision pairs by what was chosen
        self.principles: Counter[str] = Counter()  # what the judge judged by
        self.margins: dict[str, Margins] = {}

    def add(self, obj: dict[str, Any]) -> None:
        """A judged record counts as judged only: its critique was counted in the critique stage's own file
        (a judge file holds only the revised ones, which would skew the revision rate)."""
        j = obj.get("judge")
        if isinstance(j, dict):
            self.judged += 1
            pair = j.get("pair") or ["response", "revision"]  # the Judgement's default
            kind = ("revision" if pair == ["response", "revision"]
                    else "sampled" if pair == ["responses[0]", "responses[1]"] else "other")
            self.pairs[kind] += 1
            if kind == "revision":
                self.revision_chosen[str(j.get("chosen"))] += 1
            self.principles[str(j.get("principle", "all"))] += 1
            method = str(j.get("method") or "unknown")
            if method not in self.margins:
                self.margins[method] = Margins(self.rng)
            self.margins[method].add(j.get("margin"))
        elif isinstance(obj.get("checked_principles"), list):
            self.critiqued += 1
            rev = obj.get("revision")
            self.revised += isinstance(rev, str) and bool(rev.strip())
            violations = {str(v) for v in obj.get("violations") or []}
            for pid in {str(p) for p in obj["checked_principles"]} | violations:
                self.checked[pid] += 1
                self.violated[pid] += pid in violations

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.critiqued:
            out["critiqued"] = {
                "records": self.critiqued, "revised": self.revised, "revision_rate": self.revised / self.critiqued,
                "principles": {pid: {"checked": self.checked[pid], "violated": self.violated[pid],
                                     "rate": self.violated[pid] / self.checked[pid]}
                               for pid in sorted(self.checked, key=_pid_order)}}
        if self.judged:
            rc = self.revision_chosen
            n = sum(rc.values())
            out["judged"] = {
                "records": self.judged, "pairs": dict(self.pairs.most_common()),
                "principles": dict(self.principles.most_common()),
                "revision_vs_original": {
                    "pairs": n, "revision": rc["revision"], "response": rc["response"], "tie": rc["tie"],
                    "win_rate": rc["revision"] / n if n else None,
                    "note": "win_rate = revision chosen / all revision pairs; ties are counted apart, not as wins"},
                "sampled_note": "Sampled pairs (responses[0] vs [1]) are counted only: which answer is second is "
                                "arbitrary, so a win rate of the second means nothing",
                "margins": {m: v.as_dict() for m, v in sorted(self.margins.items())},
                "margin_note": MARGIN_NOTE}
        return out
