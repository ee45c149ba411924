"""Stages: each maps an iterator of records to an iterator of kept records and `Dropped` ones. Each module holds
its stage's class (`selfalign.steps.Stage`: its options as fields, what it reads and writes, how it builds its
step) beside the code that runs it; `STAGES` lists them by kind."""

from __future__ import annotations

from selfalign.stages.critique import Critique
from selfalign.stages.dedup import Dedup
from selfalign.stages.export import Export
from selfalign.stages.generate import RedTeam, SelfInstruct
from selfalign.stages.judge import Judge
from selfalign.stages.load import Load
from selfalign.stages.principle import Principle
from selfalign.stages.refine import Refine
from selfalign.steps import Stage

STAGES: dict[str, type[Stage]] = {c.kind: c for c in (Load, SelfInstruct, RedTeam, Principle, Dedup, Export, Refine,
                                                       Critique, Judge)}

__all__ = ["STAGES", "Critique", "Dedup", "Export", "Judge", "Load", "Principle", "RedTeam", "Refine", "SelfInstruct"]
