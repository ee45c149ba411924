import json


from selfalign.records import AlignedRecord
from selfalign.stages.export import Export, ExportInput, export


ROWS = [{"prompt": f"Question number {i}?", "thoughts": "By 2 (informative) I answer.", "principles": ["2"],
         "response": f"Answer number {i}, explained in a full sentence.", "verbose_response": f"A long answer {i}."}
        for i in range(3)]


def test_three_formats_without_thoughts_or_principles():
    recs = [AlignedRecord.model_validate(r) for r in ROWS]
    for fmt, key in (("messages", "messages"), ("sharegpt", "conversations"), ("alpaca", "instruction")):
        out = list(export(recs, Export(format=fmt, system="Be helpful.")))
        assert len(out) == 3 and key in out[0]
        text = json.dumps(out)
        assert "thoughts" not in text and "informative" not in text and "principles" not in text
    m = list(export(recs[:1], Export(system="Be helpful.")))[0]["messages"]
    assert [x["role"] for x in m] == ["system", "user", "assistant"]
    assert m[2]["content"] == ROWS[0]["response"]
    v = list(export(recs[:1], Export(verbose=True)))[0]["messages"]
    assert [x["role"] for x in v] == ["user", "assistant"] and v[1]["content"] == "A long answer 0."


# -- preference pairs (dpo) --------------------------------------------------------------------------------
REVISED = "I can't see live prices, so check a financial news site for today's figure and its recent history."
PAIRS = [
    {**ROWS[0], "critique": "Invented figure. It breaks principle 7.", "violations": ["7"], "revision": REVISED,
     "checked_principles": ["2", "7"]},
    {**ROWS[1], "critique": "Fine. It breaks none of the principles.", "violations": [], "revision": None},
    {**ROWS[2], "critique": "Vague.", "violations": ["3"], "revision": "A better answer 2, with the steps spelled out.",
     "judge": {"principle": "3", "score": -2.5, "margin": 2.5, "chosen": "response", "method": "logprobs",
               "pair": ["response", "revision"], "confidence": 0.92}},  # as the judge stage writes it
    {**ROWS[0], "id": "judged-low", "violations": ["7"], "revision": REVISED,
     "judge": {"principle": "all", "margin": 0.25, "chosen": "revision"}},
    {**ROWS[0], "id": "judged-no-margin", "violations": ["7"], "revision": REVISED, "judge": {"principle": 7}},
    {**ROWS[0], "id": "bad-judge", "revision": REVISED, "judge": {"margin": 1.0, "chosen": "neither"}},
    {**ROWS[0], "id": "same", "revision": ROWS[0]["response"].upper()},
    {**ROWS[0], "id": "tie", "revision": REVISED, "judge": {"score": 0.0, "margin": 0.0, "chosen": "tie"}},
    {"prompt": "Two samples?", "id": "sampled", "responses": ["First sampled answer.", "Second sampled answer."],
     "judge": {"principle": "all", "margin": 1.5, "chosen": "responses[1]", "pair": ["responses[0]", "responses[1]"]}},
    {"prompt": "Two samples, unjudged?", "id": "sampled-unjudged", "responses": ["One answer.", "Another answer."]},
]


def dpo(rows, **cfg):
    from selfalign.stages.export import ExportInput

    out = list(export([ExportInput.model_validate(r) for r in rows], Export(format="dpo", **cfg)))
    return [o for o in out if isinstance(o, dict)], [o for o in out if not isinstance(o, dict)]


def test_dpo_pairs_revision_over_response_or_as_the_judge_chose():
    kept, dropped = dpo(PAIRS, system="Be helpful.", min_margin=0)  # 0: no minimum margin
    by_id = {k["id"]: k for k in kept}
    a = by_id[AlignedRecord.model_validate(ROWS[0]).id]
    assert a["prompt"] == [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Question number 0?"}]
    assert a["chosen"] == [{"role": "assistant", "content": REVISED}]
    assert a["rejected"] == [{"role": "assistant", "content": ROWS[0]["response"]}]
    assert a["margin"] is None and a["principle"] == "7" and a["violations"] == ["7"] and a["chosen_from"] == "revision"
    judged = by_id[AlignedRecord.model_validate(ROWS[2]).id]  # the judge preferred the original
    assert judged["chosen"][0]["content"] == ROWS[2]["response"]
    assert judged["rejected"][0]["content"].startswith("A better answer 2")
    assert judged["margin"] == 2.5 and judged["principle"] == "3" and judged["chosen_from"] == "response"
    assert by_id["judged-low"]["margin"] == 0.25 and by_id["judged-low"]["principle"] == "all"
    assert by_id["judged-no-margin"]["margin"] is None  # a judge without a margin: as if unjudged
    sampled = by_id["sampled"]
    assert sampled["chosen"][0]["content"] == "Second sampled answer." and sampled["chosen_from"] == "responses[1]"
    assert sampled["rejected"][0]["content"] == "First sampled answer." and sampled["margin"] == 1.5
    text = json.dumps(kept)
    assert "thoughts" not in text and "critique" not in text and "informative" not in text
    assert sorted((d.drop_reason, d.id) for d in dropped) == sorted([
        ("no_pair", AlignedRecord.model_validate(ROWS[1]).id), ("bad_judge", "bad-judge"), ("no_pair", "same"),
        ("judge_tie", "tie"), ("no_pair", "sampled-unjudged")])
    assert all(d.stage == "export" and d.detail for d in dropped)
    # plain aligned records have no pair: every one is dropped with the reason
    kept, dropped = dpo(ROWS)
    assert kept == [] and [d.drop_reason for d in dropped] == ["no_pair"] * 3


def test_dpo_min_margin_drops_low_and_unusable_judge_margins_with_their_reasons():
    kept, dropped = dpo(PAIRS, min_margin=1.0)
    assert [k["margin"] for k in kept] == [None, 2.5, 1.5]  # no judge scored the first: it passes, margin None
    reasons = sorted(d.drop_reason for d in dropped)
    assert reasons == sorted(["no_pair", "low_margin", "no_margin", "bad_judge", "no_pair", "judge_tie", "no_pair"])
    assert next(d for d in dropped if d.drop_reason == "no_margin").id == "judged-no-margin"
    assert len(kept) + len(dropped) == len(PAIRS)
    low = next(d for d in dropped if d.drop_reason == "low_margin")
    assert low.id == "judged-low" and "0.25 < 1" in low.detail and low.record["judge"]["margin"] == 0.25
    kept, _ = dpo(PAIRS, min_margin=0.25)
    assert sorted(k["margin"] for k in kept if k["margin"] is not None) == [0.25, 1.5, 2.5]


def test_dpo_max_tokens_counts_the_longer_completion():
    kept, dropped = dpo(PAIRS[:1], max_tokens=12)  # without a counter the limit cannot apply: kept
    assert len(kept) == 1
    counter = lambda t: len(t.split())  # noqa: E731
    out = list(export([ExportInput.model_validate(PAIRS[0])], Export(format="dpo", max_tokens=12), counter))
    assert out[0].drop_reason == "too_many_tokens"
    out = list(export([ExportInput.model_validate(PAIRS[0])], Export(format="dpo"), counter))
    assert out[0]["num_tokens"] == len("Question number 0?".split()) + len(REVISED.split())  # the longer: the revision


def test_sft_export_of_revisions_falls_back_to_the_response():
    recs = [ExportInput.model_validate(r) for r in PAIRS[:2]]
    out = list(export(recs, Export(revised=True)))
    assert [o["messages"][-1]["content"] for o in out] == [REVISED, ROWS[1]["response"]]
