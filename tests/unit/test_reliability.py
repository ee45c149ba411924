"""Nothing lost, nothing blocked: bad records, repeated ids, side files and locks, corrupt and unwritable
outputs, bugs, SIGTERM, resume memory, an oversized principle set, reruns over bad input, a missing input.

Runs use the scripted backend; waits are on conditions (a file's first line), never a sleep then a signal."""

import json
import tracemalloc


from selfalign.io.jsonl import done_ids

from support import jsonl, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")


# 13 ----------------------------------------------------------------------------------------------------
def test_resume_reads_ids_without_holding_the_file(tmp_path):
    big = tmp_path / "out.jsonl"
    text = "x" * 20_000
    with open(big, "w") as f:
        for i in range(1000):  # 20 MB of records
            f.write(json.dumps({"id": f"r{i}", "prompt": "q", "response": text}) + "\n")
        f.write('{"id": "torn", "pro')
    tracemalloc.start()
    ids = done_ids(str(big))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ids == {f"r{i}" for i in range(1000)} and peak < 2_000_000, f"peak {peak} bytes"
    assert big.read_bytes().endswith(b"}\n")


def test_a_record_a_model_cannot_write_is_set_aside_not_a_stopped_run(tmp_path):
    from selfalign import assets
    from selfalign.backends.scripted import ScriptedBackend
    from selfalign.gates import parse_keep
    from selfalign.records import PromptRecord
    from selfalign.runner import Runner
    from selfalign.stages.principle import Principle, PrincipleStage

    be = ScriptedBackend(rules=[{"match": "broken", "text": " By 2 (informative).\n\nSage: bad \ud800 text here."},
                                {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    runner = Runner("principle", str(tmp_path / "out.jsonl"), str(tmp_path / "d.jsonl"))
    keep = parse_keep(["all"])
    stage = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(keep=keep),
                           runner.report)
    recs = [PromptRecord(prompt="A broken one?"), PromptRecord(prompt="Why are there tides?")]
    report = runner.execute(stage.run(recs))
    assert [d["drop_reason"] for d in jsonl(tmp_path / "d.jsonl")] == ["unwritable"]
    assert len(jsonl(tmp_path / "out.jsonl")) == 1 and report.dropped["unwritable"] == 1 and report.kept == 1


def test_a_repeated_id_is_caught_across_input_files(tmp_path):
    from selfalign.records import PromptRecord
    from selfalign.runner import Runner

    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Why is the sea salty?"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Why is the sea salty?"}, {"prompt": "Why rain?"}])
    runner = Runner("principle", str(tmp_path / "out.jsonl"), str(tmp_path / "d.jsonl"))
    runner.resume()
    runner.execute(runner.records([str(a), str(b)], PromptRecord))
    assert [r["prompt"] for r in jsonl(tmp_path / "out.jsonl")] == ["Why is the sea salty?", "Why rain?"]
    assert [(d["drop_reason"], d["file"], d["line"]) for d in jsonl(tmp_path / "d.jsonl")] == [
        ("duplicate_id", str(b), 1)]
