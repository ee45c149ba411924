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
