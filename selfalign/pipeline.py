"""selfalign from Python: stages as typed configs, a pipeline that runs them into a folder.

    from selfalign import Pipeline, SelfInstruct, Principle, Dedup, Export
    Pipeline([SelfInstruct(num=100), Principle(), Dedup(), Export(format="messages")]).run(out_dir="out/")

Each stage writes `NAME.jsonl`, `NAME-dropped.jsonl` and `NAME.json` (its report) through the same `Runner` as
the CLI: side files renamed when a stage finishes, resume of `principle` and `refine` by id, every drop with
its reason. A stage whose output is already complete and newer than its input is not run again, so a pipeline
interrupted anywhere resumes stage by stage. Every option is checked: an unknown one is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selfalign.executors import Executor, LocalExecutor  # noqa: F401 - LocalExecutor: part of the API
from selfalign.runner import Runner
from selfalign.steps import (  # noqa: F401 - the stages are part of this module's API
    STAGES,
    BackendConfig,
    Critique,
    Dedup,
    Export,
    Judge,
    Load,
    Principle,
    RedTeam,
    Refine,
    SelfInstruct,
    Stage,
)


class PipelineRunner(Runner):
    """The runner a pipeline uses: messages, and a progress line every few seconds (selfalign.progress), to `say`
    when one is given."""

    total: int | None = None
    principle_names: dict[str, str] | None = None

    def __init__(self, stage: Any, folder: Path, say: Callable[[str], None] | None = None):
        super().__init__(stage.kind, str(folder / f"{stage.label}.jsonl"), str(folder / f"{stage.label}-dropped.jsonl"),
                         str(folder / f"{stage.label}.json"), say=say)
        self.label, self.show = stage.label, say is not None
        self.plain: Any = None

    def start(self) -> None:
        if self.show:
            from selfalign.progress import StageProgress, count_lines

            lines = count_lines(self._inputs) if self.total is None else None
            self.plain = StageProgress(self.report, self.say, lambda: self.total or lines,
                                       counts_kept=self.total is not None, name=self.label)
            self.plain.start()

    def phase(self, name: str, done: int, total: int | None) -> None:
        if self.plain is not None:
            self.plain.phase(name, done, total)

    def finish(self) -> None:
        if self.plain is not None:
            self.plain.stop()
        super().finish()


class Pipeline:
    """Stages run in order into one folder; each reads the newest output of the kind it needs
    (`Refine` and `Export(verbose=True)` read refined records, `Dedup` and `Export` the newest aligned ones)."""

    def __init__(self, stages: list[Stage], stamp: str | None = None):
        self.stages = stages
        self.stamp = stamp  # the recipe hash put into every kept record's provenance
        names = [s.label for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"two stages write the same file: {names}; give one a name=")

    def plan(self) -> list[tuple[Stage, list[str], str]]:
        """(stage, the files it reads, the file it writes), by file name inside the output folder."""
        latest: dict[str, list[str]] = {}
        steps = []
        sampled = False  # a stage before has answers with two sampled ones (Principle(n >= 2), or your own file)
        for st in self.stages:
            sampled = sampled or (isinstance(st, Principle) and st.n > 1) or (
                isinstance(st, Load) and st.records != "prompts")
            wants = st.reads
            if isinstance(st, Export):
                wants = ("refined" if st.verbose else "pairs" if st.format == "dpo"
                         else "critiqued" if st.revised else st.reads)  # revised: every critiqued answer
            if isinstance(st, Load):
                inputs = [str(Path(st.path).resolve())]
                latest[st.records] = [*latest.get(st.records, []), f"{st.label}.jsonl"] \
                    if st.records == "prompts" else [f"{st.label}.jsonl"]
                if st.records == "critiqued":  # pairs for Judge and Export(format="dpo")
                    latest["pairs"] = [f"{st.label}.jsonl"]
                if st.records != "prompts":
                    latest["answers"] = [f"{st.label}.jsonl"]
                steps.append((st, inputs, f"{st.label}.jsonl"))
                continue
            if wants is None:
                inputs = []
            elif wants == "aligned" or (wants == "pairs" and "pairs" not in latest and sampled):
                inputs = latest.get("answers", [])  # the newest answers (a Dedup after Refine reads the refined
                # ones); pairs where no stage wrote any: answers with two sampled ones each (Principle(n=2))
            else:
                inputs = latest.get(wants, [])
            if wants is not None and not inputs:
                raise ValueError(f"stage {st.label!r} reads {wants} records, but no stage before it writes them")
            out = f"{st.label}.jsonl"
            kind = "refined" if isinstance(st, Dedup) and inputs == latest.get("refined") else st.writes
            latest[kind] = [*latest.get(kind, []), out] if kind == "prompts" and st.reads is None else [out]
            if kind in ("aligned", "refined"):
                latest["answers"] = [out]
            if isinstance(st, Critique):
                latest["critiqued"] = [out]
            steps.append((st, inputs, out))
        return steps

    def run(self, out_dir: str | os.PathLike, backend: Any = None, executor: Executor | None = None,
            say: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run every stage not yet done; returns each stage's Report by name. `backend`: a backend object, a
        BackendConfig, or None (the embedded model, opened only if a stage needs it). `executor`: where the
        stages run (default: a LocalExecutor); it is closed at the end, with every backend it opened."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        seed = backend.seed if isinstance(backend, BackendConfig) else None
        reports: dict[str, Any] = {}
        with executor or LocalExecutor() as ex:
            for st, inputs, out in self.plan():
                if seed is not None and getattr(st, "seed", 0) is None:  # the run's seed, where a stage sets none
                    st = st.model_copy(update={"seed": seed})
                paths = [str(folder / p) for p in inputs]  # (a Load's input is absolute: the join keeps it)
                target = folder / out
                options = _digest(st)
                saved = _saved_report(folder / f"{st.label}.json")
                if saved.extra.get("options") != options:  # new options: the stage's old files are not its output
                    _forget(folder, st.label, say if target.exists() else None)
                elif target.exists() and all(target.stat().st_mtime >= Path(p).stat().st_mtime for p in paths):
                    reports[st.label] = saved
                    continue
                runner = PipelineRunner(st, folder, say=say)
                if st.resumable:
                    runner.resume()
                runner.report.extra["options"] = options
                records = runner.records(paths, st.input_model()) if paths else iter(())
                reports[st.label] = runner.execute(_stamped(ex.run(st, backend, records, runner), self.stamp))
        return reports


def _stamped(items: Iterator[Any], stamp: str | None) -> Iterator[Any]:
    """Put the recipe hash into the newest provenance entry of every kept record."""
    for item in items:
        prov = getattr(item, "provenance", None)
        if stamp and prov:
            setattr(prov[-1], "recipe", stamp)
        yield item


def _digest(stage: Stage) -> str:
    import hashlib

    return hashlib.sha256(f"{stage.kind} {stage.model_dump_json()}".encode()).hexdigest()[:16]


def _forget(folder: Path, label: str, say: Callable[[str], None] | None) -> None:
    """Remove a stage's files made under other options, so it starts afresh (and every stage after it)."""
    if say:
        say(f"{label}: its options changed since its files were made; making them again")
    for name in (f"{label}.jsonl", f"{label}-dropped.jsonl", f"{label}.json"):
        for path in (folder / name, folder / f"{name}.partial"):
            path.unlink(missing_ok=True)


def _saved_report(path: Path) -> Any:
    import json

    from selfalign.counts import Report

    data = json.loads(path.read_text()) if path.exists() else {}
    rep = Report(data.get("stage", path.stem))
    rep.read, rep.kept = data.get("read", 0), data.get("kept", 0)
    rep.dropped.update(data.get("dropped", {}))
    rep.principles.update(data.get("principles_cited", {}))
    rep.extra.update({k: v for k, v in data.items() if k == "options"})
    return rep
