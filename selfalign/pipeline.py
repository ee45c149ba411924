"""selfalign from Python: stages as typed configs, a pipeline that runs them into a folder.

    from selfalign import Pipeline, SelfInstruct, Principle, Dedup, Export
    Pipeline([SelfInstruct(num=100), Principle(), Dedup(), Export(format="messages")]).run(out_dir="out/")

Each stage writes `NAME.jsonl`, `NAME-dropped.jsonl` and `NAME.json` (its report) through the same `Runner` as
the CLI: side files renamed when a stage finishes, resume of `principle` and `refine` by id, every drop with
its reason. Every stage has a key, a hash of everything that shapes its output (`selfalign.stagekeys`: its
options, the backend's identity, the content of its asset files, its inputs' keys): a stage finished under the
same key is reused, one half-done under the same key resumes, and any other starts afresh, so a rerun remakes
exactly the stages whose key changed and every stage after them, and no file mixes two models or two principle
sets. Every kept record carries its stage's key in `provenance[-1].recipe`. The folder is locked for the run
and holds only its own files (`selfalign.io.runfolder`). Every option is checked: an unknown one is an error
naming it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from selfalign.executors import Executor, LocalExecutor  # noqa: F401 - LocalExecutor: part of the API
from selfalign.runner import Runner
from selfalign.stages import (  # noqa: F401 - the stages are part of this module's API
    STAGES,
    Critique,
    Dedup,
    Export,
    Judge,
    Load,
    Principle,
    RedTeam,
    Refine,
    SelfInstruct,
)
from selfalign.steps import BackendConfig, Stage


class PipelineRunner(Runner):
    """The runner a pipeline uses: messages, and a progress line every few seconds (selfalign.report.progress), to `say`
    when one is given."""

    def __init__(self, stage: Any, folder: Path, say: Callable[[str], None] | None = None):
        super().__init__(stage.kind, str(folder / f"{stage.label}.jsonl"), str(folder / f"{stage.label}-dropped.jsonl"),
                         str(folder / f"{stage.label}.json"), say=say)
        self.label, self.show = stage.label, say is not None
        self.plain: Any = None

    def start(self) -> None:
        if self.show:
            from selfalign.report.progress import StageProgress, count_lines

            total = self.context.total
            lines = count_lines(self._inputs) if total is None else None
            self.plain = StageProgress(self.report, self.say, lambda: total or lines,
                                       counts_kept=total is not None, name=self.label)
            self.plain.start()

    def phase(self, name: str, done: int, total: int | None) -> None:
        if self.plain is not None:
            self.plain.phase(name, done, total)

    def finish(self) -> None:
        if self.plain is not None:
            self.plain.stop()
        super().finish()


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED = ("selfalign-run",)  # selfalign-run.json is the run's manifest


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a stage's files (it is a name, not a path), or None."""
    if not name:
        return "is empty"
    if ".." in name or "/" in name or "\\" in name:
        return f"{name!r} is a path; a stage name is a plain name (letters, digits, '-', '_', '.')"
    if not _NAME.fullmatch(name):
        return f"{name!r} has characters a file name should not (use letters, digits, '-', '_', '.'; no leading dot)"
    if name in RESERVED:
        return f"{name!r} is taken by the run's own files ({', '.join(RESERVED)})"
    return None


class Planned(NamedTuple):
    """A stage of the plan: what it reads and writes (file names in the folder), its key and the key's parts."""

    stage: Stage
    inputs: list[str]
    out: str
    key: str
    parts: dict[str, Any]


class Pipeline:
    """Stages run in order into one folder; each reads the newest output of the kind it needs
    (`Refine` and `Export(verbose=True)` read refined records, `Dedup` and `Export` the newest aligned ones)."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages
        for st in stages:
            if st.name is not None and (why := name_problem(st.name)):
                raise ValueError(f"stage {st.kind!r}: name {why}")
        names = [s.label for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"two stages write the same file: {names}; give one a name=")

    def plan(self) -> list[tuple[Stage, list[str], str]]:
        """(stage, the files it reads, the file it writes), by file name inside the output folder: each stage says
        which of the newest files it reads (`Stage.inputs`) and what its own holds (`Stage.written`)."""
        latest: dict[str, list[str]] = {}
        steps = []
        sampled = False  # a stage before has answers with two sampled ones (Principle(n >= 2), or your own file)
        for st in self.stages:
            sampled = sampled or st.two_answers()
            inputs = st.inputs(latest, sampled)
            if (wants := st.wants()) is not None and not inputs:
                raise ValueError(f"stage {st.label!r} reads {wants} records, but no stage before it writes them")
            out = f"{st.label}.jsonl"
            st.written(latest, inputs, out)
            steps.append((st, inputs, out))
        return steps

    def keyed(self, backend: Any = None) -> list[Planned]:
        """The plan with each stage's key (`backend` as for `run`; the run's seed filled in where a stage sets
        none). Reads the asset and input files' content, never the output folder."""
        from selfalign.stagekeys import backend_identity, input_hash, key_of, key_parts

        seed = backend.seed if isinstance(backend, BackendConfig) else None
        identity = None
        made: dict[str, str] = {}
        steps = []
        for st, inputs, out in self.plan():
            if seed is not None and getattr(st, "seed", 0) is None:  # the run's seed, where a stage sets none
                st = st.model_copy(update={"seed": seed})
            if st.needs_model and identity is None:
                identity = backend_identity(backend)
            parts = key_parts(st, identity, {name: made.get(name) or input_hash(name) for name in inputs})
            made[out] = key = key_of(parts)
            steps.append(Planned(st, inputs, out, key, parts))
        return steps

    def run(self, out_dir: str | os.PathLike | Any, backend: Any = None, executor: Executor | None = None,
            say: Callable[[str], None] | None = None, allow_foreign: bool = False) -> dict[str, Any]:
        """Run every stage not yet made under its key; returns each stage's Report by name. `backend`: a backend
        object, a BackendConfig, or None (the embedded model, opened only if a stage needs it). `executor`: where
        the stages run (default: a LocalExecutor); it is closed at the end, with every backend it opened.
        `allow_foreign`: write into a folder that holds files not the run's (they are left alone)."""
        from selfalign.io.runfolder import RunFolder, saved_report

        tell = say or (lambda _: None)
        steps = self.keyed(backend)
        if isinstance(out_dir, RunFolder):  # opened (locked) by the caller, who closes it
            folder, opened = out_dir, contextlib.nullcontext()
        else:
            folder = RunFolder(out_dir, allow_foreign)
            opened = folder.open([p.stage.label for p in steps])
        reports: dict[str, Any] = {}
        with opened, executor or LocalExecutor() as ex:
            for p in steps:
                st = p.stage
                action, why = decide(folder, p)
                if action == "reuse":
                    reports[st.label] = saved_report(folder.path / f"{st.label}.json")
                    continue
                if action == "resume":
                    tell(f"{st.label}: resuming its half-done files (same key {p.key})" if why.startswith("half-done")
                         else f"{st.label}: {why} (same key {p.key})")
                elif folder.entry(st.label):
                    tell(f"{st.label}: {why}; making it again" if why.startswith(("half-done", "not made"))
                         else f"{st.label}: its key changed since its files were made ({why}); making them again")
                folder.start(st.label, p.key, p.parts, fresh=action != "resume")
                runner = PipelineRunner(st, folder.path, say=say)
                if st.resumable:
                    runner.resume()
                runner.report.extra.update({"key": p.key, "key_parts": p.parts})
                if action == "resume":  # the tokens the stage spent before it was stopped were spent all the same
                    runner.report.tokens.add(saved_report(folder.path / f"{st.label}.json").tokens)
                paths = [str(folder.path / x) for x in p.inputs]  # (a Load's input is absolute: the join keeps it)
                records = runner.records(paths, st.input_model()) if paths else iter(())
                reports[st.label] = runner.execute(_stamped(ex.run(st, backend, records, runner), p.key))
                folder.finish(st.label)
        return reports


def decide(folder: Any, p: Planned) -> tuple[str, str]:
    """What a run does with a stage, and why: ("reuse", ""), ("resume", why) or ("run", why)."""
    from selfalign.stagekeys import changed

    entry = folder.entry(p.stage.label)
    if entry is None:
        return "run", "not made yet"
    if entry.get("key") != p.key:
        why = changed(entry.get("parts"), p.parts)
        return "run", why + ("; its half-done files are discarded" if entry.get("state") != "done" else "")
    if entry.get("state") == "done":
        if (folder.path / p.out).is_file():
            failed = _backend_errors(folder.path / f"{p.stage.label}.json") if p.stage.resumable else 0
            if failed:  # the server may be back: those records are asked again, the others kept
                return "resume", f"{failed} record(s) failed with backend_error: asking them again"
            return "reuse", ""
        return "run", "not made yet (its file is missing)"
    if p.stage.resumable:
        return "resume", "half-done: resume"
    return "run", "half-done: starts afresh (this stage does not resume)"


def _backend_errors(report: Any) -> int:
    """How many records a finished stage's saved report dropped as backend_error."""
    from selfalign.io.runfolder import saved_report

    return int(saved_report(report).dropped.get("backend_error", 0))


def _stamped(items: Iterator[Any], stamp: str | None) -> Iterator[Any]:
    """Put the stage's key into the newest provenance entry of every kept record: a record model here, or the
    plain dict a Ray actor sends back."""
    for item in items:
        prov = item.get("provenance") if isinstance(item, dict) else getattr(item, "provenance", None)
        if stamp and prov:
            if isinstance(prov[-1], dict):
                prov[-1]["recipe"] = stamp
            else:
                prov[-1].recipe = stamp
        yield item
