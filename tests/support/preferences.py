"""The aligned records and scripted critique/judge answers behind the preference-data tests."""

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
