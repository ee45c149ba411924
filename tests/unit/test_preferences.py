"""Preference data end to end on the scripted backend: critique -> judge -> export --format dpo, from the command
line and as a Python pipeline, with the same pairs; and TRL's conversational DPO layout."""

import json

from selfalign import Critique, Export, Judge, Load, Pipeline
from selfalign.backends.scripted import ScriptedBackend
from support.preferences import FINE, KEEP, RECORDS, REVISION, RULES, WRONG
from support import jsonl, write_jsonl


def test_the_pipeline_makes_the_same_pairs(tmp_path):
    aligned = write_jsonl(tmp_path / "aligned.jsonl", RECORDS)
    be = ScriptedBackend(rules=RULES)
    stages = [Load(path=str(aligned), records="aligned"), Critique(sample=0, keep=KEEP), Judge(),
              Export(format="dpo", min_margin=1.0)]
    reports = Pipeline(stages).run(tmp_path / "out", backend=be)
    [pair] = jsonl(tmp_path / "out" / "export.jsonl")
    assert pair["chosen"][0]["content"] == REVISION and pair["rejected"][0]["content"] == WRONG
    assert reports["judge"].dropped == {"no_pair": 1}
    card = json.loads((tmp_path / "out" / "critique.json").read_text())
    assert card["kept"] == 2


def test_a_pipeline_from_your_own_critiqued_file_judges_it_and_a_revised_export_reads_every_critiqued_answer(
        tmp_path):
    aligned = write_jsonl(tmp_path / "aligned.jsonl", RECORDS)
    be = ScriptedBackend(rules=RULES)
    Pipeline([Load(path=str(aligned), records="aligned"), Critique(sample=0, keep=KEEP),
              Export(name="sft-revised", revised=True)]).run(tmp_path / "a", backend=be)
    sft = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in jsonl(tmp_path / "a" / "sft-revised.jsonl")}
    # the revision where the critique made one, the answer where nothing was broken: no record lost
    assert sft == {"What is the price of gold today?": REVISION, "How do rainbows form?": FINE}
    stages = [Load(path=str(tmp_path / "a" / "critique.jsonl"), records="critiqued"), Judge(), Export(format="dpo")]
    Pipeline(stages).run(tmp_path / "b", backend=be)
    [pair] = jsonl(tmp_path / "b" / "export.jsonl")
    assert pair["chosen"][0]["content"] == REVISION
