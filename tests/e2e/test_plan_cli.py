"""`selfalign run` as a process: killed mid-stage (SIGKILL) and run again under the same key (resumes) or another
model (starts afresh), and a second run on a folder in use (refused, deleting nothing); scripted backend."""

import os
import subprocess
import sys
import time
from pathlib import Path

from support import ROOT, jsonl, run_cli, write_jsonl

ANSWER_A = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and "
            "the far side both bulge, so most coasts see two high tides and two low tides every day.")
ANSWER_B = ("The oceans rise and fall twice a day because the Moon pulls on the water nearest to it and the Earth "
            "is pulled away from the water on the far side, which leaves two bulges that the coasts pass through.")
N = 8

RECIPE = """out = "{out}"
[backend]
name = "scripted"
model = "{rules}"
cache = false
[[stage]]
kind = "load"
path = "{prompts}"
[[stage]]
kind = "principle"
batch_size = 1
keep = ["off_topic", "restates_question"]
[[stage]]
kind = "export"
name = "sft"
"""


def setup(tmp_path: Path) -> dict:
    log = tmp_path / "asked.log"
    turn = " By 2 (informative) I explain.\n\nSage: "
    paths = {"out": tmp_path / "out", "log": log,
             "slow": write_jsonl(tmp_path / "slow.jsonl", [{"delay": 0.4}, {"log": str(log)}, {"text": turn + ANSWER_A}]),
             "fast": write_jsonl(tmp_path / "fast.jsonl", [{"log": str(log)}, {"text": turn + ANSWER_A}]),
             "other": write_jsonl(tmp_path / "other.jsonl", [{"log": str(log)}, {"text": turn + ANSWER_B}]),
             "prompts": write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i} about the tides?"}
                                                           for i in range(N)])}
    paths["recipe"] = tmp_path / "recipe.toml"
    paths["recipe"].write_text(RECIPE.format(rules=paths["slow"], **paths))
    paths["env"] = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    return paths


def start(p: dict, tmp_path: Path, name: str) -> subprocess.Popen:
    err = open(tmp_path / f"{name}.err", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "selfalign", "run", str(p["recipe"])], cwd=ROOT,
                            env={**os.environ, **p["env"]}, stdout=subprocess.DEVNULL, stderr=err)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for(condition, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill_mid_principle(p: dict, tmp_path: Path) -> int:
    """Start the run, SIGKILL it once principle's side file holds 3 records; returns the records it holds."""
    partial = p["out"] / "principle.jsonl.partial"
    proc = start(p, tmp_path, "killed")
    wait_for(lambda: lines(partial) >= 3 or proc.poll() is not None, "3 answered records")
    proc.kill()
    proc.wait()
    assert proc.returncode == -9 and not (p["out"] / "principle.jsonl").exists()
    return lines(partial)


def test_killed_mid_stage_and_run_again_under_the_same_key_it_resumes_asking_nothing_twice(tmp_path):
    p = setup(tmp_path)
    done = kill_mid_principle(p, tmp_path)
    assert 3 <= done < N
    asked_before = lines(p["log"])
    # the same rules without the delay: the delay does not change an answer, so the key is the same
    plan = run_cli("run", str(p["recipe"]), "--set", f'backend.model="{p["fast"]}"', "--dry-run", env=p["env"]).stdout
    assert "half-done: resume" in plan
    again = run_cli("run", str(p["recipe"]), "--set", f'backend.model="{p["fast"]}"', env=p["env"])
    assert "principle: resuming its half-done files" in again.stderr and f"resuming: {done} records" in again.stderr
    assert lines(p["log"]) - asked_before == N - done  # only the prompts with no record were asked
    records = jsonl(p["out"] / "principle.jsonl")
    assert len(records) == N and len({r["id"] for r in records}) == N


def test_killed_mid_stage_and_run_again_with_another_model_it_starts_afresh(tmp_path):
    p = setup(tmp_path)
    kill_mid_principle(p, tmp_path)
    asked_before = lines(p["log"])
    plan = run_cli("run", str(p["recipe"]), "--set", f'backend.model="{p["other"]}"', "--dry-run", env=p["env"]).stdout
    assert "run (backend: model; its half-done files are discarded)" in plan
    again = run_cli("run", str(p["recipe"]), "--set", f'backend.model="{p["other"]}"', env=p["env"])
    assert "resuming" not in again.stderr
    assert lines(p["log"]) - asked_before == N
    assert [r["response"] for r in jsonl(p["out"] / "principle.jsonl")] == [ANSWER_B] * N
    assert {r["messages"][-1]["content"] for r in jsonl(p["out"] / "sft.jsonl")} == {ANSWER_B}


def test_a_second_run_on_the_same_folder_is_refused_and_deletes_nothing(tmp_path):
    p = setup(tmp_path)
    slower = write_jsonl(tmp_path / "slower.jsonl", [{"delay": 1.5}, *jsonl(p["slow"])[1:]])  # the same model
    p["recipe"].write_text(RECIPE.format(rules=slower, **p))
    partial = p["out"] / "principle.jsonl.partial"
    first = start(p, tmp_path, "first")
    wait_for(lambda: lines(partial) >= 1 or first.poll() is not None, "a first answered record")
    held = lines(partial)
    second = run_cli("run", str(p["recipe"]), "--set", f'backend.model="{p["other"]}"', check=False, env=p["env"])
    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "is being written by another selfalign run (pid" in errors[0], second.stderr
    assert lines(partial) >= held  # nothing of the first run's was deleted
    assert first.wait(timeout=120) == 0, (tmp_path / "first.err").read_text()
    assert [r["response"] for r in jsonl(p["out"] / "principle.jsonl")] == [ANSWER_A] * N


def test_a_folder_with_other_files_is_refused_in_one_line_that_names_the_setting(tmp_path):
    p = setup(tmp_path)
    p["out"].mkdir()
    (p["out"] / "notes.txt").write_text("mine")
    proc = run_cli("run", str(p["recipe"]), check=False, env=p["env"])
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "holds files that are not this run's (notes.txt)" in proc.stderr and "--set run.allow_foreign=true" in proc.stderr
    assert os.listdir(p["out"]) == ["notes.txt"]
