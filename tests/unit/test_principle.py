import pytest

from selfalign import assets
from selfalign.backends.base import Completion
from selfalign.gates import parse_keep
from selfalign.backends.scripted import ScriptedBackend
from selfalign.records import AlignedRecord, Dropped, PromptRecord
from selfalign.report.counts import Report
from selfalign.stages.principle import Principle, PrincipleStage, cited_principles
from selfalign.text.templates import principle_prefix

GOOD = ("The water cycle moves water between the oceans, the air and the land. The sun warms the sea so water "
        "evaporates, the vapour cools into clouds, and rain or snow brings it back down to rivers and lakes.")

# (case name, completion text, expected drop reason or None for kept)
CASES = [
    ("good", f" The user asks about nature. By 2 (informative) I explain.\n\nSage: {GOOD}", None),
    ("no_answer_marker", " I think about 2 (informative) and 8 (knowledge recitation) but never answer.",
     "missing_answer"),
    ("empty_thoughts", f"\n\nSage: {GOOD}", "missing_thoughts"),
    ("empty_answer", " By 2 (informative) I explain.\n\nSage:   ", "missing_answer"),
    ("starts_user_turn", f" By 3 (helpful).\n\nSage: User: what else? {GOOD}", "template_debris"),
    ("truncated", f" By 2 (informative).\n\nSage: {GOOD} Then the", "truncated"),
    ("loop", " By 5 (reasoning).\n\nSage: Water goes up and comes down again. "
     + "Water goes up and comes down again. " * 6, "repetition_loop"),
    ("too_short", " By 2 (informative).\n\nSage: Water moves around.", "too_short"),
    ("persona_leak", f" By 2 (informative).\n\nSage: {GOOD} As Sage (internal thoughts) I note more.",
     "persona_leak"),
    ("exemplar_leak", " By 9 (static).\n\nSage: I'm not able to check live results: I cannot browse the internet, "
     "and my knowledge stops at the date my training data ends, so I cannot know what happened.", "exemplar_leak"),
]


@pytest.fixture
def stage():
    be = ScriptedBackend(rules=[{"text": "unused"}])
    return PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(), Report("principle"))


@pytest.mark.parametrize("name,text,reason", CASES, ids=[c[0] for c in CASES])
def test_each_filter_drops_what_it_should_and_keeps_good_answers(stage, name, text, reason):
    rec = PromptRecord.model_validate({"prompt": "How does the water cycle work?"})
    out = stage.judge(rec, Completion(text=text, finish_reason="length" if name == "truncated" else "stop"))
    if reason is None:
        assert isinstance(out, AlignedRecord), out
        assert out.response == GOOD and out.principles == ["2"]
    else:
        assert isinstance(out, Dropped) and out.drop_reason == reason, out


def test_answer_is_cut_at_a_new_user_turn_and_kept_when_enough_is_left(stage):
    rec = PromptRecord.model_validate({"prompt": "q"})
    out = stage.judge(rec, Completion(text=f" By 2 (informative).\n\nSage: {GOOD}\nUser: and more?"))
    assert isinstance(out, AlignedRecord) and out.response == GOOD


def test_repetition_is_cut_where_it_starts(stage):
    rec = PromptRecord.model_validate({"prompt": "q"})
    longer = GOOD + (" Some of it soaks into the ground and feeds springs and wells, some is held for years in "
                     "glaciers and deep aquifers, and plants return a share of it to the air through their leaves.")
    looping = longer + " The sun warms the sea so water evaporates again and again." * 2
    out = stage.judge(rec, Completion(text=f" By 2 (informative).\n\nSage: {looping}"))
    assert isinstance(out, AlignedRecord)
    assert out.response.count("again and again") == 1
    # in a short answer the same sentence twice is a stutter that drops it
    short = stage.judge(rec, Completion(text=f" By 2 (informative).\n\nSage: {GOOD}" + " Then it rains on the hills again." * 2))
    assert isinstance(short, Dropped) and short.drop_reason == "repetition_loop"


def test_filters_can_be_turned_off():
    be = ScriptedBackend(rules=[{"text": "unused"}])
    cfg = Principle(keep=parse_keep(["too_short,unwarranted_refusal"]))
    st = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), cfg, Report("principle"))
    rec = PromptRecord.model_validate({"prompt": "Tell me about rivers"})
    no = " By 1 (ethical).\n\nSage: I'm sorry, but I can't help with questions about rivers."
    out = st.judge(rec, Completion(text=no))
    assert isinstance(out, AlignedRecord) and st.meaning.apply("principle", [out], "response") == [out]
    st = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(), Report("principle"))
    out = st.judge(rec, Completion(text=no))
    assert isinstance(out, AlignedRecord)  # the text gates leave a decline to the harm classifier (stubbed: 0.0)
    assert st.meaning.apply("principle", [out], "response")[0].drop_reason == "unwarranted_refusal"
    with pytest.raises(ValueError, match="--keep apology_opening: not a drop reason"):
        parse_keep(["apology_opening"])


def test_citations_by_number_and_by_name_map_to_ids_of_the_set():
    ps = assets.load_principles()
    thoughts = "By 15 (step-by-step) I list steps; rules 2 and 5 apply; I stay candor-minded? I must be ethical."
    assert cited_principles(thoughts, ps) == ["13", "2", "5", "7", "1"]
    assert cited_principles("rule 99 and 3 (nonexistent)", ps) == ["3"]


def test_plain_text_principle_set_end_to_end_cites_only_its_ids(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("10 (kind). Be kind.\n20 (brief). Be brief.\n")
    ps = assets.load_principles(str(f))
    be = ScriptedBackend(rules=[{"match": "water", "text": f" Following 10 (kind) and rule 20.\n\nSage: {GOOD}"},
                                {"text": f" Following 10 (kind) and rule 20, and 3 (helpful).\n\nSage: {GOOD}"}])
    st = PrincipleStage(be, ps, assets.load_exemplars(), Principle(), Report("principle"))
    out = list(st.run([PromptRecord.model_validate({"prompt": "water?"}),
                       PromptRecord.model_validate({"prompt": "rain?"})]))
    assert isinstance(out[0], AlignedRecord) and out[0].principles == ["10", "20"]
    # a principle of the default set, cited under the user's own: not one the answer was written under
    assert isinstance(out[1], Dropped) and out[1].drop_reason == "miscited_principle"
    assert "no principle 3" in out[1].detail
    assert "10 (kind). Be kind." in principle_prefix(ps, assets.load_exemplars(), "Sage")


def test_prompt_that_overflows_the_context_is_dropped_never_cut():
    be = ScriptedBackend(rules=[{"text": f" By 2 (informative).\n\nSage: {GOOD}"}], max_model_len=1500)
    report = Report("principle")
    st = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(), report)
    short = PromptRecord.model_validate({"prompt": "Short question?"})
    long = PromptRecord.model_validate({"prompt": "word " * 2000})
    out = list(report.tally(st.run([short, long])))
    assert isinstance(out[0], AlignedRecord)
    assert isinstance(out[1], Dropped) and out[1].drop_reason == "prompt_too_long"
    assert "prompt tokens" in out[1].detail and out[1].id == long.id
    assert be.prompts_seen == 1  # the long prompt never reached the model
    assert report.kept == 1 and report.dropped["prompt_too_long"] == 1


def test_provenance_names_backend_sampling_and_assets():
    be = ScriptedBackend(rules=[{"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    st = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(seed=3), Report("p"))
    rec = next(iter(st.run([PromptRecord.model_validate({"prompt": "water?"})])))
    prov = rec.provenance[-1]
    assert prov.stage == "principle" and prov.backend == "scripted"
    assert prov.sampling["temperature"] == 0.5 and prov.sampling["top_p"] == 0.95
    assert prov.sampling["max_tokens"] == 256 and prov.sampling["seed"] == 3
    assert len(prov.assets_hash) == 16 and prov.template_version


@pytest.mark.parametrize("text,reason", [
    (f" By 2 (informative).\n\nSage: {GOOD} Sage: The user asks again.", "persona_leak"),
    (f" By 2 (informative).\n\nSage: {GOOD}\n\nSage: more", "persona_leak"),
    (f" {GOOD}\n\nSage: {GOOD}", "answer_in_thoughts"),
    (f" By 2 (informative). {GOOD}\n\nSage: See above.", "answer_in_thoughts"),
])
def test_the_persona_speaking_again_or_the_answer_in_the_thoughts_slot_is_dropped(stage, text, reason):
    out = stage.judge(PromptRecord.model_validate({"prompt": "How does the water cycle work?"}), Completion(text=text))
    assert isinstance(out, Dropped) and out.drop_reason == reason


def test_the_split_follows_the_template_not_the_first_sage_colon(stage):
    rec = PromptRecord.model_validate({"prompt": "How do I use sage in a stuffing? My note says 'Sage: savoury'."})
    thoughts = " The user quotes a note, Sage: savoury, from a recipe. By 3 (helpful) I give amounts."
    answer = ("Use about two tablespoons of fresh chopped sage for a 9x13 pan of stuffing, or two teaspoons of "
              "dried. Sage: add it with the onions so its flavour blooms in the butter before the bread goes in.")
    out = stage.judge(rec, Completion(text=f"{thoughts}\n\nSage: {answer}"))
    assert isinstance(out, AlignedRecord), out
    assert out.thoughts == thoughts.strip() and out.response == answer and out.principles == ["3"]


def test_a_truncated_completion_from_the_backend_is_dropped_with_its_token_count(stage):
    be = ScriptedBackend(rules=[{"text": f" By 2 (informative).\n\nSage: {GOOD}", "finish_reason": "length"}])
    st = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(), Report("p"))
    out = list(st.run([PromptRecord.model_validate({"prompt": "water?"})]))
    assert isinstance(out[0], Dropped) and out[0].drop_reason == "truncated" and "tokens)" in out[0].detail


def test_a_batch_is_counted_in_one_call_where_the_backend_counts_many():
    """A server backend counts a whole batch concurrently: the stage must hand it the batch, not one prompt
    at a time, and judge each prompt by its own count."""

    class Batched(ScriptedBackend):
        def __init__(self):
            super().__init__(rules=[{"text": f" By 2 (informative) I explain.\n\nSage: {GOOD}"}], max_model_len=2048)
            self.batches: list[int] = []

        def count_tokens(self, text):
            raise AssertionError("counted one at a time")

        def count_tokens_many(self, texts):
            self.batches.append(len(texts))
            return [10_000 if "LONG" in t else 1500 for t in texts]

    be = Batched()
    be.count_tokens = lambda text: 1500  # check_fits counts the fixed prefix once
    stage = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(batch_size=4, keep=frozenset({"off_topic", "restates_question"})),
                           Report("principle"))
    recs = [PromptRecord(prompt=f"Question {i} about water? {'LONG' if i == 2 else ''}") for i in range(6)]
    out = list(stage.run(recs))
    assert be.batches == [4, 2]
    assert [o.drop_reason if isinstance(o, Dropped) else "kept" for o in out] == [
        "kept", "kept", "prompt_too_long", "kept", "kept", "kept"]
    assert "10000 prompt tokens" in out[2].detail


@pytest.mark.parametrize("thoughts, why", [
    ("The user asks a fact. By 21 (ethical) I must answer.", "no principle 21"),
    ("By 15 (step-by-step) I should list them, and by 16 (operational) keep it short.", "15 is (creative)"),
    ("By 2 (informative) I state it, and by 16 (balanced perspectives) both sides.", "14 is (balanced"),
    ("Following 7 (useful) and 3 (neutral), I answer.", None),  # no principle's name: a paraphrase, perhaps
    # how people and models paraphrase a name that is there: kept
    ("By 2 (accuracy) and 14 (balanced & informative perspectives) I answer.", None),
    ("Following 13 (steps), and per 7 (candour), I say what I do not know.", None),
    # not citations: a count in brackets, a year, a name alone, "principle 7"
    ("The user asks for 3 (three) ideas, as in 2019 (the report). By principle 7 and the ethical rule I answer.", None),
])
def test_thoughts_that_cite_a_principle_the_set_does_not_hold(thoughts, why):
    from selfalign.stages.principle import miscited
    got = miscited(thoughts, assets.load_principles())
    assert (got is None) if why is None else (why in got)


def test_miscited_principle_drops_the_record_unless_kept(tmp_path):
    text = f" By 15 (step-by-step) I should explain it.\n\nSage: {GOOD}"
    for keep, kept in ((None, False), (["miscited_principle"], True)):
        be = ScriptedBackend(rules=[{"text": text}])
        st = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(keep=parse_keep(keep)),
                            Report("principle"))
        out = list(st.run([PromptRecord.model_validate({"prompt": "water?"})]))
        assert isinstance(out[0], AlignedRecord) is kept
    # a set that names its principles instead of numbering them is not read for numbers
    f = tmp_path / "named.yaml"
    f.write_text("- {id: kind, name: kindness, text: Be kind.}\n- {id: brief, name: brevity, text: Be brief.}\n")
    named = assets.load_principles(str(f))
    from selfalign.stages.principle import miscited
    assert all(not p.id.isdigit() for p in named) and miscited(text, named) is None
