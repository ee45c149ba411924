"""A scripted backend's rules for small pipelines: self-instruct continues a numbered list with three
questions, and principle answers each (a good answer on tides, a too-short one on honey)."""

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")
RULES = [
    {"match": "\n6.", "text": " Explain why the sea has tides.\n7. Describe how bees make honey.\n8. Why is ice slippery?"},
    {"match": "tides", "text": f" The user asks about science. By 8 (knowledge recitation) I recall facts.\n\nSage: {GOOD}"},
    {"match": "honey", "text": " Following 2 (informative).\n\nSage: Bees make honey."},
    {"text": f" By 2 (informative) I explain.\n\nSage: {GOOD} Ice is slippery because of a thin film of water."},
]
