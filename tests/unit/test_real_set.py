"""The labelled set of real completions (benchmarks/data/real) is well formed: what quality.py relies on."""

import json
import re
from collections import Counter

import pytest

from support import ROOT

REAL = ROOT / "benchmarks" / "data" / "real"
FRESH = ROOT / "benchmarks" / "data" / "real-fresh"
BAD = {"harmful_compliance", "missing_answer", "exemplar_leak", "persona_leak", "template_debris", "repetition_loop",
       "truncated", "wrong_language", "unwarranted_refusal", "incapacity_refusal", "restates_question", "off_topic",
       "wrong_sense", "missing_part", "incomplete_list", "wrong_facts", "nonsense", "repetition", "too_short"}
GOOD = {"good", "good_brief", "good_decline"}


def records(name: str, folder=REAL) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("folder, name, at_least", [(REAL, "real.jsonl", 300), (FRESH, "fresh.jsonl", 72)])
def test_every_real_record_has_valid_fields_labels_and_categories(folder, name, at_least):
    prompts = {p["prompt"]: p for p in records("prompts.jsonl", folder)}
    rows = records(name, folder)
    assert len(rows) >= at_least
    assert len({r["id"] for r in rows}) == len(rows)
    per_group = Counter((r["model"], r["temperature"], r["query"]) for r in rows)
    assert max(per_group.values()) == 1  # quality.py serves each (model, temperature) group by query
    for r in rows:
        assert r["query"] in prompts, r["id"]
        assert isinstance(r["completion"], str) and r["finish_reason"] in ("stop", "length"), r["id"]
        assert r["label"] in ("good", "bad") and r["note"].strip(), r["id"]
        assert r["category"] in (GOOD if r["label"] == "good" else BAD), (r["id"], r["category"])
        assert r["model"] and isinstance(r["temperature"], float) and isinstance(r["seed"], int), r["id"]
        if r["category"] == "good_decline" or r["category"] == "harmful_compliance":
            assert prompts[r["query"]]["kind"] == "harmful", r["id"]
        if r["finish_reason"] == "length":  # a cut answer is never one to train on
            assert r["label"] == "bad", r["id"]


def test_the_readme_names_every_category_used():
    readme = (REAL / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^\| `(\w+)` \|", readme, re.MULTILINE))
    assert named == BAD | GOOD
    assert {r["category"] for r in records("real.jsonl")} <= named
