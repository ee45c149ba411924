"""The Python API and the recipe file: the same records as the CLI, checked options, stage-by-stage resume,
and a dataset card that carries the constitution and the recipe's hash."""


import pytest
from pydantic import ValidationError

from selfalign import Dedup, Export, Load, Pipeline, Principle



def test_every_option_is_checked_and_a_stage_needs_its_input():
    with pytest.raises(ValidationError, match="temprature"):
        Principle(temprature=0.3)
    with pytest.raises(ValueError, match="reads aligned records, but no stage before it writes them"):
        Pipeline([Dedup()]).plan()
    with pytest.raises(ValueError, match="same file"):
        Pipeline([Load(path="a.jsonl"), Principle(), Export(), Export()])


def test_a_rerun_asks_again_the_records_a_finished_stage_lost_to_backend_errors(tmp_path):
    """A stage that finished with backend_error drops is resumed, not reused: those records are asked again,
    and the others are not."""
    from selfalign import Critique, Load
    from selfalign.backends.base import Completion
    from selfalign.backends.scripted import ScriptedBackend
    from support import jsonl, write_jsonl
    from test_preferences import KEEP, RECORDS, RULES

    class Flaky(ScriptedBackend):
        """Fails every prompt about gold while `down`; logs the questions it is asked."""

        down = True

        def __init__(self) -> None:
            super().__init__(rules=RULES)
            self.asked: list[str] = []

        def generate(self, prompts, params):
            out = super().generate(prompts, params)
            self.asked += ["gold" if "price of gold" in p else "rainbow" for p in prompts]
            return [Completion(text="", finish_reason="error", error="503 from the server")
                    if self.down and "price of gold" in p else c for p, c in zip(prompts, out, strict=True)]

    aligned = write_jsonl(tmp_path / "aligned.jsonl", RECORDS)
    stages = [Load(path=str(aligned), records="aligned"), Critique(sample=0, keep=KEEP)]
    be = Flaky()
    first = Pipeline(stages).run(tmp_path / "out", backend=be)["critique"]
    assert first.dropped == {"backend_error": 1} and first.kept == 1
    said: list[str] = []
    be = Flaky()
    be.down = False
    Pipeline(stages).run(tmp_path / "out", backend=be, say=said.append)
    assert be.asked and set(be.asked) == {"gold"}  # the rainbow's critique was not asked again
    assert any("backend_error: asking them again" in line for line in said), said
    assert sorted(r["id"] for r in jsonl(tmp_path / "out" / "critique.jsonl")) == ["gold", "rainbow"]
    assert jsonl(tmp_path / "out" / "critique-dropped.jsonl") == []
    be = Flaky()  # a third run reuses it: nothing failed
    Pipeline(stages).run(tmp_path / "out", backend=be)
    assert be.asked == []
