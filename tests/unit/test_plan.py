"""The plan keyed on everything that shapes a stage's output (options, model, asset files, inputs), the run folder
that holds only the run's own files, and a folder `datasets` loads as it is; in-process, scripted backend."""

import json
import os
import shutil
from pathlib import Path

import pytest

from selfalign import BackendConfig, Export, Load, Pipeline
from selfalign.assets import default_path
from selfalign.backends.scripted import ScriptedBackend
from selfalign.recipe import load_recipe, plan_text, run_recipe
from selfalign.io.runfolder import RunFolder
from selfalign.runner import RunError
from support import jsonl, write_jsonl

ANSWER_A = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and "
            "the far side both bulge, so most coasts see two high tides and two low tides every day.")
ANSWER_B = ("The oceans rise and fall twice a day because the Moon pulls on the water nearest to it and the Earth "
            "is pulled away from the water on the far side, which leaves two bulges that the coasts pass through.")
KEEP = '["off_topic", "restates_question"]'  # the embedding gates are tested elsewhere

RECIPE = """
out = "{out}"
[backend]
name = "scripted"
model = "{rules}"
cache = false
[[stage]]
kind = "load"
path = "{prompts}"
[[stage]]
kind = "principle"
principles = "{principles}"
exemplars = "{exemplars}"
keep = {keep}
[[stage]]
kind = "export"
name = "sft"
"""


def script(path: Path, answer: str, log: Path) -> Path:
    return write_jsonl(path, [{"log": str(log)}, {"text": f" By 2 (informative) I explain.\n\nSage: {answer}"}])


@pytest.fixture
def setup(tmp_path):
    """A recipe (load -> principle -> export) over copies of the bundled principles and exemplars."""
    log = tmp_path / "asked.log"
    paths = {"out": tmp_path / "out", "log": log,
             "rules": script(tmp_path / "model-a.jsonl", ANSWER_A, log),
             "other": script(tmp_path / "model-b.jsonl", ANSWER_B, log),
             "prompts": write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i} about the tides?"}
                                                           for i in range(3)]),
             "principles": Path(shutil.copy(default_path("principles", "default.md"), tmp_path / "principles.md")),
             "exemplars": Path(shutil.copy(default_path("exemplars", "default.yaml"), tmp_path / "exemplars.yaml"))}
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(keep=KEEP, **paths))
    paths["recipe"] = recipe
    return paths


def asked(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def decisions(recipe: Path, *sets: str) -> dict[str, str]:
    """The dry run's word per stage: `reuse`, or `run (why)`."""
    lines = plan_text(load_recipe(recipe, list(sets))).splitlines()
    out = {}
    for head, verdict in zip(lines, lines[1:]):
        if verdict.startswith(" " * 16) and ", key " in verdict:
            out[head.split(":", 1)[0].strip()] = verdict.strip().rsplit(", key ", 1)[0]
    return out


def run(recipe: Path, *sets: str) -> list[str]:
    said: list[str] = []
    run_recipe(load_recipe(recipe, list(sets)), say=said.append, source=str(recipe))
    return said


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.jsonl"))}


def test_an_unchanged_rerun_reuses_every_stage_and_asks_nothing(setup):
    assert decisions(setup["recipe"]) == {"load": "run (not made yet)", "principle": "run (not made yet)",
                                          "sft": "run (not made yet)"}
    run(setup["recipe"])
    n, before = asked(setup["log"]), snapshot(setup["out"])
    assert n == 3 and len(jsonl(setup["out"] / "sft.jsonl")) == 3
    assert decisions(setup["recipe"]) == {"load": "reuse", "principle": "reuse", "sft": "reuse"}
    run(setup["recipe"])
    assert asked(setup["log"]) == n and snapshot(setup["out"]) == before


def test_another_model_remakes_its_stages_and_every_stage_after_them(setup):
    run(setup["recipe"])
    other = f'backend.model="{setup["other"]}"'
    assert decisions(setup["recipe"], other) == {"load": "reuse", "principle": "run (backend: model)",
                                                 "sft": "run (input: principle.jsonl)"}
    said = run(setup["recipe"], other)
    assert any("principle: its key changed since its files were made (backend: model)" in m for m in said)
    answers = [r["response"] for r in jsonl(setup["out"] / "principle.jsonl")]
    assert answers == [ANSWER_B] * 3
    assert {r["messages"][-1]["content"] for r in jsonl(setup["out"] / "sft.jsonl")} == {ANSWER_B}
    assert asked(setup["log"]) == 6


def test_an_edited_principle_file_remakes_the_answers(setup):
    run(setup["recipe"])
    before = {r["provenance"][-1]["assets_hash"] for r in jsonl(setup["out"] / "principle.jsonl")}
    text = setup["principles"].read_text()
    setup["principles"].write_text(text.replace("1 (", "1 (the very first, ", 1))
    os.utime(setup["principles"], ns=(1, 1))  # an old mtime: the content decides, not the clock
    assert decisions(setup["recipe"]) == {"load": "reuse",
                                          "principle": f"run (assets: principles ({setup['principles']}))",
                                          "sft": "run (input: principle.jsonl)"}
    run(setup["recipe"])
    after = {r["provenance"][-1]["assets_hash"] for r in jsonl(setup["out"] / "principle.jsonl")}
    assert len(before) == len(after) == 1 and before != after and asked(setup["log"]) == 6


def test_an_edited_exemplar_file_remakes_the_answers(setup):
    run(setup["recipe"])
    setup["exemplars"].write_text(setup["exemplars"].read_text().replace("Sage", "Sage", 1) + "\n# edited\n")
    assert decisions(setup["recipe"]) == {"load": "reuse",
                                          "principle": f"run (assets: exemplars ({setup['exemplars']}))",
                                          "sft": "run (input: principle.jsonl)"}
    run(setup["recipe"])
    assert asked(setup["log"]) == 6
    # and the bundled defaults are keyed by content too
    parts = load_recipe(setup["recipe"], ['principle.exemplars=""']).plan()[1].parts
    assert parts["assets"]["exemplars"]["path"] == "bundled exemplars/default.yaml"


def test_an_edited_input_file_remakes_every_stage(setup):
    run(setup["recipe"])
    write_jsonl(setup["prompts"], [{"prompt": f"Question {i} about the tides?"} for i in range(4)])
    assert decisions(setup["recipe"]) == {"load": "run (input: p.jsonl)", "principle": "run (input: load.jsonl)",
                                          "sft": "run (input: principle.jsonl)"}
    run(setup["recipe"])
    assert len(jsonl(setup["out"] / "sft.jsonl")) == 4 and asked(setup["log"]) == 3 + 4


def test_every_record_carries_its_stage_key_and_the_card_states_exactly_that(setup):
    run(setup["recipe"])
    card = (setup["out"] / "README.md").read_text()
    keys = dict(line.strip().replace('"', "").split(": ") for line in
                card.split("selfalign_stage_keys:\n", 1)[1].split("---", 1)[0].strip().splitlines())
    plan = load_recipe(setup["recipe"]).plan()
    assert keys == {p.stage.label: p.key for p in plan}
    for label in ("principle",):
        stamps = {r["provenance"][-1]["recipe"] for r in jsonl(setup["out"] / f"{label}.jsonl")}
        assert stamps == {keys[label]}
    report = json.loads((setup["out"] / "principle.json").read_text())
    assert report["key"] == keys["principle"] and report["key_parts"]["backend"]["name"] == "scripted"
    const = sorted(p.name for p in (setup["out"] / "constitution").iterdir())
    assert const == ["principle-exemplars.yaml", "principle-principles.md"]


def test_the_constitution_and_the_keys_cover_critique_and_judge_assets(tmp_path):
    from selfalign.recipe import write_card

    recipe = tmp_path / "r.toml"
    crit = Path(shutil.copy(default_path("exemplars", "critique.yaml"), tmp_path / "crit.yaml"))
    recipe.write_text(f"""out = "{tmp_path / 'out'}"
[backend]
name = "scripted"
[[stage]]
kind = "load"
path = "p.jsonl"
[[stage]]
kind = "principle"
[[stage]]
kind = "critique"
exemplars = "{crit}"
[[stage]]
kind = "judge"
[[stage]]
kind = "dedup"
against = ["{write_jsonl(tmp_path / 'eval.jsonl', [{'prompt': 'held out'}])}"]
""")
    plan = load_recipe(recipe).plan()
    assert set(plan[2].parts["assets"]) == {"principles", "exemplars"} and set(plan[3].parts["assets"]) == {"principles"}
    with RunFolder(tmp_path / "out").open([p.stage.label for p in plan]) as folder:
        write_card(load_recipe(recipe), plan, folder, None)
    assert sorted(p.name for p in (tmp_path / "out" / "constitution").iterdir()) == [
        "critique-exemplars.yaml", "critique-principles.md", "judge-principles.md", "principle-exemplars.yaml",
        "principle-principles.md"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"dedup against 1: `{tmp_path / 'eval.jsonl'}` (sha256 {plan[4].parts['assets']['against 1']['hash']}" in card
    crit.write_text(crit.read_text() + "\n")
    assert load_recipe(recipe).plan()[2].key != plan[2].key and load_recipe(recipe).plan()[1].key == plan[1].key


def test_recipe_errors_name_the_file_the_stage_and_the_field(setup, tmp_path):
    recipe = setup["recipe"]
    with pytest.raises(ValueError, match=r"recipe.toml: stage 3 \(export '\.\./evil'\): field name: '\.\./evil' is a path"):
        load_recipe(recipe, ['sft.name="../evil"'])
    with pytest.raises(ValueError, match=r"stage 3 \(export '\.hidden'\): field name: .*no leading dot"):
        load_recipe(recipe, ['sft.name=".hidden"'])
    with pytest.raises(ValueError, match="name '../x' is a path"):
        Pipeline([Load(path="p.jsonl"), Export(name="../x")])
    with pytest.raises(ValueError, match=r"recipe.toml: stage 2 \(principle\): field principles: Input should be a "
                                         r"valid string \(got list\)"):
        load_recipe(recipe, ['principle.principles=["a.md"]'])
    with pytest.raises(ValueError, match=r"recipe.toml: field backend.name: "):
        load_recipe(recipe, ['backend.name="nope"'])
    with pytest.raises(ValueError, match=r"recipe.toml: stage 3 \(export 'sft'\): field format: "):
        load_recipe(recipe, ['sft.format="parquet"'])
    with pytest.raises(ValueError, match=r"recipe.toml: field out: .*empty"):
        load_recipe(recipe, ['run.out=""'])
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(recipe.read_bytes() + '# caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.toml:\d+: not UTF-8 text \(byte 0xe9\)"):
        load_recipe(bad)
    with pytest.raises(ValueError, match=r"field kind: \['load'\] is not one of"):
        load_recipe(recipe, ['load.kind=["load"]'])
    bad.write_text(recipe.read_text() + '[[stage]]\nkind = "export"\nname = ["x"]\n')
    with pytest.raises(ValueError, match=r"stage 4 \(export\): field name: Input should be a valid string \(got list\)"):
        load_recipe(bad)


def test_a_foreign_folder_is_refused_and_its_files_left_alone(setup):
    out = setup["out"]
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "README.md").write_text("my readme")
    (out / "theirs.json").write_text("[]")  # not a stage report: reading it would fail the report page
    before = sorted(os.listdir(out))
    with pytest.raises(RunError, match=r"holds files that are not this run's \(README.md, notes.txt, theirs.json\)"):
        run(setup["recipe"])
    assert sorted(os.listdir(out)) == before  # not even the lock or the manifest
    assert "the run would be refused" in plan_text(load_recipe(setup["recipe"]))
    (out / "sft.jsonl").write_text("not ours\n")
    with pytest.raises(RunError, match=r"sft.jsonl is not this run's file and is left alone"):
        run(setup["recipe"], "run.allow_foreign=true")
    (out / "sft.jsonl").unlink()
    reports, written = run_recipe(load_recipe(setup["recipe"], ["run.allow_foreign=true"]), source=str(setup["recipe"]))
    assert written == ["report.html", "constitution/"]  # no README.md (the user's), no recipe.toml (not our folder)
    assert (out / "README.md").read_text() == "my readme" and (out / "notes.txt").read_text() == "mine"
    assert (out / "theirs.json").read_text() == "[]"
    assert not (out / "recipe.toml").exists() and len(jsonl(out / "sft.jsonl")) == 3
    # a folder the run made is its own: it copies the recipe and writes the card
    _, written = run_recipe(load_recipe(setup["recipe"], [f'run.out="{out}2"']), source=str(setup["recipe"]))
    assert written == ["README.md", "report.html", "constitution/", "recipe.toml"]


def test_html_off_writes_no_page_and_says_only_what_it_wrote(setup):
    _, written = run_recipe(load_recipe(setup["recipe"], ["report.html=false"]), source=str(setup["recipe"]))
    assert "report.html" not in written and not (setup["out"] / "report.html").exists()


def test_a_second_run_on_a_locked_folder_is_refused_and_deletes_nothing(setup):
    run(setup["recipe"])
    partial = setup["out"] / "principle.jsonl.partial"
    partial.write_text('{"id": "x"}\n')
    before = snapshot(setup["out"])
    with RunFolder(setup["out"]).open([]):  # another run holds the folder
        with pytest.raises(RunError, match="is being written by another selfalign run"):
            run(setup["recipe"], f'backend.model="{setup["other"]}"')
    assert snapshot(setup["out"]) == before and partial.read_text() == '{"id": "x"}\n'


def test_a_secret_in_base_url_is_in_no_output_file_plan_or_error(setup, monkeypatch):
    secret_url = "https://alice:hunter2@llm.example/v1?api_key=sk-SECRET"
    monkeypatch.setattr(BackendConfig, "open", lambda self: ScriptedBackend(model=str(setup["rules"])))
    sets = ["backend.name=openai", f'backend.base_url="{secret_url}"', 'backend.model="gpt-x"']
    plan = plan_text(load_recipe(setup["recipe"], sets))
    assert "alice:***@llm.example" in plan
    said = run(setup["recipe"], *sets)
    with pytest.raises(ValueError) as e:
        load_recipe(setup["recipe"], [*sets, "backend.timeout=soon"])
    texts = {"plan": plan, "said": "\n".join(said), "error": str(e.value)}
    texts.update({str(p): p.read_text(errors="replace") for p in setup["out"].rglob("*") if p.is_file()})
    for where, text in texts.items():
        assert "hunter2" not in text and "sk-SECRET" not in text, where
    card = (setup["out"] / "README.md").read_text()
    assert "alice:***@llm.example" in card
    key_parts = json.loads((setup["out"] / "principle.json").read_text())["key_parts"]
    assert key_parts["backend"]["base_url"] == "https://alice:***@llm.example/v1?api_key=***"


def test_an_empty_output_folder_name_is_refused():
    with pytest.raises(ValueError, match="output folder is empty"):
        Pipeline([Load(path="p.jsonl")]).run("")


# --- the example recipe's shape, loaded by `datasets` -----------------------------------------------------------

PROMPTS = ["Explain why the sea has tides.", "Describe how rainbows form in the sky.", "Why is ice slippery?"]


def _turn(text: str) -> str:
    return f" By 2 (informative) I explain.\n\nSage: {text}"


def _answers(prompt: str, sample: int) -> str:
    return (f"This is answer {sample} about {prompt.lower().rstrip('.?')}: it explains the idea step by step, names "
            f"the cause, gives an everyday example and ends with a short summary so that the reader can follow.")


def test_the_run_folder_loads_with_datasets_one_config_per_export(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rules = [{"match": "\n6.", "text": f" {PROMPTS[0]}\n7. {PROMPTS[1]}\n8. {PROMPTS[2]}"},
             {"match": "Answer A: This is answer 1", "choices": {" A": -0.1, " B": -3.0}},
             {"match": "Answer B: This is answer 1", "choices": {" A": -3.0, " B": -0.1}}]
    for p in PROMPTS:
        rules += [{"seed": 1, "match": p, "text": _turn(_answers(p, 1))},
                  {"seed": 2, "match": p, "text": _turn(_answers(p, 2))}]
    script_path = write_jsonl(tmp_path / "script.jsonl", rules)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""out = "{tmp_path / 'out'}"
[backend]
name = "scripted"
model = "{script_path}"
seed = 1
cache = false
[[stage]]
kind = "self-instruct"
num = 3
seed = 1
embeddings = false
[[stage]]
kind = "principle"
seed = 1
n = 2
keep = {KEEP}
[[stage]]
kind = "export"
name = "sft"
format = "messages"
system = "You are a helpful, honest assistant."
[[stage]]
kind = "judge"
[[stage]]
kind = "export"
name = "dpo"
format = "dpo"
[[stage]]
kind = "export"
name = "dpo-strict"
min_margin = 100.0
format = "dpo"
""")
    run(recipe)
    out = tmp_path / "out"
    sft_rows, dpo_rows = jsonl(out / "sft.jsonl"), jsonl(out / "dpo.jsonl")
    assert len(sft_rows) == 3 and len(dpo_rows) == 3 and jsonl(out / "dpo-strict.jsonl") == []
    card = (out / "README.md").read_text()
    assert "config_name: sft\n" in card and "config_name: dpo\n" in card and "dpo_strict" not in card
    sft = datasets.load_dataset(str(out), "sft", split="train")
    assert [r["messages"] for r in sft] == [r["messages"] for r in sft_rows]
    assert sft[0]["messages"][0] == {"role": "system", "content": "You are a helpful, honest assistant."}
    dpo = datasets.load_dataset(str(out), "dpo")
    assert list(dpo) == ["train"] and dpo["train"].num_rows == 3
    assert {r["chosen"][-1]["content"] for r in dpo["train"]} == {_answers(p, 1) for p in PROMPTS}


def test_a_backend_is_known_by_its_model_content_and_sampling_options_only(tmp_path):
    from selfalign.stagekeys import backend_identity

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 8192)  # 2 MiB: hashed by size, head and tail
    ident = backend_identity(BackendConfig(name="vllm", model=str(model)))
    copy = shutil.copytree(model, tmp_path / "copy")
    assert backend_identity(BackendConfig(name="vllm", model=str(copy)))["model"] == ident["model"]
    assert backend_identity(BackendConfig(name="vllm", model=str(model), gpu_memory_utilization=0.5)) == ident
    assert backend_identity(BackendConfig(name="vllm", model=str(model), seed=2)) != ident
    (model / "config.json").write_text('{"hidden_size": 128}')
    edited = backend_identity(BackendConfig(name="vllm", model=str(model)))
    assert edited["model"] != ident["model"]
    with open(model / "model.safetensors", "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"x")
    assert backend_identity(BackendConfig(name="vllm", model=str(model)))["model"] != edited["model"]
    assert backend_identity(None)["model"].startswith("embedded ")  # the embedded default: its package
    plain = backend_identity(BackendConfig(name="openai", model="gpt-x", base_url="http://u:pw@h/v1"))
    assert plain == {"name": "openai", "model": "named gpt-x", "base_url": "http://u:***@h/v1"}


def test_a_script_is_the_same_model_as_a_file_or_an_object_and_its_settings_are_not_the_model(setup):
    from selfalign.stagekeys import backend_identity

    path = str(setup["rules"])
    ident = backend_identity(BackendConfig(name="scripted", model=path))
    assert backend_identity(ScriptedBackend(model=path)) == ident
    slow = write_jsonl(setup["out"].parent / "slow.jsonl", [{"delay": 1, "crash_after": 2}, *jsonl(Path(path))])
    assert backend_identity(BackendConfig(name="scripted", model=str(slow))) == ident
    assert backend_identity(BackendConfig(name="scripted", model=str(setup["other"]))) != ident


def test_the_run_summary_counts_every_drop_reason_it_does_not_name(setup, tmp_path):
    """Five drop reasons in one stage: the summary line names the three most common and counts the rest, on one
    line (before, the others were left out without a word)."""
    from support import invoke

    turn = " By 2 (informative) I explain.\n\nSage: "
    rules = write_jsonl(tmp_path / "many.jsonl", [
        {"match": "Question 0", "text": turn + "Yes."},  # too_short
        {"match": "Question 1", "text": " By 2 (informative) I explain."},  # missing_answer
        {"match": "Question 2", "text": turn + "The tide comes in and goes out. " * 8},  # repetition_loop
        {"match": "Question 3", "text": turn + "By 3 (helpful) I should say: " + ANSWER_A},  # persona_leak
        {"match": "Question 4", "text": turn + ANSWER_A + " </s> User: and the Sun?"},  # template_debris
        {"match": "Question 5", "text": turn + "Yes, it does."},  # too_short again: the most common
    ])
    write_jsonl(setup["prompts"], [{"prompt": f"Question {i} about the tides?"} for i in range(6)])
    res = invoke("run", str(setup["recipe"]), "--set", f'backend.model="{rules}"')
    assert res.exit_code == 0, res.output
    [line] = [x for x in res.stderr.splitlines() if x.strip().startswith("principle:") and " read, " in x]
    dropped = json.loads((setup["out"] / "principle.json").read_text())["dropped"]
    assert len(dropped) >= 4 and dropped["too_short"] == 2, dropped
    counts = sorted(dropped.values(), reverse=True)
    more, rest = len(counts) - 3, sum(counts[3:])
    assert "(dropped: too_short 2, " in line and f", {more} more reason{'s' * (more > 1)}: {rest} " \
        f"record{'s' * (rest > 1)} (in principle.json)" in line, line


def test_new_gate_code_remakes_the_stages_never_hands_back_the_old_rules_output(setup, monkeypatch):
    import selfalign.stagekeys as stagekeys

    run(setup["recipe"])
    assert decisions(setup["recipe"]) == {"load": "reuse", "principle": "reuse", "sft": "reuse"}
    changed = {**stagekeys.code_fingerprint(), "gates": "0" * 16}  # as after an upgrade with new gate rules
    monkeypatch.setattr(stagekeys, "_code", changed)
    said = decisions(setup["recipe"])
    assert said["principle"].startswith("run (") and "code: selfalign's gates" in said["principle"]
    assert all(v.startswith("run (") for v in said.values())
    n = asked(setup["log"])
    run(setup["recipe"])
    assert decisions(setup["recipe"]) == {"load": "reuse", "principle": "reuse", "sft": "reuse"}
    assert asked(setup["log"]) == n + 3  # the cache is off here: with it, the old completions would be gated anew
