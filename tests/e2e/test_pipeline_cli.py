"""The Python API and the recipe file: the same records as the CLI, checked options, stage-by-stage resume,
and a dataset card that carries the constitution and the recipe's hash."""

import json


from selfalign import Dedup, Export, Pipeline, Principle, SelfInstruct
from selfalign.backends.scripted import ScriptedBackend

from support.tides import RULES
from support import jsonl, run_cli, write_jsonl


def _cli_pipeline(tmp_path, rules, env):
    be = ["--backend", "scripted", "--model", rules]
    prompts = run_cli("generate", "--num", "3", "--no-embeddings", *be, "-q", env=env).stdout
    aligned = run_cli("principle", *be, "--batch-size", "2", "-q", stdin=prompts, env=env).stdout
    unique = run_cli("dedup", "-q", stdin=aligned, env=env).stdout
    return jsonl(run_cli("export", "--format", "messages", "-q", stdin=unique, env=env).stdout)


def test_python_api_gives_the_cli_records_and_resumes_stage_by_stage(tmp_path, monkeypatch):
    rules = str(write_jsonl(tmp_path / "rules.jsonl", RULES))
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))
    cli = _cli_pipeline(tmp_path, rules, env)
    stages = [SelfInstruct(num=3, embeddings=False), Principle(batch_size=2), Dedup(), Export(format="messages")]
    out = tmp_path / "out"
    reports = Pipeline(stages).run(out_dir=out, backend=ScriptedBackend(model=rules))
    api = jsonl(out / "export.jsonl")
    assert api == cli and len(api) >= 1
    assert reports["principle"].read == 3 and reports["export"].kept == len(api)
    assert {d["drop_reason"] for d in jsonl(out / "principle-dropped.jsonl")} == {"too_short"}
    # a second run finds every stage done and asks the backend nothing
    counting = ScriptedBackend(model=rules)
    Pipeline(stages).run(out_dir=out, backend=counting)
    assert counting.prompts_seen == 0 and jsonl(out / "export.jsonl") == api


RECIPE = """
out = "{out}"
[backend]
name = "scripted"
model = "{rules}"
[[stage]]
kind = "load"
path = "{prompts}"
[[stage]]
kind = "principle"
batch_size = 2
[[stage]]
kind = "export"
name = "sft"
"""

def test_recipe_runs_resumes_after_a_crash_and_writes_a_dataset_card(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i} about the tides?"} for i in range(6)])
    log = tmp_path / "answered.log"
    crash = write_jsonl(tmp_path / "crash.jsonl", [{"crash_after": 4}, {"log": str(log)}, RULES[1]])
    fine = write_jsonl(tmp_path / "fine.jsonl", [{"log": str(log)}, RULES[1]])
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(out=out, rules=crash, prompts=prompts))
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    plan = run_cli("run", str(recipe), "--dry-run", env=env).stdout
    assert "principle: load.jsonl -> principle.jsonl" in plan and "run hash:" in plan
    bad = run_cli("run", str(recipe), "--set", "principle.temprature=0.3", check=False, env=env)
    assert bad.returncode == 2 and "temprature" in bad.stderr
    first = run_cli("run", str(recipe), check=False, env=env)
    assert first.returncode == 1 and "scripted engine crash" in first.stderr
    assert (out / "load.jsonl").exists() and not (out / "principle.jsonl").exists()
    assert len(log.read_text().splitlines()) == 4
    again = run_cli("run", str(recipe), "--set", f'backend.model="{fine}"', env=env)
    assert "resuming: 4 records" in again.stderr
    assert len(log.read_text().splitlines()) == 6  # only the two unanswered prompts were asked
    sft = jsonl(out / "sft.jsonl")
    assert len(sft) == 6
    card = (out / "README.md").read_text()
    digest = card.split("selfalign_stage_keys:", 1)[1].split("principle: ", 1)[1].split()[0].strip('"')
    assert card.startswith("---\n") and "task_categories:" in card and "| principle | 6 | 6 |" in card
    stamped = [r["provenance"][-1].get("recipe") for r in jsonl(out / "principle.jsonl")]
    assert stamped == [digest] * 6  # the records made before and after the crash carry the stage's key
    assert (out / "constitution" / "principle-principles.md").exists() and (out / "report.html").exists()
    assert json.loads((out / "principle.json").read_text())["kept"] == 2
