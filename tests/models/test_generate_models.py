
from selfalign.backends.scripted import ScriptedBackend
from selfalign.text.embeddings import Embedder
from selfalign.records import Dropped, PromptRecord
from selfalign.report.counts import Report
from selfalign.stages.generate import SelfInstruct, self_instruct


def test_near_duplicates_are_caught_by_embeddings():
    emb = Embedder()
    be = ScriptedBackend(rules=[{"text": " Give three tips for sleeping better at night.\n7. Explain how volcanoes erupt."}])
    out = list(self_instruct(["Give three tips for sleeping well at night."], be,
                             SelfInstruct(num=1, seed=0, max_requests=1).model_copy(update={"examples": 1}), Report("g"), emb))
    assert [r.drop_reason for r in out if isinstance(r, Dropped)] == ["near_duplicate"]
    assert [r.prompt for r in out if isinstance(r, PromptRecord)] == ["Explain how volcanoes erupt."]
