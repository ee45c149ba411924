"""Synthetic instruction-like texts with planted near duplicates, for the novelty / dedup benchmarks.

Made here from word lists (no data set is downloaded); each planted near duplicate is an edit of an
earlier text: a word swapped for a synonym, words dropped, a clause added, or the order changed.
"""

from __future__ import annotations

import random

VERBS = ["Explain", "Describe", "Summarise", "List", "Compare", "Suggest", "Write", "Outline", "Give", "Plan",
         "Analyse", "Propose", "Draft", "Rank", "Define", "Evaluate", "Illustrate", "Classify", "Predict", "Discuss"]
OBJECTS = ["the causes of inflation", "a recipe for lentil soup", "the rules of cricket", "ways to save energy at home",
           "the history of the printing press", "tips for a job interview", "how vaccines work", "a poem about rain",
           "the benefits of cycling to work", "a plan for learning Spanish", "the water cycle", "how bridges carry load",
           "a bedtime story about a dragon", "the pros and cons of remote work", "how compound interest grows",
           "the life cycle of a butterfly", "a budget for a student", "the causes of the French Revolution",
           "how a search engine ranks pages", "a workout for beginners", "the role of enzymes in digestion",
           "a polite email declining a meeting", "the main ideas of stoicism", "how tides are formed",
           "a packing list for a camping trip", "the differences between cats and dogs as pets",
           "the effects of sleep on memory", "how to care for a cactus", "the plot of a mystery novel",
           "how electric motors work", "the dangers of misinformation", "a speech for a school graduation"]
AUDIENCES = ["for a ten-year-old", "for a busy parent", "for an engineer", "in three sentences", "in a short table",
             "for a beginner", "with one example", "as a numbered list", "for a history class", "in plain words",
             "for a retired teacher", "for a nervous traveller", "with a touch of humour", "for a small business",
             "for a science fair", "in under fifty words", "for a podcast intro", "for a newsletter"]
EXTRAS = ["", "", "", " and mention one common mistake", " and end with a question", " and cite a famous example",
          " and keep it positive", " and avoid jargon", " and add a summary line", " and include a fun fact"]
SYNONYMS = {"Explain": "Clarify", "Describe": "Portray", "List": "Enumerate", "Write": "Compose", "Give": "Provide",
            "Suggest": "Recommend", "Plan": "Design", "Outline": "Sketch", "short": "brief", "ways": "methods",
            "tips": "advice", "how": "in what way", "main": "key", "beginner": "novice"}


def distinct_texts(n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        t = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(AUDIENCES)}{rng.choice(EXTRAS)}."
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def near_duplicate(text: str, rng: random.Random) -> str:
    words = text.rstrip(".").split()
    kind = rng.randrange(4)
    if kind == 0:  # synonym swap
        words = [SYNONYMS.get(w, w) for w in words]
        if " ".join(words) == text.rstrip("."):
            words = ["Please", words[0].lower(), *words[1:]]
    elif kind == 1 and len(words) > 6:  # drop a word
        del words[rng.randrange(1, len(words))]
    elif kind == 2:  # add a polite clause
        words = ["Could", "you", words[0].lower(), *words[1:]]
    else:  # typo
        i = rng.randrange(len(words))
        w = words[i]
        words[i] = w[:-1] if len(w) > 3 else w + "s"
    return " ".join(words) + "."


def with_planted(n: int, share: float, seed: int = 0) -> tuple[list[str], set[int]]:
    """n texts of which about `share` are near duplicates of an earlier one; returns their positions."""
    rng = random.Random(seed)
    base = distinct_texts(n, rng)
    texts: list[str] = []
    planted: set[int] = set()
    src = iter(base)
    while len(texts) < n:
        if texts and rng.random() < share:
            planted.add(len(texts))
            texts.append(near_duplicate(rng.choice(texts[max(0, len(texts) - 2000):]), rng))
        else:
            texts.append(next(src))
    return texts, planted
