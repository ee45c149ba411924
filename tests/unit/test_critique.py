import json

import pytest
from pydantic import ValidationError

from selfalign import assets
from selfalign.backends.base import Completion
from selfalign.backends.scripted import ScriptedBackend
from selfalign.report.counts import Report
from selfalign.gates.meaning import MeaningGates
from selfalign.io.jsonl import InputError
from selfalign.records import CritiquedRecord, Dropped
from selfalign.stages.critique import (Critique, CritiqueStage, critique, critique_stops, parse_keep,
                                       select_principles)

from support.critique import ANSWER, QUESTION, REVISION, rec

PRINCIPLES = assets.load_principles()
EXEMPLARS = assets.load_critique_exemplars()
NO_MEANING = MeaningGates(language=False, relevance=False)


@pytest.fixture
def stage():
    be = ScriptedBackend(rules=[{"text": "unused"}])
    return CritiqueStage(be, PRINCIPLES, EXEMPLARS, Critique(sample=2, seed=3), meaning=NO_MEANING)


def judge(stage, text, record=None, finish="stop"):
    r = record or rec()
    check = stage.select(r)
    assert "7" in check
    return stage.judge(r, check, Completion(text=text, finish_reason=finish, completion_tokens=len(text.split())))


# -- choosing the principles ---------------------------------------------------------------------------
def test_selection_is_the_cited_principles_plus_k_seeded_others_in_set_order():
    r = rec(principles=["7", "12", "99"])  # 99: not in the set, ignored
    ids = [p.id for p in PRINCIPLES]
    got = select_principles(r, PRINCIPLES, 3, seed=5)
    assert {"7", "12"} <= set(got) and len(got) == 5 and "99" not in got
    assert got == sorted(got, key=ids.index)
    assert select_principles(r, PRINCIPLES, 3, seed=5) == got  # deterministic
    draws = {tuple(select_principles(r, PRINCIPLES, 3, seed=s)) for s in range(8)}
    assert len(draws) > 1  # the seed matters
    other = rec(prompt="Another question entirely?", principles=["7", "12"])
    assert len({tuple(select_principles(other, PRINCIPLES, 3, seed=s)) for s in range(8)} | draws) > len(draws)
    assert select_principles(r, PRINCIPLES, 0, seed=5) == ["7", "12"]
    assert select_principles(r, PRINCIPLES, 100, seed=5) == ids  # K beyond the set: the whole set
    # the draw depends on the record's id, not on what else is in the batch or in which order
    be = ScriptedBackend(rules=[{"text": " Fine. The answer breaks none of the principles.\nViolations: none"}])
    st = CritiqueStage(be, PRINCIPLES, EXEMPLARS, Critique(sample=3, seed=5), meaning=NO_MEANING)
    a = {o.id: o.checked_principles for o in st.run([r, other])}
    b = {o.id: o.checked_principles for o in st.run([other, r])}
    assert a == b and a[r.id] == got


def test_the_prompt_shows_the_checked_principles_the_exemplars_and_the_record():
    be = ScriptedBackend(rules=[{"text": " Fine. The answer breaks none of the principles.\nViolations: none"}])
    st = CritiqueStage(be, PRINCIPLES, EXEMPLARS, Critique(sample=1, seed=0), meaning=NO_MEANING)
    r = rec()
    check = st.select(r)
    prompt = st.render(r, check)
    by_id = {p.id: p for p in PRINCIPLES}
    tail = prompt[prompt.rindex("### Review"):]
    for pid in check:
        assert f"{pid} ({by_id[pid].name}). {by_id[pid].text}" in tail
    assert sum(f"({p.name})." in tail for p in PRINCIPLES) == len(check)
    assert tail.endswith(f"User: {QUESTION}\nAnswer: {ANSWER}\n\nCritique:")
    assert prompt.count("### Review") == len(EXEMPLARS) + 1
    assert "Violations: none" in prompt and "Revision: I can't give you the current price" in prompt
    assert all(s in critique_stops() for s in ("\n### Review", "\nUser:", "\nCritique:"))


# -- parsing each shape --------------------------------------------------------------------------------
def test_no_violation_passes_the_record_unchanged(stage):
    out = judge(stage, " The answer is careful. It breaks none of the principles.\nViolations: none\n")
    assert isinstance(out, CritiquedRecord), out
    assert out.response == ANSWER and out.revision is None and out.violations == []
    assert out.critique == "The answer is careful. It breaks none of the principles."
    assert "7" in out.checked_principles and out.provenance[-1].stage == "critique"


def test_a_violation_with_a_revision_is_kept_beside_the_original(stage):
    out = judge(stage, f" The price is invented. The answer breaks principle 7.\nViolations: 7\nRevision: {REVISION}")
    assert isinstance(out, CritiquedRecord), out
    assert out.violations == ["7"] and out.revision == REVISION and out.response == ANSWER


def test_a_critique_naming_one_broken_principle_and_none_of_the_others_is_consistent(stage):
    out = judge(stage, f" The price is invented, which breaks principle 7. It breaks none of the others.\nViolations: 7\n"
                f"Revision: {REVISION}")
    assert isinstance(out, CritiquedRecord) and out.violations == ["7"], out


@pytest.mark.parametrize("violations", ["7 (candor)", "candor", "**7**", "principle 7", "7."])
def test_violations_written_by_name_or_decorated_map_to_ids(stage, violations):
    out = judge(stage, f" Invented.  It breaks a rule.\n**Violations:** {violations}\n\n**Revision:** {REVISION}")
    assert isinstance(out, CritiquedRecord) and out.violations == ["7"], out


TRAPS = [
    ("none_with_revision", f" It is fine, I think.\nViolations: none\nRevision: {REVISION}", "critique_inconsistent"),
    ("says_none_names_some", f" The answer breaks none of the principles.\nViolations: 7\nRevision: {REVISION}",
     "critique_inconsistent"),
    ("unchecked_id", f" The price is invented here.\nViolations: 7, 42\nRevision: {REVISION}", "violation_unchecked"),
    ("revision_copies_answer", f" The price is invented here.\nViolations: 7\nRevision: {ANSWER}",
     "revision_copies_answer"),
    ("revision_copies_answer_in_other_case", f" The price is invented here.\nViolations: 7\nRevision: "
     f"{ANSWER.upper()}", "revision_copies_answer"),
    ("no_violations_line", " The price is invented here and that is bad.", "critique_unparsed"),
    ("two_violations_lines", " Invented price here.\nViolations: none\nViolations: 7", "critique_unparsed"),
    ("violations_as_prose", " Invented price here.\nViolations: the answer makes things up", "critique_unparsed"),
    ("empty_critique", "\nViolations: none", "critique_unparsed"),
    ("revision_before_violations", f" Bad.\nRevision: {REVISION}\nViolations: 7", "critique_unparsed"),
    ("prose_after_violations", " Invented price here.\nViolations: none\nAlso it is rude.", "critique_unparsed"),
    ("no_revision", " The price is invented here.\nViolations: 7\n", "revision_empty"),
    ("empty_revision", " The price is invented here.\nViolations: 7\nRevision:   ", "revision_empty"),
    ("revision_cites_principles", f" Invented price here.\nViolations: 7\nRevision: By 7 (candor) I say: {REVISION}",
     "persona_leak"),
    ("revision_too_short", " Invented price here.\nViolations: 7\nRevision: Check a news site.", "too_short"),
    ("revision_loops", " Invented price here.\nViolations: 7\nRevision: I cannot see live prices today. "
     + "I cannot see live prices today. " * 8, "repetition_loop"),
    ("critique_loops", " The answer is correct." * 6 + "\nViolations: none", "repetition_loop"),
    ("revision_debris", " Invented price here.\nViolations: 7\nRevision: <|im_end|> I cannot see prices.",
     "template_debris"),
]


@pytest.mark.parametrize("name,text,reason", TRAPS, ids=[t[0] for t in TRAPS])
def test_bad_outputs_are_drops_with_named_reasons(stage, name, text, reason):
    out = judge(stage, text)
    assert isinstance(out, Dropped) and out.drop_reason == reason, out
    assert out.stage == "critique" and out.detail and out.record["response"] == ANSWER


def test_truncated_completions_are_dropped_before_parsing(stage):
    out = judge(stage, f" Invented.\nViolations: 7\nRevision: {REVISION}", finish="length")
    assert isinstance(out, Dropped) and out.drop_reason == "truncated"


def test_a_critique_that_runs_into_a_new_example_is_cut_at_the_stop_sequence():
    runon = (f" The price is invented. The answer breaks principle 7.\nViolations: 7\nRevision: {REVISION}\n\n"
             "### Review\nPrinciples to check:\n2 (informative). Facts.\n\nUser: Next?\nAnswer: Yes.\n\nCritique: ok")
    early = (" The price is invented\n### Review\nPrinciples to check:\n7 (candor). Honest.\n\nUser: q\nAnswer: a\n\n"
             "Critique: fine\nViolations: none")
    turn = f" The price is invented.\nViolations: 7\nRevision: {REVISION}\nUser: and silver?\nAnswer: about 25 dollars."
    recs = [rec(prompt=f"{q} What is the price of gold today?") for q in ("Tell me.", "Please.", "Now:")]
    be = ScriptedBackend(rules=[{"match": "Tell me.", "text": runon}, {"match": "Please.", "text": early},
                                {"match": "Now:", "text": turn}])
    out = list(critique(recs, be, Critique(), PRINCIPLES, EXEMPLARS, meaning=NO_MEANING))
    assert isinstance(out[0], CritiquedRecord) and out[0].revision == REVISION, out[0]
    assert isinstance(out[1], Dropped) and out[1].drop_reason == "critique_unparsed"
    assert isinstance(out[2], CritiquedRecord) and out[2].revision == REVISION, out[2]


# -- the stage as a stream -----------------------------------------------------------------------------
def test_every_record_is_kept_or_dropped_with_a_reason_in_input_order():
    questions = [f"Question {i} about the price of gold today?" for i in range(7)]
    texts = [" Careful answer. It breaks none of the principles.\nViolations: none",
             f" Invented figure. It breaks principle 7.\nViolations: 7\nRevision: {REVISION}",
             " Rambling without a verdict.",
             f" It seems fine.\nViolations: none\nRevision: {REVISION}",
             f" Invented. It breaks principle 7.\nViolations: 7\nRevision: {REVISION}"]
    rules = [{"match": f"Question {i} ", "text": texts[i]} for i in range(5)]
    rules += [{"match": "Question 5 ", "text": texts[1], "finish_reason": "length"}, {"text": texts[0]}]
    be = ScriptedBackend(rules=rules, max_context=2000)
    recs = [rec(prompt=q) for q in questions]
    recs.append(rec(prompt="A question citing nothing?", principles=[]))
    recs.append(rec(prompt="Long question? " + "word " * 1500))
    report = Report("critique")
    cfg = Critique(sample=0, batch_size=3)
    out = list(report.tally(critique(recs, be, cfg, PRINCIPLES, EXEMPLARS, report, meaning=NO_MEANING)))
    assert [o.id for o in out] == [r.id for r in recs]
    reasons = [o.drop_reason if isinstance(o, Dropped) else ("revised" if o.revision else "kept") for o in out]
    assert reasons == ["kept", "revised", "critique_unparsed", "critique_inconsistent", "revised", "truncated",
                       "kept", "nothing_to_check", "prompt_too_long"]
    assert all(o.drop_reason and o.detail for o in out if isinstance(o, Dropped))
    assert report.kept == 4 and sum(report.dropped.values()) == 5
    assert report.extra == {"revised": 2, "no_violation": 2}
    too_long = out[-1]
    assert "prompt tokens" in too_long.detail and too_long.record["prompt"] == recs[-1].prompt  # never cut
    kept = [o for o in out if isinstance(o, CritiquedRecord)]
    assert all(o.checked_principles == ["7"] for o in kept)
    prov = kept[0].provenance[-1]
    assert prov.stage == "critique" and prov.backend == "scripted" and prov.sampling["temperature"] == 0.3
    # a kept record round-trips through JSON as the next stage reads it
    again = CritiquedRecord.model_validate(json.loads(kept[1].model_dump_json()))
    assert again.revision == REVISION and again.violations == ["7"]


def test_backend_errors_are_drops():
    class Failing(ScriptedBackend):
        def generate(self, prompts, params):
            return [Completion(text="", finish_reason="error", error="server said 500") for _ in prompts]

    out = list(critique([rec()], Failing(rules=[{"text": ""}]), Critique(), PRINCIPLES, EXEMPLARS,
                        meaning=NO_MEANING))
    assert out[0].drop_reason == "backend_error" and out[0].detail == "server said 500"


def test_a_context_too_small_for_the_exemplars_is_refused_up_front():
    be = ScriptedBackend(rules=[{"text": "x"}], max_context=600)
    with pytest.raises(ValueError, match="critique exemplars take"):
        CritiqueStage(be, PRINCIPLES, EXEMPLARS, Critique(), meaning=NO_MEANING)


def test_gates_on_the_revision_can_be_turned_off_and_unknown_names_are_refused():
    cfg = Critique(keep=parse_keep(["too_short"]), sample=0)
    st = CritiqueStage(ScriptedBackend(rules=[{"text": "x"}]), PRINCIPLES, EXEMPLARS, cfg, meaning=NO_MEANING)
    out = st.judge(rec(), ["7"], Completion(text=" The price is invented.\nViolations: 7\nRevision: Check a news site."))
    assert isinstance(out, CritiquedRecord) and out.revision == "Check a news site."
    assert parse_keep(["all"]) >= {"truncated", "persona_leak"}
    with pytest.raises(ValueError, match="missing_thoughts"):
        parse_keep(["missing_thoughts"])
    with pytest.raises(ValidationError, match="samples"):
        Critique(samples=3)  # extra="forbid"


def test_aligned_files_validate_as_critiqued_records():
    old = {"prompt": "q?", "thoughts": "t", "response": "r", "principles": ["2"], "verbose_response": "v"}
    r = CritiquedRecord.model_validate(old)
    assert r.critique is None and r.revision is None and r.checked_principles == [] and r.violations == []
    assert r.model_dump()["verbose_response"] == "v"  # extra fields ride along


# -- the exemplars -------------------------------------------------------------------------------------
def test_bundled_critique_exemplars_show_both_verdicts():
    assert 3 <= len(EXEMPLARS) <= 4
    assert any(e.violations for e in EXEMPLARS) and any(not e.violations for e in EXEMPLARS)
    for e in EXEMPLARS:
        assert bool(e.revision) == bool(e.violations)
        assert set(e.violations) <= {p.id for p in e.check}


@pytest.mark.parametrize("body,msg", [
    ("- {user: q, answer: a, critique: c, check: ['1 (x). X.'], revision: r}", "revision' but no violations"),
    ("- {user: q, answer: a, critique: c, check: ['1 (x). X.'], violations: ['2'], revision: r}",
     "not among the principles"),
    ("- {user: q, answer: a, critique: c, check: ['1 (x). X.'], violations: ['1']}", "has no 'revision'"),
    ("- {user: q, answer: a, critique: c}", "no principles to 'check'"),
    ("- {user: q, critique: c, check: ['1 (x). X.']}", "has no 'answer'"),
])
def test_malformed_critique_exemplars_are_clear_errors(tmp_path, body, msg):
    f = tmp_path / "c.yaml"
    f.write_text(body + "\n")
    with pytest.raises(InputError, match=msg):
        assets.load_critique_exemplars(str(f))


def test_own_critique_exemplars_in_jsonl_with_their_own_principles(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"prompt": "q", "response": "a", "critique": "c c c", "violations": "safe",
                             "check": [{"id": "safe", "name": "safety", "text": "Stay safe."}], "revision": "r"}) + "\n")
    ex = assets.load_critique_exemplars(str(f))
    assert ex[0].violations == ["safe"] and ex[0].check[0].name == "safety"
