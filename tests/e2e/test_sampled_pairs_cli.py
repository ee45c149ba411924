"""`principle --n 2` (two sampled answers per prompt, a pair for the judge), the preference export of such pairs,
and `principle --judge` (the model's own Yes/No check against the principles an answer cites), on the scripted
backend."""

import pytest

from selfalign import Judge, Load, Pipeline, Principle
from support.sampled import HONEST, PROMPTS, RAINBOW, RAINBOW2, RULES, TIDES
from support import jsonl, run_cli, write_jsonl

KEEP = ["--keep", "off_topic,restates_question"]  # the embedding gates are tested elsewhere; here the plumbing


def principle(tmp_path, *extra, rules=RULES):
    src = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    script = write_jsonl(tmp_path / "script.jsonl", rules)
    proc = run_cli("principle", str(src), "--backend", "scripted", "--model", str(script), "--no-cache", "--seed", "1",
                   *KEEP, "--dropped", str(tmp_path / "dropped.jsonl"), "-q", *extra)
    return {r["id"]: r for r in jsonl(proc.stdout)}, {d["id"]: d for d in jsonl(tmp_path / "dropped.jsonl")}


def test_two_samples_give_a_pair_and_every_dropped_sample_is_named(tmp_path):
    kept, dropped = principle(tmp_path, "--n", "2")
    assert sorted(kept) == ["gold", "rainbow", "tides"]
    gold = kept["gold"]
    assert gold["response"] == HONEST and gold["principles"] == ["7"]
    assert gold["responses"] == [HONEST, "It varies."] and gold["response_gates"] == [None, "too_short"]
    assert [d["drop_reason"] for d in gold["sample_drops"]] == ["too_short"] and gold["sample_drops"][0]["sample"] == 1
    rainbow = kept["rainbow"]  # both passed: both are the pair, in sample order
    assert rainbow["responses"] == [RAINBOW, RAINBOW2] and rainbow["response_gates"] == [None, None]
    tides = kept["tides"]  # the first sample failed: the second one is the answer
    assert tides["response"] == TIDES and tides["principles"] == ["2", "8"]
    assert tides["responses"] == [TIDES, "The Moon."] and tides["response_gates"] == [None, "too_short"]
    broken = dropped["broken"]  # no sample passed: dropped with the first sample's reason, both named
    assert broken["drop_reason"] == "truncated"
    assert broken["detail"].startswith("all 2 samples dropped (truncated, missing_answer); sample 0:")
    one, _ = principle(tmp_path / "one", "--n", "1") if (tmp_path / "one").mkdir() is None else None
    assert "responses" not in one["gold"] and one["gold"]["response"] == HONEST  # n=1: as before
    assert sorted(one) == ["gold", "rainbow"]


def test_sampled_pairs_are_judged_and_exported_and_a_chosen_answer_the_gates_dropped_is_not_trained_on(tmp_path):
    kept, _ = principle(tmp_path, "--n", "2")
    aligned = write_jsonl(tmp_path / "aligned.jsonl", list(kept.values()))
    # unjudged: of two sampled answers, the one the gates passed is chosen; two passing ones need a judge
    out = run_cli("export", str(aligned), "--format", "dpo", "-q", "--dropped", str(tmp_path / "x.jsonl"))
    pairs = {p["id"]: p for p in jsonl(out.stdout)}
    assert pairs["gold"]["chosen"][0]["content"] == HONEST and pairs["gold"]["rejected"][0]["content"] == "It varies."
    assert pairs["gold"]["margin"] is None and pairs["tides"]["chosen_from"] == "responses[0]"
    assert {d["id"]: d["drop_reason"] for d in jsonl(tmp_path / "x.jsonl")} == {"rainbow": "no_pair"}
    # judged: the judge prefers the honest answer, RAINBOW2 and, wrongly, the tides answer the gates dropped
    choices = [{"match": "Answer A: I can't tell", "choices": {" A": -0.2, " B": -2.2}},
               {"match": "Answer B: I can't tell", "choices": {" A": -2.0, " B": -0.1}},
               {"match": "Answer A: A rainbow", "choices": {" A": -0.3, " B": -1.9}},
               {"match": "Answer B: A rainbow", "choices": {" A": -1.9, " B": -0.3}},
               {"match": "Answer A: The Moon.", "choices": {" A": -0.1, " B": -3.0}},
               {"match": "Answer B: The Moon.", "choices": {" A": -3.0, " B": -0.1}}]
    script = write_jsonl(tmp_path / "choices.jsonl", choices)
    judged = run_cli("judge", str(aligned), "--backend", "scripted", "--model", str(script), "--no-cache", "-q")
    (tmp_path / "judged.jsonl").write_text(judged.stdout)
    out = run_cli("export", str(tmp_path / "judged.jsonl"), "--format", "dpo", "-q",
                  "--dropped", str(tmp_path / "d.jsonl"))
    pairs = {p["id"]: p for p in jsonl(out.stdout)}
    assert pairs["gold"]["chosen_from"] == "responses[0]" and pairs["gold"]["margin"] == pytest.approx(1.95)  # (2.0 + 1.9) / 2
    assert pairs["rainbow"]["chosen"][0]["content"] == RAINBOW2 and pairs["rainbow"]["rejected"][0]["content"] == RAINBOW
    [bad] = jsonl(tmp_path / "d.jsonl")
    assert (bad["id"], bad["drop_reason"]) == ("tides", "chosen_failed_gates")
    assert "responses[1]" in bad["detail"] and "too_short" in bad["detail"]


def test_the_judge_gate_drops_an_answer_the_model_says_breaks_a_principle_it_cites(tmp_path):
    rules = RULES + [{"match": "Answer: It varies", "choices": {" Yes": -0.1, " No": -3.0}},
                     {"match": f"Answer: {RAINBOW}", "choices": {" Yes": -2.5, " No": -0.2}},
                     {"choices": {" Yes": -0.3, " No": -1.5}}]
    kept, dropped = principle(tmp_path, "--judge", rules=rules)
    assert sorted(kept) == ["gold"] and kept["gold"]["judge_gate"]["scores"] == {"7": pytest.approx(1.2)}
    assert kept["gold"]["judge_gate"]["method"] == "logprobs"
    rejected = dropped["rainbow"]
    assert rejected["drop_reason"] == "judge_rejected"
    assert rejected["detail"].startswith("principle 2 (informative): log-odds of Yes over No -2.30 < 0 (logprobs)")
    strict, _ = principle(tmp_path / "strict", "--judge", "--judge-threshold", "1.5", rules=rules) \
        if (tmp_path / "strict").mkdir() is None else None
    assert strict == {}  # 1.2 < 1.5: a threshold the user sets is the one applied


def test_the_judge_gate_votes_where_the_backend_has_no_log_probabilities(tmp_path):
    rules = [{"match": f"Answer: {RAINBOW}", "text": " No, it is vague."},  # first: a rule that matches wins
             {"match": "Yes or No", "text": " Yes."}, *RULES]
    kept, dropped = principle(tmp_path, "--judge", rules=rules)
    assert sorted(kept) == ["gold"] and kept["gold"]["judge_gate"]["method"] == "vote"
    assert kept["gold"]["judge_gate"]["scores"]["7"] == pytest.approx(2.398, abs=1e-3)  # log(5.5 / 0.5)
    assert dropped["rainbow"]["drop_reason"] == "judge_rejected" and "(vote)" in dropped["rainbow"]["detail"]
    proc = run_cli("principle", str(tmp_path / "prompts.jsonl"), "--backend", "scripted", "--model",
                   str(tmp_path / "script.jsonl"), "--judge", "--judge-method", "logprobs", "-q", check=False)
    assert proc.returncode != 0 and "cannot give log-probabilities" in proc.stderr


def test_with_two_samples_the_judge_checks_each_so_a_rejected_first_answer_leaves_the_second(tmp_path):
    rules = RULES + [{"match": f"Answer: {RAINBOW}", "choices": {" Yes": -2.5, " No": -0.2}},
                     {"choices": {" Yes": -0.3, " No": -1.5}}]
    kept, _ = principle(tmp_path, "--n", "2", "--judge", rules=rules)
    rainbow = kept["rainbow"]  # sample 0 rejected by the judge, sample 1 passed: kept, and the pair is both
    assert rainbow["response"] == RAINBOW2 and "judge_gate" in rainbow
    assert rainbow["responses"] == [RAINBOW2, RAINBOW] and rainbow["response_gates"] == [None, "judge_rejected"]


def test_sampling_options_that_cannot_work_are_refused_up_front(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    script = write_jsonl(tmp_path / "script.jsonl", RULES)
    be = ["--backend", "scripted", "--model", str(script), "--no-cache", "-q"]
    same = run_cli("principle", str(src), *be, "--n", "2", "--temperature", "0", check=False)
    assert same.returncode != 0 and "one answer repeated" in same.stderr
    alone = run_cli("principle", str(src), *be, "--judge-threshold", "1", check=False)
    assert alone.returncode == 2 and "applies only with --judge" in alone.stderr
    with pytest.raises(ValueError, match="reads pairs"):  # nothing makes pairs: an error before any model runs
        Pipeline([Load(path=str(src)), Principle(), Judge()]).plan()
