"""How the meaning gates use the embedder, with a fake one (no model in this tier): one call per batch, only the
answers whose decision the cosine can change, repeated texts from a bounded cache."""

import numpy as np
import pytest

from selfalign import assets
from selfalign.backends.scripted import ScriptedBackend
from selfalign.gates.meaning import MeaningGates
from selfalign.records import AlignedRecord, Dropped, PromptRecord
from selfalign.report.counts import Report
from selfalign.stages.principle import Principle, PrincipleStage


class FakeEmbedder:
    """Unit vectors: a text holding "OFFTOPIC" is at right angles to every other (cosine 0 to a query); otherwise
    a question (ending in "?") and an answer have cosine 0.5. Records each call's texts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([np.array([0.0, 0.0, 1.0]) if "OFFTOPIC" in t else np.array([0.5, 0.75 ** 0.5, 0.0])
                         if not t.endswith("?") else np.array([1.0, 0.0, 0.0]) for t in texts])


def gates(**kw) -> tuple[MeaningGates, FakeEmbedder]:
    g = MeaningGates(**kw)
    g._embedder = fake = FakeEmbedder()
    g._lang = lambda text: ("en", 0.99)  # no language model either: every text is English
    return g, fake


ANSWER = ("Soak the shirt in cold water first, then work a little dish soap into the stain with your fingers "
          "and rinse it out before you wash it as usual.")
OFF = ("OFFTOPIC The Great Barrier Reef stretches along the coast of Queensland and is home to thousands of "
       "species of fish, corals and molluscs, whose colours fade when the sea warms.")


def rec(q: str, a: str) -> AlignedRecord:
    return AlignedRecord.model_validate({"prompt": q, "thoughts": "By 2 (informative).", "response": a})


def reasons(outs) -> list:
    return [o.drop_reason if isinstance(o, Dropped) else None for o in outs]


def test_a_batch_is_embedded_in_one_call_and_decided_by_its_cosines():
    g, fake = gates()
    recs = [rec(f"How do I get stain number {k} out of a white cotton shirt quickly?", ANSWER) for k in range(5)]
    recs.append(rec("How do I remove a red wine stain from a white cotton shirt?", OFF))
    assert reasons(g.apply("principle", recs, "response")) == [None] * 5 + ["off_topic"]
    assert len(fake.calls) == 1
    assert len(fake.calls[0]) == 8  # 6 queries and 2 distinct answers: the same answer text is embedded once


def test_only_answers_the_cosine_can_decide_are_embedded():
    g, fake = gates()
    q = "How do I remove a red wine stain from a white cotton shirt?"
    dropped = Dropped(id="x", stage="principle", drop_reason="too_short", record=rec(q, ANSWER).model_dump())
    outs = g.apply("principle", [
        dropped,  # a cheaper gate dropped it
        rec(q, "Cold water, then soap."),  # too short for the relevance gates
        rec(q, "I'm sorry, but I can't help with removing stains from shirts of any colour at all today."),
        rec(q, "OFFTOPIC Run this in a terminal, then read what it prints:\n```sh\nls -lt /tmp | head -n 5\n```\n"
               "It lists the newest entries."),  # code and a figure: the cosine decides nothing
        rec(q, "You want to remove a red wine stain from a white cotton shirt: a stain from red wine on a white "
               "cotton shirt."),  # the echo measures drop it without a cosine
    ], "response")
    # the decline of a harmless request is the harm score's to judge (stubbed here: harmless), never the cosine's
    assert reasons(outs)[:4] == ["too_short", None, "unwarranted_refusal", None]
    assert reasons(outs)[4] == "restates_question"
    assert fake.calls == []


def test_repeated_queries_come_from_the_cache_and_the_cache_is_bounded():
    g, fake = gates()
    q = "How do I remove a red wine stain from a white cotton shirt?"
    g.apply("principle", [rec(q, ANSWER)], "response")
    g.apply("principle", [rec(q, ANSWER.replace("first", "at once"))], "response")  # a second sample, n = 2
    assert fake.calls[1] == [ANSWER.replace("first", "at once")]
    g.CACHE = 2
    g.apply("principle", [rec("Why is my bread so dense after baking it at home?", ANSWER + " More.")], "response")
    assert len(g._vecs) == 2 and q not in g._vecs
    g.forget()
    assert not g._vecs


def test_keep_skips_the_embedding_for_the_gates_turned_off():
    g, fake = gates(keep=frozenset({"off_topic"}))
    recs = [rec("How do I remove a red wine stain from a white cotton shirt?", OFF)]
    assert reasons(g.apply("principle", recs, "response")) == [None]
    assert fake.calls == []  # 18 new words: only the off-topic gate could use the cosine, and it is kept


@pytest.mark.parametrize("batch_size", [4, 16])
def test_the_principle_stage_embeds_once_per_backend_batch(batch_size):
    completion = f" By 3 (helpful) I give the steps.\n\nSage: {ANSWER}"
    be = ScriptedBackend(rules=[{"text": completion}])
    g, fake = gates()
    stage = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(),
                           Principle(batch_size=batch_size), Report("principle"), meaning=g)
    records = [PromptRecord(id=str(k), prompt=f"How do I get stain number {k} out of a white cotton shirt?")
               for k in range(8)]
    outs = list(stage.run(records))
    assert reasons(outs) == [None] * 8
    b = min(batch_size, 8)  # one call per backend batch: its queries, and the answer text the first time
    assert [len(c) for c in fake.calls] == [b + 1] + [b] * (8 // b - 1)


class SameEmbedder(FakeEmbedder):
    """Every text the same vector: cosine 1.0, as close in meaning as a restatement can be."""

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.tile(np.array([1.0, 0.0, 0.0]), (len(texts), 1))


def test_a_short_question_s_definition_is_not_a_restatement_but_a_paraphrase_is():
    g, _ = gates()
    g._embedder = SameEmbedder()
    definition = ("Rain is water that falls from clouds when tiny droplets merge until they are too heavy to stay "
                  "aloft, and it refills rivers, lakes and soil.")  # 15 new words for a query of one term
    paraphrase = "You would like a plain explanation of rain, a thing you have wondered about."  # 6 new words
    long_q = "How do seasonal changes in rainfall affect the crops that small farmers in dry regions can grow?"
    long_echo = ("Seasonal rainfall changes matter a great deal for what small farmers in dry regions manage to grow "
                 "as crops, and many people ask exactly this, which is a fair and sensible thing to wonder.")
    outs = g.apply("principle", [rec("What is rain?", definition), rec("What is rain?", paraphrase),
                                 rec(long_q, long_echo)], "response")
    assert reasons(outs) == [None, "restates_question", "restates_question"]
    assert g.restate_allowance("What is rain?") == g.RESTATE_MIN_NEW_EN
    assert g.restate_allowance(long_q) == g.RESTATE_MAX_NEW_EN
