"""The Python API and the recipe file: the same records as the CLI, checked options, stage-by-stage resume,
and a dataset card that carries the constitution and the recipe's hash."""

from selfalign import Dedup, Export, Load, Pipeline, Principle

from support.tides import RULES
from support import jsonl, write_jsonl


def test_each_stage_reads_the_newest_answers_and_changed_options_redo_a_stage(tmp_path):
    from selfalign import BackendConfig, Refine

    steps = Pipeline([Load(path="p.jsonl"), Principle(), Refine(), Dedup(), Export(verbose=True)]).plan()
    assert [(st.label, inputs) for st, inputs, _ in steps][2:] == [
        ("refine", ["principle.jsonl"]), ("dedup", ["refine.jsonl"]), ("export", ["dedup.jsonl"])]
    rules = str(write_jsonl(tmp_path / "rules.jsonl", RULES))
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i} about the tides?"} for i in range(3)])
    out = tmp_path / "out"
    backend = BackendConfig(name="scripted", model=rules, seed=3, cache=False)
    Pipeline([Load(path=str(prompts)), Principle(keep=["all"]), Export()]).run(out, backend=backend)
    assert {r["provenance"][-1]["sampling"]["seed"] for r in jsonl(out / "principle.jsonl")} == {3}  # the run's seed
    said = []
    Pipeline([Load(path=str(prompts)), Principle(keep=["all"], temperature=0.1), Export()]).run(
        out, backend=backend, say=said.append)
    assert any("principle: its key changed since its files were made (options)" in m for m in said)
    assert {r["provenance"][-1]["sampling"]["temperature"] for r in jsonl(out / "principle.jsonl")} == {0.1}
