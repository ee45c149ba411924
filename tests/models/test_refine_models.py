from selfalign.backends.scripted import ScriptedBackend
from selfalign.records import AlignedRecord, Dropped, RefinedRecord
from selfalign.stages.refine import Refine, refine

LONG = ("Photosynthesis is how plants turn light into chemical energy. In the chloroplasts, chlorophyll absorbs "
        "light, which splits water and releases oxygen; the energy is stored in sugars built from carbon dioxide.")


def test_refine_keeps_concise_answer_beside_verbose_and_drops_short_ones():
    recs = [AlignedRecord.model_validate({"prompt": p, "thoughts": "t", "response": "short answer"})
            for p in ("What is photosynthesis?", "Say hi.")]
    be = ScriptedBackend(rules=[{"match": "photosynthesis", "text": " " + LONG}, {"match": "Say hi", "text": " Hi!"}])
    out = list(refine(recs, be, Refine()))
    assert isinstance(out[0], RefinedRecord) and out[0].verbose_response == LONG
    assert out[0].response == "short answer" and [p.stage for p in out[0].provenance] == ["refine"]
    assert out[0].provenance[0].sampling["temperature"] == 0.3 and out[0].provenance[0].sampling["top_p"] == 0.7
    assert isinstance(out[1], Dropped) and out[1].drop_reason == "too_short"


def test_refine_applies_the_quality_gates_truncated_refusal_and_debris():
    recs = [AlignedRecord.model_validate({"prompt": p, "thoughts": "t", "response": "short answer"})
            for p in ("What is photosynthesis?", "Describe how leaves change colour in autumn.",
                      "Explain how plants drink water.")]
    be = ScriptedBackend(rules=[
        {"match": "photosynthesis", "text": " " + LONG, "finish_reason": "length"},
        {"match": "autumn", "text": " I'm sorry, but I can't help with that request."},
        {"match": "drink", "text": " " + LONG + "\n\n**User:** thanks, and roots?"}])
    out = list(refine(recs, be, Refine()))
    assert [o.drop_reason if isinstance(o, Dropped) else None for o in out] == ["truncated", "unwarranted_refusal", None]
    assert out[2].verbose_response == LONG
