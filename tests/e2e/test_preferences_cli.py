"""Preference data end to end on the scripted backend: critique -> judge -> export --format dpo, from the command
line and as a Python pipeline, with the same pairs; and TRL's conversational DPO layout."""


from support import jsonl, run_cli, write_jsonl

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
