"""`principle --n 2` (two sampled answers per prompt, a pair for the judge), the preference export of such pairs,
and `principle --judge` (the model's own Yes/No check against the principles an answer cites), on the scripted
backend."""


from selfalign import Export, Judge, Load, Pipeline, Principle
from selfalign.backends.scripted import ScriptedBackend
from support import jsonl, write_jsonl

HONEST = ("I can't tell you today's gold price: I have no access to live market data, and the price changes "
          "through the day. A financial news site, your bank or a bullion dealer will show the current price "
          "per ounce and how it has moved over recent weeks.")
RAINBOW = ("Rainbows form when sunlight enters raindrops, bends, reflects off the back of each drop and bends again "
           "on the way out; each colour bends by a different amount, so the light spreads into a band of colours.")
RAINBOW2 = ("A rainbow appears when the sun is behind you and rain is in front: every drop splits white light into "
            "its colours by refraction and sends them back towards you at about forty-two degrees, which draws the "
            "familiar arc across the sky.")
TIDES = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
         "far side both bulge, so most coasts see two high tides and two low tides every day.")
PROMPTS = [{"id": "gold", "prompt": "What is the price of gold today?"},
           {"id": "rainbow", "prompt": "How do rainbows form?"},
           {"id": "broken", "prompt": "Explain the offside rule."},
           {"id": "tides", "prompt": "Why are there two tides a day?"}]


def turn(thoughts, answer):
    return f" {thoughts}\n\nSage: {answer}"


# sample 0 asks with seed 1 (--seed 1), sample 1 with seed 2
RULES = [
    {"seed": 1, "match": "price of gold", "text": turn("By 7 (candor) I say what I cannot know.", HONEST)},
    {"seed": 2, "match": "price of gold", "text": turn("By 2 (informative) I give the price.", "It varies.")},
    {"seed": 1, "match": "rainbows form", "text": turn("By 2 (informative) I explain the optics.", RAINBOW)},
    {"seed": 2, "match": "rainbows form", "text": turn("By 8 (knowledge recitation) I recall it.", RAINBOW2)},
    {"seed": 1, "match": "offside", "text": turn("By 2 (informative) I explain.", "The rule"), "finish_reason": "length"},
    {"seed": 2, "match": "offside", "text": " I just answer with no turn at all."},
    {"seed": 1, "match": "two tides", "text": turn("By 2 (informative) I answer.", "The Moon.")},
    {"seed": 2, "match": "two tides", "text": turn("By 2 (informative) and 8 (knowledge recitation).", TIDES)},
]


def test_a_pipeline_judges_the_sampled_pairs_when_no_stage_wrote_other_pairs(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    rules = RULES + [{"match": "Answer A: I can't tell", "choices": {" A": -0.2, " B": -2.2}},
                     {"match": "Answer B: I can't tell", "choices": {" A": -2.0, " B": -0.1}},
                     {"choices": {" A": -0.5, " B": -0.9}}]
    stages = [Load(path=str(src)), Principle(n=2, seed=1, keep=["off_topic", "restates_question"]), Judge(),
              Export(name="dpo", format="dpo")]
    assert [(st.label, inputs) for st, inputs, _ in Pipeline(stages).plan()][2] == ("judge", ["principle.jsonl"])
    reports = Pipeline(stages).run(tmp_path / "out", backend=ScriptedBackend(rules=rules))
    pairs = {p["id"]: p for p in jsonl(tmp_path / "out" / "dpo.jsonl")}
    assert pairs["gold"]["chosen"][0]["content"] == HONEST
    assert reports["principle"].dropped == {"truncated": 1}
    assert reports["dpo"].dropped == {"judge_tie": 2}  # a pure position lean is no preference
