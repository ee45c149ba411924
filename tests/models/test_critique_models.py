"""Critique with real models: the embedding gates judge only the revisions, and the embedded model end to end."""

import pytest

from selfalign import assets
from selfalign.report.counts import Report
from selfalign.backends.scripted import ScriptedBackend
from selfalign.records import CritiquedRecord, Dropped
from selfalign.stages.critique import (Critique, critique)

from support.critique import REVISION, rec

PRINCIPLES = assets.load_principles()
EXEMPLARS = assets.load_critique_exemplars()


# -- the real embedded model ---------------------------------------------------------------------------
@pytest.mark.slow
def test_critique_on_the_embedded_model_end_to_end():
    from selfalign.backends.transformers import TransformersBackend

    recs = [rec(prompt="How do vaccines protect people from disease?", principles=["2"],
                response="Vaccines train the immune system to recognise a germ without causing the disease, so "
                         "the body can fight the real germ off quickly later."),
            rec()]
    be = TransformersBackend(batch_size=2)
    report = Report("critique")
    cfg = Critique(seed=1, sample=1, max_tokens=128, min_words=8)
    out = list(report.tally(critique(recs, be, cfg, PRINCIPLES, EXEMPLARS, report)))
    assert [o.id for o in out] == [r.id for r in recs]
    for o in out:
        if isinstance(o, Dropped):
            assert o.stage == "critique" and o.drop_reason and o.detail
        else:
            assert isinstance(o, CritiquedRecord) and o.critique and o.checked_principles
            assert bool(o.revision) == bool(o.violations)
            assert set(o.violations) <= set(o.checked_principles)
            assert o.provenance[-1].backend == "transformers" and o.provenance[-1].sampling["seed"] == 1
    assert report.read == 2 and report.kept + sum(report.dropped.values()) == 2


def test_meaning_gates_judge_only_the_revisions():
    be = ScriptedBackend(rules=[
        {"match": "gold", "text": f" Invented. It breaks principle 7.\nViolations: 7\nRevision: {REVISION}"},
        {"match": "Paris", "text": " Correct. It breaks none of the principles.\nViolations: none"}])
    recs = [rec(), rec(prompt="What is the capital of France?", response="Paris is the capital of France.")]
    out = list(critique(recs, be, Critique(), PRINCIPLES, EXEMPLARS))  # default meaning gates
    assert isinstance(out[0], CritiquedRecord) and out[0].revision == REVISION
    assert isinstance(out[1], CritiquedRecord) and out[1].revision is None
