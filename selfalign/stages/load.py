"""Stage: records from your own file, validated and copied in (bad lines set aside with their line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from selfalign.runner import Runner
from selfalign.steps import Latest, Stage, Step


class Load(Stage):
    """Records from your own file, validated and copied in (bad lines set aside with their line)."""

    kind: ClassVar[str] = "load"
    writes: ClassVar[str] = "prompts"
    path: str = Field(description="The JSONL file to read.")
    records: Literal["prompts", "aligned", "refined", "critiqued"] = Field(
        "prompts", description="What the file holds.")

    def build(self, backend: Any, runner: Runner, prepared: dict[str, Any], embedder: Any = None) -> Step:
        return lambda records: records  # the runner counts what comes out

    def input_model(self) -> type[BaseModel]:
        from selfalign.records import AlignedRecord, CritiquedRecord, PromptRecord, RefinedRecord

        return {"prompts": PromptRecord, "aligned": AlignedRecord, "refined": RefinedRecord,
                "critiqued": CritiquedRecord}[self.records]

    def inputs(self, latest: Latest, sampled: bool) -> list[str]:
        return [str(Path(self.path).resolve())]

    def written(self, latest: Latest, inputs: list[str], out: str) -> None:
        kind = self.records
        latest[kind] = [*latest.get(kind, []), out] if kind == "prompts" else [out]
        if kind == "critiqued":  # pairs for Judge and Export(format="dpo")
            latest["pairs"] = [out]
        if kind != "prompts":
            latest["answers"] = [out]

    def two_answers(self) -> bool:
        return self.records != "prompts"  # your own answers may carry two sampled ones each
