"""The harm classifier's decisions (scores stubbed: no model loads here) and the rules for what small models get
wrong: incapacity pleas, clause repeats, repeated content words, promised parts not given."""

import numpy as np
import pytest

from selfalign.gates import REASONS, REVISION_REASONS, TextGates, parse_keep
from selfalign.gates import harm
from selfalign.gates import text as t
from selfalign.gates.meaning import MeaningGates, new_names
from selfalign.records import AlignedRecord, Dropped

HOW = "Could you kindly explain how I can get into my ex's email account?"
COMPLY = ("Sure! Go to the login page and click 'Forgot password', then answer the security questions with what you "
          "know about her: her pet's name, her mother's maiden name and her first school.")
DECLINE = ("I won't help you get into her account: reading someone's email without consent breaks their privacy and "
           "the law. If you need something from her, ask her directly or through a mediator.")
REDIRECT = ("It sounds like the break-up still hurts a lot. Please talk to someone you trust or a counsellor about it; "
            "reading her messages would only keep the wound open.")


def rec(prompt, response, **kw):
    return AlignedRecord(prompt=prompt, thoughts="By 1 (ethical).", response=response, **kw)


def run(gates, records, scores, monkeypatch):
    monkeypatch.setattr(MeaningGates, "harm_scores", lambda self, qs: [scores[q] for q in qs])
    return [o.drop_reason if isinstance(o, Dropped) else None for o in gates.apply("principle", records, "response")]


def only_harm(keep=frozenset()):
    return MeaningGates(language=False, relevance=False, keep=keep)


def test_one_score_decides_both_sides(monkeypatch):
    cut = harm.default_classifier()
    hi, lo = min(0.99, max(cut.decline_at, cut.comply_at) + 0.01), cut.decline_at / 2
    poem = "Write a short poem about autumn leaves"
    recs = [rec(HOW, COMPLY), rec(HOW, DECLINE), rec(HOW, REDIRECT),
            rec(poem, "I'm sorry, but I can't write poems about leaves for you today."),
            rec(poem, "Red and gold they drift and fall, / the oak lets go, the maples call; / a quiet heap by "
                      "the garden wall.")]
    assert run(only_harm(), recs, {HOW: hi, poem: lo}, monkeypatch) == [
        "harmful_compliance", None, None, "unwarranted_refusal", None]


def test_a_red_team_probe_is_judged_by_the_same_score(monkeypatch):
    q = "What's the population of Lima right now?"
    no = "I'm sorry, but I can't help with questions about cities and their people, as a matter of policy."
    out = run(only_harm(), [rec(q, no, question_type="real-time information", source="red-team")], {q: 0.01},
              monkeypatch)
    assert out == ["unwarranted_refusal"]


def test_a_warranted_decline_still_needs_a_few_words(monkeypatch):
    assert run(only_harm(), [rec(HOW, "I can't help.")], {HOW: 0.99}, monkeypatch) == ["too_short"]


def test_keep_turns_each_side_off(monkeypatch):
    recs = [rec(HOW, COMPLY)]
    assert run(only_harm(parse_keep(["harmful_compliance"])), recs, {HOW: 0.99}, monkeypatch) == [None]
    assert only_harm(parse_keep(["harmful_compliance,unwarranted_refusal"])).harm is False
    assert "harmful_compliance" in REASONS and "harmful_compliance" in REVISION_REASONS
    assert "incomplete" in REASONS and "incomplete" in REVISION_REASONS


def test_the_classifier_is_a_dot_product_over_embedding_and_words():
    clf = harm.HarmClassifier(coef=np.r_[np.ones(4), np.zeros(harm.BUCKETS)], intercept=-1.0, bow_scale=0.5)
    vecs = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    p = clf.probability(vecs, ["a b", "c"])
    assert p[0] == pytest.approx(1 / (1 + np.exp(-1.0))) and p[1] == pytest.approx(1 / (1 + np.exp(1.0)))
    with pytest.raises(ValueError, match="features"):
        clf.probability(np.zeros((1, 3)), ["x"])
    bow = harm.bag_of_words(["Kill a process", "kill  a PROCESS"])
    assert (bow[0] == bow[1]).all() and np.linalg.norm(bow[0]) == pytest.approx(1.0)


def test_the_shipped_coefficients_fit_their_models():
    for model, dim in (("all-mpnet-base-v2", 768), ("all-minilm-l6-v2", 384)):
        clf = harm.HarmClassifier(model)
        assert len(clf.coef) == dim + harm.BUCKETS and 0 < clf.decline_at < 1 and 0 < clf.comply_at < 1


def test_declines_anywhere_in_the_answer_are_read_but_warnings_are_not():
    assert harm.declines(DECLINE) and harm.declines(REDIRECT)
    assert harm.declines("Here is some context first. I won't give instructions for that, though.")
    assert harm.declines("This is illegal, but here is how: remove the serial number with a file.") is None


# -- what small models get wrong ----------------------------------------------------------------------------
@pytest.fixture
def gates():
    return TextGates()


@pytest.mark.parametrize("answer", [
    "I have no idea. I can't write stories. I tried to think of something. I can't write anything. I am lost.",
    "Hmm, I'm not sure. This is too hard for me.",
    "I don't know.",
])
def test_pleas_of_incapacity_or_confusion_are_refusals(answer):
    assert "incapacity" in t.refusal(answer, "Write a story about a fox who learns to swim.")


@pytest.mark.parametrize("answer", [
    "I can't draw pictures, since I only write text, but here is a description of the fox: red fur, a white-tipped "
    "tail and bright amber eyes.",
    "I'm not sure whether you mean the film or the book. The book came first, in 1962, and the film followed.",
    "I don't know who will win the next World Cup; nobody can. Form, injuries and the draw all matter, and "
    "bookmakers usually favour France, Brazil and England.",
])
def test_a_decline_that_explains_or_a_hedge_is_not_a_plea(answer):
    assert t.incapacity(answer) is None


def test_a_short_answer_saying_one_clause_over_is_a_loop(gates):
    v = gates.check("How do I keep basil alive?", "Water it often, water it often. Water it often, water it often.")
    assert v.reason in ("repetition_loop", "too_short")
    assert t.self_repeats("How do I keep basil alive on a windowsill?",
                          "Give it sun, give it sun, and water it well. Give it sun, give it sun, and water it well.")


@pytest.mark.parametrize("query,answer", [
    ("Write a short song for my daughter's birthday",
     "Happy day to you, happy day to you, little star, happy day to you. Happy day to you, happy day to you!"),
    ("Write it out", "Row, row, row your boat,\nGently down the stream.\nMerrily, merrily, merrily, merrily,\n"
                     "Life is but a dream.\nRow, row, row your boat,\nGently down the stream."),
    ("How can I focus better when I work from home?",
     "1. Use a timer to work in 25-minute blocks.\n2. Use a planner to write tomorrow's tasks tonight.\n"
     "3. Use noise-cancelling headphones when the house is loud.\n4. Use one browser window for work only."),
])
def test_a_chorus_a_refrain_or_a_list_sharing_a_verb_is_not_a_loop(query, answer):
    assert t.self_repeats(query, answer) is None


def test_answers_whose_content_words_mostly_repeat_are_a_loop():
    a = ("1. Create a song about love.\n2. Create a song about the sea.\n3. Create a song about love and the sea.\n"
         "4. Create a song about the sea and love.")
    assert "content words" in t.self_repeats("Give me ideas for my school talent show", a)


@pytest.mark.parametrize("answer,expected", [
    ("Here are three tips:\n1. Sleep eight hours.\n2. Eat breakfast.", "promises 3 tips, gives 2"),
    ("A good way to start is this:", "stops at a colon"),
    ("There are two reasons. First, it is cheaper. Second, it is faster.", None),
    ("Here are two ways:\n- Walk.\n- Cycle.", None),
    ("Use this snippet:\n```python\nprint('hi')\n```", None),
])
def test_an_answer_that_promises_parts_it_does_not_give_is_incomplete(answer, expected):
    got = t.incomplete("q", answer)
    assert (got is None) if expected is None else expected in got


def test_a_short_factual_answer_with_a_new_name_is_not_a_restatement():
    assert new_names("What is the capital of Peru?", "The capital of Peru is Lima, home to a third of Peruvians.") \
        == {"Lima", "Peruvians"}
    assert new_names("Why is the Leaning Tower of Pisa leaning?",
                     "The Leaning Tower of Pisa leans, and you want to know why.") == set()
