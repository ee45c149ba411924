"""Preference data end to end on the scripted backend: critique -> judge -> export --format dpo, from the command
line and as a Python pipeline, with the same pairs; and TRL's conversational DPO layout."""

import json

from selfalign import Critique, Export, Judge, Load, Pipeline
from selfalign.backends.scripted import ScriptedBackend
from support import jsonl, write_jsonl

WRONG = "The current price of gold is exactly 2,031 dollars an ounce, and it will rise tomorrow."
REVISION = ("I can't tell you today's gold price: I have no access to live market data, and the price changes "
            "through the day. A financial news site, your bank or a bullion dealer will show the current price "
            "per ounce and how it has moved over recent weeks.")
FINE = ("Rainbows form when sunlight enters raindrops, bends, reflects off the back of each drop and bends again "
        "on the way out; each colour bends by a different amount, so the light spreads into a band of colours.")
RECORDS = [
    {"id": "gold", "prompt": "What is the price of gold today?", "thoughts": "By 7 (candor) I answer.",
     "response": WRONG, "principles": ["7"]},
    {"id": "rainbow", "prompt": "How do rainbows form?", "thoughts": "By 2 (informative) I explain.",
     "response": FINE, "principles": ["2"]},
]
RULES = [
    # critique: the invented price breaks principle 7 and is revised; the rainbow answer breaks nothing
    {"match": f"Answer: {WRONG}", "text": " The answer invents a live price it cannot know. The answer breaks "
     f"principle 7.\nViolations: 7\nRevision: {REVISION}"},
    {"text": " The answer explains the question accurately. The answer breaks none of the principles.\n"
     "Violations: none"},
    # judge: the model prefers the honest answer in whichever position it stands
    {"match": "Answer A: I can't tell", "choices": {" A": -0.2, " B": -2.2}},
    {"match": "Answer B: I can't tell", "choices": {" A": -2.0, " B": -0.1}},
]
# the revision's meaning is checked by the embedding gates elsewhere; here the plumbing
KEEP = ["off_topic", "restates_question"]


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
