"""The scripted answers behind the sampled-pair tests (principle --n 2): sample 0 asks with seed 1, sample 1
with seed 2."""

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
