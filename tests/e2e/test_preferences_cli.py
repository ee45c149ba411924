"""Preference data end to end on the scripted backend: critique -> judge -> export --format dpo, from the command
line and as a Python pipeline, with the same pairs; and TRL's conversational DPO layout."""


from support.preferences import FINE, KEEP, RECORDS, REVISION, RULES, WRONG
from support import jsonl, run_cli, write_jsonl


def test_critique_judge_and_dpo_export_from_the_command_line(tmp_path):
    aligned = write_jsonl(tmp_path / "aligned.jsonl", RECORDS)
    script = write_jsonl(tmp_path / "script.jsonl", RULES)
    backend = ["--backend", "scripted", "--model", str(script), "--no-cache", "-q"]
    crit = run_cli("critique", str(aligned), *backend, "--sample", "0", "--keep", ",".join(KEEP),
                   "--dropped", str(tmp_path / "crit-dropped.jsonl"))
    critiqued = {r["id"]: r for r in jsonl(crit.stdout)}
    assert critiqued["gold"]["violations"] == ["7"] and critiqued["gold"]["revision"] == REVISION
    assert critiqued["rainbow"].get("revision") is None and critiqued["rainbow"]["response"] == FINE
    (tmp_path / "critiqued.jsonl").write_text(crit.stdout)
    judged = run_cli("judge", str(tmp_path / "critiqued.jsonl"), *backend,
                     "--dropped", str(tmp_path / "judge-dropped.jsonl"))
    [gold] = jsonl(judged.stdout)
    assert gold["judge"]["chosen"] == "revision" and gold["judge"]["method"] == "logprobs"
    assert gold["judge"]["score"] > 1.5  # (2.0 + 2.1) / 2 once the position lean cancels
    [no_pair] = jsonl(tmp_path / "judge-dropped.jsonl")
    assert (no_pair["id"], no_pair["drop_reason"]) == ("rainbow", "no_pair")
    (tmp_path / "judged.jsonl").write_text(judged.stdout)
    out = run_cli("export", str(tmp_path / "judged.jsonl"), "--format", "dpo", "--min-margin", "1.0", "-q")
    [pair] = jsonl(out.stdout)
    assert pair["prompt"] == [{"role": "user", "content": "What is the price of gold today?"}]
    assert pair["chosen"] == [{"role": "assistant", "content": REVISION}]
    assert pair["rejected"] == [{"role": "assistant", "content": WRONG}]
    assert pair["margin"] > 1.5
    strict = run_cli("export", str(tmp_path / "judged.jsonl"), "--format", "dpo", "--min-margin", "5", "-q",
                     "--dropped", str(tmp_path / "export-dropped.jsonl"))
    assert jsonl(strict.stdout) == [] and jsonl(tmp_path / "export-dropped.jsonl")[0]["drop_reason"] == "low_margin"


def test_judge_takes_two_sampled_answers_from_the_command_line(tmp_path):
    src = write_jsonl(tmp_path / "two.jsonl", [{"id": "s", "prompt": "What is the price of gold today?",
                                                "responses": [WRONG, REVISION]}])
    script = write_jsonl(tmp_path / "script.jsonl", RULES)
    out = run_cli("judge", str(src), "--backend", "scripted", "--model", str(script), "--no-cache", "-q")
    [rec] = jsonl(out.stdout)
    assert rec["judge"]["chosen"] == "responses[1]" and rec["judge"]["score"] > 1.5
