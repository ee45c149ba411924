"""`principle --n 2` (two sampled answers per prompt, a pair for the judge), the preference export of such pairs,
and `principle --judge` (the model's own Yes/No check against the principles an answer cites), on the scripted
backend."""


from selfalign import Export, Judge, Load, Pipeline, Principle
from selfalign.backends.scripted import ScriptedBackend
from support.sampled import HONEST, PROMPTS, RULES
from support import jsonl, write_jsonl


def test_a_pipeline_judges_the_sampled_pairs_when_no_stage_wrote_other_pairs(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    rules = RULES + [{"match": "Answer A: I can't tell", "choices": {" A": -0.2, " B": -2.2}},
                     {"match": "Answer B: I can't tell", "choices": {" A": -2.0, " B": -0.1}},
                     {"choices": {" A": -0.5, " B": -0.9}}]
    stages = [Load(path=str(src)), Principle(n=2, seed=1, keep=["off_topic", "restates_question"]), Judge(),
              Export(name="dpo", format="dpo")]
    assert [(st.label, inputs) for st, inputs, _ in Pipeline(stages).plan()][2] == ("judge", ["principle.jsonl"])
    reports = Pipeline(stages).run(tmp_path / "out", backend=ScriptedBackend(rules=rules))
    pairs = {p["id"]: p for p in jsonl(tmp_path / "out" / "dpo.jsonl")}
    assert pairs["gold"]["chosen"][0]["content"] == HONEST
    assert reports["principle"].dropped == {"truncated": 1}
    assert reports["dpo"].dropped == {"judge_tie": 2}  # a pure position lean is no preference
