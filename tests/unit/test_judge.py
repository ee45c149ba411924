"""The pairwise judge: order cancellation, pairs, drops and the vote on the scripted backend; log-probabilities on
the embedded model (slow) and, equal to them, on vLLM and a real vLLM OpenAI server (vllm)."""

import math

import pytest

from selfalign import assets
from selfalign.backends.scripted import ScriptedBackend
from selfalign.records import AlignedRecord, Dropped
from selfalign.stages.judge import Judge, judge, judge_prompt, read_vote

PRINCIPLES = assets.load_principles()
GOOD, BAD = "GOOD answer text.", "BAD answer text."
# prefers whichever answer says GOOD, and (in the second rule) also leans towards position A
CONTENT = [{"match": "Answer A: GOOD", "choices": {" A": -0.1, " B": -2.0}},
           {"match": "Answer B: GOOD", "choices": {" A": -1.0, " B": -0.4}}]


def run(records, rules, **config):
    return list(judge(records, ScriptedBackend(rules=rules), Judge(**config), PRINCIPLES))


def critiqued(response=BAD, revision=GOOD, prompt="How do I stay safe online?"):
    return {"prompt": prompt, "response": response, "revision": revision}


def test_a_pure_position_bias_cancels_to_a_zero_score():
    [out] = run([critiqued()], [{"choices": {" A": -0.2, " B": -1.7}}])
    j = out.judge
    assert j["orders"] == pytest.approx([-1.5, 1.5]) and j["score"] == 0.0 and j["margin"] == 0.0
    assert j["chosen"] == "tie" and j["confidence"] == 0.5 and j["method"] == "logprobs"


def test_a_preference_for_content_gives_the_sign_whatever_the_position():
    [better_revision, better_response] = run([critiqued(), critiqued(response=GOOD, revision=BAD)], CONTENT)
    j = better_revision.judge
    # order 1 shows the revision (GOOD) as B: -0.4 - -1.0; order 2 shows it as A: -0.1 - -2.0
    assert j["orders"] == pytest.approx([0.6, 1.9]) and j["score"] == pytest.approx(1.25)
    assert j["chosen"] == "revision" and j["pair"] == ["response", "revision"] and j["principle"] == "all"
    assert j["confidence"] == pytest.approx(1 / (1 + math.exp(-1.25)))
    assert j["choice_mass"] == pytest.approx((math.exp(-1.0) + math.exp(-0.4) + math.exp(-0.1) + math.exp(-2.0)) / 2)
    k = better_response.judge
    assert k["score"] == pytest.approx(-1.25) and k["margin"] == pytest.approx(1.25) and k["chosen"] == "response"


def test_two_sampled_answers_are_a_pair_too_and_the_record_keeps_its_class_and_fields():
    rec = AlignedRecord.model_validate({"prompt": "q?", "thoughts": "t", "response": BAD, "revision": GOOD,
                                        "topic": "x"})
    outs = run([rec, {"prompt": "q2?", "responses": [GOOD, BAD]}], CONTENT)
    assert type(outs[0]) is AlignedRecord and outs[0].thoughts == "t" and outs[0].revision == GOOD
    assert outs[0].provenance[-1].stage == "judge" and outs[0].provenance[-1].sampling["method"] == "logprobs"
    assert outs[1].judge["pair"] == ["responses[0]", "responses[1]"] and outs[1].judge["chosen"] == "responses[0]"


def test_records_without_a_pair_are_dropped_as_no_pair_in_order():
    rows = [{"prompt": "a", "response": BAD}, {"prompt": "b", "responses": [GOOD, BAD, BAD]}, critiqued(),
            critiqued(revision="  " + BAD), critiqued(revision=" "), critiqued(revision=None)]
    outs = run(rows, CONTENT)
    assert [o.drop_reason if isinstance(o, Dropped) else "kept" for o in outs] == [
        "no_pair", "no_pair", "kept", "no_pair", "no_pair", "no_pair"]
    assert "same text" in outs[3].detail and "revision is empty" in outs[4].detail
    assert "nothing to revise" in outs[5].detail  # a critiqued record whose critique found no violation
    assert outs[0].record["prompt"] == "a"


def test_an_overlong_pair_is_dropped_with_its_count_never_cut():
    long = critiqued(revision=GOOD + " word" * 300)
    be = ScriptedBackend(rules=[*CONTENT, {"max_context": 200}])
    outs = list(judge([long, critiqued()], be, Judge(), PRINCIPLES[:1]))
    assert outs[0].drop_reason == "prompt_too_long" and "+ 1 new > context 200" in outs[0].detail
    assert outs[1].judge["score"] > 0 and be.prompts_seen == 2  # only the pair that fits reached the model


def test_a_backend_without_logprobs_gets_a_vote_with_its_confidence_stated():
    votes_for_good = [{"match": "Answer A: GOOD", "text": " A"}, {"match": "Answer B: GOOD", "text": " B"}]
    unanimous = run([critiqued()], votes_for_good, samples=3)
    j = unanimous[0].judge
    assert j["method"] == "vote" and j["votes"] == {"first": 0, "second": 6, "invalid": 0} and j["n"] == 6
    assert j["score"] == pytest.approx(math.log(6.5 / 0.5)) and j["confidence"] == 1.0 and j["chosen"] == "revision"
    biased = run([critiqued()], [{"text": "A, because it is clearer."}], samples=2)[0].judge
    assert biased["votes"] == {"first": 2, "second": 2, "invalid": 0}
    assert biased["score"] == 0 and biased["confidence"] == 0.5
    half_unread = [votes_for_good[0], {"match": "Answer B: GOOD", "text": "I think"}]
    mixed = run([critiqued()], half_unread, samples=2)[0].judge
    assert mixed["votes"] == {"first": 0, "second": 2, "invalid": 2} and mixed["confidence"] == 1.0
    [dropped] = run([critiqued()], [{"text": " Both are fine."}], samples=2)
    assert dropped.drop_reason == "no_vote" and "none of 4" in dropped.detail


def test_each_vote_sample_has_its_own_seed_so_the_cache_keeps_them_apart(tmp_path):
    from selfalign.io.cache import CachedBackend, CompletionCache

    seen = []

    class Recording(ScriptedBackend):
        def generate(self, prompts, params):
            seen.append(params.seed)
            return super().generate(prompts, params)

    be = CachedBackend(Recording(rules=[{"text": " B"}]), CompletionCache(tmp_path / "c.sqlite"))
    [out] = list(judge([critiqued()], be, Judge(samples=3, seed=7), PRINCIPLES))
    assert seen == [7, 8, 9] and out.judge["n"] == 6 and out.provenance[-1].sampling["temperature"] == 1.0
    # the cached wrapper passes choice_logprobs and supports_logprobs through to its backend
    cached = CachedBackend(ScriptedBackend(rules=CONTENT), CompletionCache(tmp_path / "c.sqlite"))
    assert list(judge([critiqued()], cached, Judge(), PRINCIPLES))[0].judge["method"] == "logprobs"


def test_an_unscorable_pair_is_a_backend_error_and_forcing_logprobs_needs_a_backend_that_has_them():
    outs = run([critiqued(), critiqued(revision="skip me")], [*CONTENT, {"match": "skip me", "choices": None}])
    assert outs[1].drop_reason == "backend_error" and outs[0].judge["chosen"] == "revision"
    with pytest.raises(ValueError, match="cannot give log-probabilities"):
        run([critiqued()], [{"text": " A"}], method="logprobs")
    assert run([critiqued()], [*CONTENT, {"text": " B"}], method="vote", samples=1)[0].judge["method"] == "vote"


def test_one_principle_by_id_or_name_or_the_whole_set():
    one = judge_prompt("Q?", "x", "y", [PRINCIPLES[6]], one=True)
    assert "Principle: 7 (candor)." in one and "(ethical)" not in one
    assert one.endswith("Reply with one letter, A or B.\nBetter answer:") and "Answer A: x\n\nAnswer B: y" in one
    every = judge_prompt("Q?", "x", "y", PRINCIPLES, one=False)
    assert all(f"{p.id} ({p.name})." in every for p in PRINCIPLES)
    assert run([critiqued()], CONTENT, principle="candor")[0].judge["principle"] == "7"
    assert run([critiqued()], CONTENT, principle="7")[0].judge["principle"] == "7"
    with pytest.raises(ValueError, match="no principle 'kindness'"):
        run([critiqued()], CONTENT, principle="kindness")
    with pytest.raises(ValueError):
        Judge(principle="all", temperature=1.0)  # extra="forbid"


@pytest.mark.parametrize("text,vote", [(" A", "A"), ("B.", "B"), (" Answer B", "B"), ("(A) because", "A"),
                                       (" **B**", "B"), (" a good one", None), (" Both", None), ("", None)])
def test_a_sampled_reply_is_read_as_a_vote(text, vote):
    assert read_vote(text) == vote


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "judge.py"
    spec = importlib.util.spec_from_file_location("judge_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmarks_labelled_pairs_are_well_formed_and_its_agreement_counts_ties_as_misses():
    bench = _bench()
    pairs = bench.load()
    ids = {p.id for p in PRINCIPLES}
    assert len(pairs) == 40 and len({p["id"] for p in pairs}) == 40 and {p["principle"] for p in pairs} == ids
    assert all(p["better"].strip() and p["worse"].strip() and p["better"] != p["worse"] for p in pairs)
    assert {p["trap"] for p in pairs} == {None, "longer_worse", "refusal", "off_topic", "needless_refusal"}
    # a judge that always prefers the labelled better answer agrees on every pair, whichever side it is on
    oracle = [{"match": f"Answer {side}: {p['better'][:50]}", "choices": {" A": 0.0 if side == "A" else -5.0,
                                                                       " B": 0.0 if side == "B" else -5.0}}
              for p in pairs for side in "AB"]
    s = bench.summarise(pairs, bench.run_judge(ScriptedBackend(rules=oracle), pairs, "own", "auto", 1, 0))
    assert s["agreement"] == 1.0 and s["order1_only"] == 1.0 and s["a_bias_logodds"] == 0.0
    biased = bench.run_judge(ScriptedBackend(rules=[{"choices": {" A": -0.1, " B": -3.0}}]), pairs, "all", "auto", 1, 0)
    s = bench.summarise(pairs, biased)
    assert s["agreement"] == 0.0 and s["order1_only"] == 0.5 and s["a_bias_logodds"] == pytest.approx(2.9)


# -- the embedded model (transformers, float32 on the CPU) -----------------------------------------------------


    # a 135M model is a weak judge (see benchmarks/judge.py): only the plumbing is asserted, not its verdicts


# -- vLLM on the CPU, float32 like the embedded backend; and a real vLLM OpenAI server -------------------------
