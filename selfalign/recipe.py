"""A whole run from one TOML file: `selfalign run recipe.toml [--set principle.temperature=0.3] [--dry-run]`.

    out = "out/recipe"                       # the folder: one file per stage, resumed stage by stage
    [backend]                                 # one backend for every model stage (BackendConfig)
    name = "transformers"
    [[stage]]                                 # in order; `kind` picks the stage, the rest are its options
    kind = "self-instruct"
    num = 24
    [[stage]]
    kind = "principle"
    [report]
    html = true                               # report.html over every file of the run

`--set NAME.FIELD=VALUE` changes one option (NAME: a stage's name or kind, `backend`, or `run` for `out`);
VALUE is read as TOML (`0.3`, `true`, `"text"`), else taken as a string. Every option is checked: an unknown
one is an error naming it. The run writes a dataset card (README.md) beside the data, with the recipe, the
principle set and exemplars (copied into `constitution/`), counts, drop reasons and the recipe's hash,
which every kept record's provenance also carries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfalign.pipeline import STAGES, BackendConfig, Pipeline, Principle, Stage


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    html: bool = True


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str = "out/recipe"
    backend: BackendConfig = Field(default_factory=BackendConfig)
    stage: list[dict[str, Any]]
    report: ReportConfig = Field(default_factory=ReportConfig)

    def stages(self) -> list[Stage]:
        built = []
        for i, raw in enumerate(self.stage, 1):
            kind = raw.get("kind")
            if kind not in STAGES:
                raise ValueError(f"stage {i}: kind {kind!r} is not one of {', '.join(STAGES)}")
            try:
                built.append(STAGES[kind](**{k: v for k, v in raw.items() if k != "kind"}))
            except ValidationError as e:
                raise ValueError(f"stage {i} ({kind}): {_errors(e)}") from None
        return built

    def digest(self) -> str:
        """The recipe's hash: its resolved options and the text of the principles and exemplars it uses."""
        from selfalign import assets

        parts: list[Any] = [self.model_dump(mode="json", exclude={"out"})]
        for st in self.stages():
            if isinstance(st, Principle):
                parts.append(assets.assets_hash(assets.load_principles(st.principles),
                                                assets.load_exemplars(st.exemplars), st.persona))
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'recipe'}: {err['msg']}" for err in e.errors())


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe and apply `--set` overrides; every problem is a ValueError naming the file or option."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None
    for item in overrides or []:
        key, sep, text = item.partition("=")
        name, dot, field = key.strip().partition(".")
        if not (sep and dot and field):
            raise ValueError(f"--set {item}: expected NAME.FIELD=VALUE, e.g. principle.temperature=0.3")
        if name == "run":
            data[field] = _value(text)
        elif name in ("backend", "report"):
            data.setdefault(name, {})[field] = _value(text)
        else:
            hits = [s for s in data.get("stage", []) if (s.get("name") or s.get("kind")) == name]
            if not hits:
                hits = [s for s in data.get("stage", []) if s.get("kind") == name]
            if len(hits) != 1:
                raise ValueError(f"--set {item}: {'no' if not hits else 'more than one'} stage is called {name!r}")
            hits[0][field] = _value(text)
    try:
        recipe = Recipe(**data)
        Pipeline(recipe.stages())  # checks every stage's options and file names now
    except ValidationError as e:
        raise ValueError(f"{path}: {_errors(e)}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return recipe


def plan_text(recipe: Recipe) -> str:
    """The resolved plan: what each stage reads and writes, with its options."""
    lines = [f"out: {recipe.out}", f"backend: {recipe.backend.name} {recipe.backend.model_dump(exclude_defaults=True)}",
             f"recipe hash: {recipe.digest()}"]
    for st, inputs, out in Pipeline(recipe.stages()).plan():
        opts = st.model_dump(exclude_defaults=True, exclude={"name"})
        lines.append(f"{st.label:>14}: {' + '.join(inputs) or '(generates)'} -> {out}  {opts or ''}".rstrip())
    if recipe.report.html:
        lines.append(f"{'report':>14}: every file -> report.html")
    return "\n".join(lines)


def run_recipe(recipe: Recipe, say: Any = None, source: str | None = None) -> dict[str, Any]:
    """Run the recipe into its folder (resuming), then write report.html and the dataset card."""
    out = Path(recipe.out)
    digest = recipe.digest()
    reports = Pipeline(recipe.stages(), stamp=digest).run(out, backend=recipe.backend, say=say)
    if recipe.report.html:
        from selfalign.report_page import Summary, render_html

        summary = Summary()
        for f in sorted(out.glob("*.jsonl")) + sorted(out.glob("*.json")):
            if not f.name.endswith((".partial", ".corrupt.jsonl")):
                summary.add_file(str(f))
        (out / "report.html").write_text(render_html(summary), encoding="utf-8")
    write_card(recipe, reports, digest, source)
    return reports


def _counts(out: Path, label: str) -> tuple[int, Counter[str], Counter[str]]:
    """Kept records, drops by reason and principles cited, read from a stage's files."""
    kept, drops, cited = 0, Counter[str](), Counter[str]()
    for name, is_drop in ((f"{label}.jsonl", False), (f"{label}-dropped.jsonl", True)):
        path = out / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                obj = json.loads(line)
                if is_drop:
                    drops[str(obj.get("drop_reason"))] += 1
                else:
                    kept += 1
                    cited.update(obj.get("principles") or [])
    return kept, drops, cited


def write_card(recipe: Recipe, reports: dict[str, Any], digest: str, source: str | None) -> Path:
    """README.md beside the data: a dataset card with the usual metadata block, and the constitution."""
    from selfalign import assets

    out = Path(recipe.out)
    const = out / "constitution"
    const.mkdir(parents=True, exist_ok=True)
    used: list[str] = []
    for st in recipe.stages():
        if isinstance(st, Principle):
            for label, path in (("principles", st.principles or assets.default_path("principles", "default.md")),
                                ("exemplars", st.exemplars or assets.default_path("exemplars", "default.yaml"))):
                if Path(path).is_file():
                    shutil.copyfile(path, const / f"{st.label}-{label}{Path(path).suffix}")
                    used.append(f"constitution/{st.label}-{label}{Path(path).suffix}")
    if source and Path(source).resolve() != (out / "recipe.toml").resolve():
        shutil.copyfile(source, out / "recipe.toml")
    sft = [st.label for st in recipe.stages() if st.kind == "export"]
    counts = {st.label: _counts(out, st.label) for st in recipe.stages()}  # from the files: resumed runs included
    kept = sum(counts[s][0] for s in sft)
    size = "n<1K" if kept < 1000 else "1K<n<10K" if kept < 10_000 else "10K<n<100K" if kept < 100_000 else "n>100K"
    rows = []
    cited: Counter[str] = Counter()
    for name, (n_kept, drops, principles) in counts.items():
        cited.update(principles)
        why = ", ".join(f"{r} {n}" for r, n in drops.most_common()) or "-"
        rows.append(f"| {name} | {n_kept + sum(drops.values())} | {n_kept} | {why} |")
    files = "\n".join(f"  - split: {s}\n    path: {s}.jsonl" for s in sft)
    text = f"""---
license: other
task_categories:
- text-generation
tags:
- selfalign
- self-align
- synthetic
- sft
size_categories:
- {size}
configs:
- config_name: default
  data_files:
{files}
selfalign_recipe_hash: {digest}
---

# Synthetic SFT data made with selfalign

Made by `selfalign run` from the recipe below (hash `{digest}`, also in the provenance of every record in the
stage files).
The answers were written under a principle set with worked exemplars (SELF-ALIGN); the principles and the
model's internal thoughts were removed from the exported files ("principle engraving").

## Backend and sampling

- backend: `{recipe.backend.name}`, model: `{recipe.backend.model or 'embedded default (SmolLM2-135M-Instruct)'}`
- per-stage sampling: see each stage's options below and the `provenance` field of the records.

## Counts per stage

| stage | read | kept | dropped (by reason) |
| --- | ---: | ---: | --- |
{chr(10).join(rows)}

## Principles cited in the internal thoughts

{chr(10).join(f"- principle {pid}: {n}" for pid, n in cited.most_common()) or "- none"}

## The constitution

{chr(10).join(f"- [{u}]({u})" for u in used) or "- none"}

## The recipe

{"The file as given is copied to `recipe.toml`. " if source else ""}Resolved, with any `--set` applied:

```json
{json.dumps(recipe.model_dump(mode="json"), indent=2)}
```

A report of the data is in `report.html`.
"""
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
