"""Clean preference pairs: both sides of a dpo pair are answers as the SFT export writes them (no internal thoughts,
principle citations, persona turns or template tokens), at the source (`principle --n 2` puts only parsed answers
into `responses`) and at export (`rejected_unparsed` / `chosen_unparsed`); and `--min-margin` has one default,
the export stage's, under which judged pairs are `low_margin`."""

from typer.testing import CliRunner

from selfalign import Export, Load, Pipeline, Principle
from selfalign.backends.scripted import ScriptedBackend
from selfalign.cli import app
from selfalign.stages.export import ExportInput, export
from support import jsonl, write_jsonl

TIDES = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
         "far side both bulge, so most coasts see two high tides and two low tides every day.")
TIDES2 = ("The Moon pulls hardest on the water nearest to it and least on the water farthest away, which stretches "
          "the oceans into two bulges; as the Earth turns through both of them each day, a coast gets two high tides.")
# what the demo run exported as a rejected side: thoughts, a principle citation and the persona's turn marker
RAW = ("Sage (internal thoughts): By 16 (clarification) I should ask what the user means before answering.\n\n"
       "Sage: Tides are caused by the Moon.")
MIN = Export.model_fields["min_margin"].default  # the one default


def dpo(rows, **cfg):
    out = list(export([ExportInput.model_validate(r) for r in rows], Export(format="dpo", **cfg)))
    return [o for o in out if isinstance(o, dict)], [o for o in out if not isinstance(o, dict)]


def judged(id, chosen, rejected, margin):
    return {"id": id, "prompt": "Why are there two tides a day?", "responses": [rejected, chosen],
            "judge": {"principle": "all", "margin": margin, "chosen": "responses[1]",
                      "pair": ["responses[0]", "responses[1]"]}}


def test_a_rejected_side_that_is_a_raw_completion_makes_no_pair():
    rows = [{"id": "raw", "prompt": "Why are there two tides a day?", "responses": [TIDES, RAW],
             "response_gates": [None, "persona_leak"]}]  # unjudged: the gates ordered it
    kept, [d] = dpo(rows)
    assert kept == [] and (d.id, d.drop_reason) == ("raw", "rejected_unparsed")
    assert "responses[1]" in d.detail and "internal thoughts" in d.detail  # names what was found
    kept, [d] = dpo([judged("raw-judged", TIDES, "Sage: The Moon pulls on the oceans, twice a day.", 3.0)])
    assert d.drop_reason == "rejected_unparsed" and "Sage:" in d.detail
    # clean pairs pass: a judged one, and an unjudged one the gates ordered (it passes the default minimum)
    kept, dropped = dpo([*rows, judged("clean", TIDES, TIDES2, 3.0),
                         {"id": "gates", "prompt": "Why are there two tides a day?", "responses": [TIDES, "The Moon."],
                          "response_gates": [None, "too_short"]}])
    assert [d.id for d in dropped] == ["raw"] and [k["id"] for k in kept] == ["clean", "gates"]
    assert kept[0]["chosen"][0]["content"] == TIDES and kept[0]["rejected"][0]["content"] == TIDES2
    assert kept[1]["margin"] is None


def test_a_chosen_side_with_a_principle_citation_makes_no_pair():
    cited = "By 16 (clarification), I should first say that " + TIDES[0].lower() + TIDES[1:]
    kept, [d] = dpo([judged("cited", cited, TIDES2, 3.0)])
    assert kept == [] and d.drop_reason == "chosen_unparsed" and "16 (clarification)" in d.detail
    kept, [d] = dpo([judged("debris", TIDES + "\n<|im_end|>", TIDES2, 3.0)])
    assert d.drop_reason == "chosen_unparsed" and "<|im_end|>" in d.detail


# sample 0 asks with seed 1, sample 1 with seed 2
def turn(thoughts, answer):
    return f" {thoughts}\n\nSage: {answer}"


PROMPTS = [{"id": "tides", "prompt": "Why are there two tides a day?"},
           {"id": "leak", "prompt": "What makes the tides rise and fall?"}]
RULES = [
    {"seed": 1, "match": "two tides", "text": turn("By 2 (informative) I explain the cause.", TIDES)},
    {"seed": 2, "match": "two tides", "text": " " + TIDES2},  # no answer turn: a raw completion
    {"seed": 1, "match": "rise and fall", "text": turn("By 2 (informative) I explain the cause.", TIDES)},
    # the answer turn restarts the whole reply: thoughts, a citation and the persona's turn inside the answer
    {"seed": 2, "match": "rise and fall", "text": turn("By 2 (informative) I answer.", RAW.replace("\n\n", " "))},
]


def test_principle_n2_puts_no_raw_completion_into_responses(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    keep = ["off_topic", "restates_question", "missing_answer", "missing_thoughts"]  # the raw text gets through
    stages = [Load(path=str(src)), Principle(n=2, seed=1, keep=keep)]
    Pipeline(stages).run(tmp_path / "out", backend=ScriptedBackend(rules=RULES))
    out = {r["id"]: r for r in jsonl(tmp_path / "out" / "principle.jsonl")}
    assert out["tides"]["response"] == TIDES and out["tides"]["responses"] == [TIDES]  # not TIDES2 unsplit
    assert out["leak"]["responses"] == [TIDES] and out["leak"]["response_gates"] == [None]
    assert [d["drop_reason"] for d in out["leak"]["sample_drops"]] == ["persona_leak"]


def test_the_default_min_margin_drops_a_coin_flip_and_keeps_a_pair_above_it():
    assert MIN is not None and 0.004 < MIN
    kept, dropped = dpo([judged("flip", TIDES, TIDES2, 0.004), judged("sure", TIDES, TIDES2, MIN + 0.01)])
    assert [k["id"] for k in kept] == ["sure"]
    assert [(d.id, d.drop_reason) for d in dropped] == [("flip", "low_margin")]
    gated = {**judged("gated", TIDES, "The Moon.", 0.004), "response_gates": ["too_short", None]}
    kept, dropped = dpo([gated])  # the gates ordered it and the judge agreed: it does not rest on the margin
    assert [k["id"] for k in kept] == ["gated"] and dropped == []
    kept, dropped = dpo([judged("flip", TIDES, TIDES2, 0.004)], min_margin=0)  # 0: off
    assert [k["id"] for k in kept] == ["flip"] and dropped == []


def test_the_cli_and_the_stage_share_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))
    assert Export().min_margin == MIN  # the stage function's config follows the stage
    rows = [judged("flip", TIDES, TIDES2, 0.004), judged("sure", TIDES, TIDES2, MIN + 0.01),
            {"id": "raw", "prompt": "Why are there two tides a day?", "responses": [TIDES, RAW],
             "response_gates": [None, "too_short"]}]
    src = write_jsonl(tmp_path / "judged.jsonl", rows)
    res = CliRunner().invoke(app, ["export", str(src), "--format", "dpo", "--dropped", str(tmp_path / "d.jsonl")],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert [p["id"] for p in jsonl(res.stdout)] == ["sure"]
    assert {d["id"]: d["drop_reason"] for d in jsonl(tmp_path / "d.jsonl")} == {
        "flip": "low_margin", "raw": "rejected_unparsed"}
    assert "dropped: low_margin" in res.stderr and "dropped: rejected_unparsed" in res.stderr  # the summary
    res = CliRunner().invoke(app, ["export", str(src), "--format", "dpo", "--min-margin", "0", "-q"])
    assert [p["id"] for p in jsonl(res.stdout)] == ["flip", "sure"]


def test_a_pipeline_export_uses_the_default(tmp_path):
    row = {**judged("flip", TIDES, TIDES2, 0.004), "thoughts": "By 2 (informative) I explain.", "response": TIDES2}
    src = write_jsonl(tmp_path / "judged.jsonl", [row])
    reports = Pipeline([Load(path=str(src), records="aligned"), Export(name="dpo", format="dpo")]).run(
        tmp_path / "out", backend=ScriptedBackend(rules=[]))
    assert reports["dpo"].dropped == {"low_margin": 1}
