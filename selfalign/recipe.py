"""A whole run from one TOML file: `selfalign run recipe.toml [--set principle.temperature=0.3] [--dry-run]`.

    out = "out/recipe"                       # the folder: one file per stage, resumed stage by stage
    price_per_million = [0.15, 0.6]           # optional: USD per million prompt, completion tokens -> the cost
    [backend]                                 # one backend for every model stage (BackendConfig)
    name = "transformers"
    [[stage]]                                 # in order; `kind` picks the stage, the rest are its options
    kind = "self-instruct"
    num = 24
    [[stage]]
    kind = "principle"
    [report]
    html = true                               # report.html over the run's stage files

`--set NAME.FIELD=VALUE` changes one option (NAME: a stage's name or kind, `backend`, or `run` for `out`,
`allow_foreign` and `price_per_million`); VALUE is read as TOML (`0.3`, `true`, `"text"`), else taken as a string. Every option is
checked when the recipe is read (so `--dry-run` catches it): an error names the file, the stage (its number and
kind or name) and the field. `--dry-run` prints, per stage, `run` (and which part of its key changed) or
`reuse` (`selfalign.pipeline`). The run writes a dataset card (README.md) beside the data, with the recipe
(credentials redacted), every stage's asset files (copied into `constitution/`), counts, drop reasons, the
tokens each stage spent (and their cost, given a price; `selfalign.report.tokens`), a
`datasets` config per exported file, and each stage's key, which every kept record of that stage carries in
`provenance[-1].recipe`. It writes only into a folder that is its own (`selfalign.io.runfolder`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from selfalign.pipeline import STAGES, BackendConfig, Pipeline, Planned, Stage, name_problem


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    html: bool = True


def _kind(value: Any) -> str | None:
    """A [[stage]] table's kind (or a stage's), the tag that picks its class."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


# a [[stage]] table as the stage its `kind` names: parsed once, with the recipe
AnyStage = Annotated[Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in STAGES.items())],  # noqa: UP007
                     Discriminator(_kind)]


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str = "out/recipe"
    allow_foreign: bool = False  # write into a folder that holds files not the run's (they are left alone)
    # USD per million prompt and completion tokens: the cost of each stage's tokens in the card and report.html
    price_per_million: tuple[float, float] | None = None
    backend: BackendConfig = Field(default_factory=BackendConfig)
    stage: list[AnyStage]
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("out")
    @classmethod
    def _out(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the output folder is empty: name a folder")
        return value

    @field_validator("price_per_million", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Any:
        from selfalign.report.tokens import parse_price

        return None if value is None else parse_price(value, None)

    def stages(self) -> list[Stage]:
        return list(self.stage)

    def plan(self) -> list[Planned]:
        """Each stage with its key (`Pipeline.keyed`)."""
        return Pipeline(self.stages()).keyed(self.backend)

    def shown(self) -> dict[str, Any]:
        """The resolved recipe as JSON, credentials redacted (for the card and the plan)."""
        from selfalign.io.urls import redact_url

        data = self.model_dump(mode="json")
        data["stage"] = [{"kind": st.kind, **st.model_dump(mode="json", exclude_unset=True)} for st in self.stage]
        for field in ("base_url", "model"):
            if isinstance(data["backend"].get(field), str):
                data["backend"][field] = redact_url(data["backend"][field])
        return data


def run_hash(plan: list[Planned]) -> str:
    """One hash over every stage's key, in order: the run as a whole (each record carries its stage's key)."""
    return hashlib.sha256(json.dumps([(p.stage.label, p.key) for p in plan]).encode()).hexdigest()[:16]


def where(i: int, raw: Any) -> str:
    """`stage 2 (principle)`, `stage 3 (export 'sft')`: a [[stage]] table (i counts from 1) as an error names it."""
    kind, name = (raw.get("kind"), raw.get("name")) if isinstance(raw, dict) else (None, None)
    return f"stage {i}" + (f" ({kind} {name!r})" if isinstance(name, str) and isinstance(kind, str)
                           else f" ({kind})" if isinstance(kind, str) else "")


def _errors(e: ValidationError, tables: list[Any] | None = None) -> str:
    """Pydantic's errors as `field NAME: message (got TYPE)`: never the value itself (it may be a secret); one in a
    [[stage]] table (`tables`: the recipe's, as read) names the stage first."""
    said = []
    for err in e.errors():
        at = list(err["loc"])
        if len(at) > 1 and at[0] == "stage" and isinstance(at[1], int):  # [[stage]] tables count from 1
            raw = tables[at[1]] if tables and at[1] < len(tables) else None
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                kind = raw.get("kind") if isinstance(raw, dict) else None
                said.append(f"{where(at[1] + 1, raw)}: field kind: {kind!r} is not one of {', '.join(STAGES)}")
                continue
            said.append(f"{where(at[1] + 1, raw)}: " + _errors_one(at[3:], err))  # at[2]: the kind's tag
            continue
        said.append(_errors_one(at, err))
    return "; ".join(said)


def _errors_one(at: list[Any], err: Any) -> str:
    loc = ".".join(str(x) for x in at)
    got = "" if err["type"] in ("missing", "extra_forbidden", "value_error") else f" (got {type(err.get('input')).__name__})"
    message = err["msg"].removeprefix("Value error, ")
    return f"field {loc}: {message}{got}" if loc else f"{message}{got}"


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe and apply `--set` overrides; every problem is a ValueError naming the file, the stage and
    the field."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the recipe as UTF-8") \
            from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None
    for item in overrides or []:
        key, sep, text = item.partition("=")
        name, dot, field = key.strip().partition(".")
        if not (sep and dot and field):
            raise ValueError(f"--set {key.strip() or item}: expected NAME.FIELD=VALUE, e.g. principle.temperature=0.3")
        if name == "run":
            data[field] = _value(text)
        elif name in ("backend", "report"):
            if not isinstance(data.setdefault(name, {}), dict):
                raise ValueError(f"{path}: [{name}] must be a table")
            data[name][field] = _value(text)
        else:
            listed = [s for s in data.get("stage", []) if isinstance(s, dict)] \
                if isinstance(data.get("stage"), list) else []
            hits = [s for s in listed if (s.get("name") or s.get("kind")) == name]
            if not hits:
                hits = [s for s in listed if s.get("kind") == name]
            if len(hits) != 1:
                raise ValueError(f"--set {key.strip()}: {'no' if not hits else 'more than one'} stage is called "
                                 f"{name!r}")
            hits[0][field] = _value(text)
    tables = data.get("stage") if isinstance(data.get("stage"), list) else []
    for i, raw in enumerate(tables, 1):  # a stage's name names its files: a path is refused before anything else
        if isinstance(raw, dict) and isinstance(raw.get("name"), str) and (why := name_problem(raw["name"])):
            raise ValueError(f"{path}: {where(i, raw)}: field name: {why}")
    try:
        recipe = Recipe(**data)  # every stage parsed once, here, into its class
        Pipeline(recipe.stages())  # two stages writing one file, a stage reading what none before it writes
    except ValidationError as e:
        raise ValueError(f"{path}: {_errors(e, tables)}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return recipe


def plan_text(recipe: Recipe) -> str:
    """The resolved plan: what each stage reads and writes, with its options, and whether a run would make it
    (`run`, with which part of its key changed) or take it as it is (`reuse`). Reads the folder, writes nothing."""
    from selfalign.pipeline import decide
    from selfalign.io.runfolder import RunFolder
    from selfalign.runner import RunError

    plan = recipe.plan()
    backend = recipe.shown()["backend"]
    shown = {k: v for k, v in backend.items() if k != "name" and v != BackendConfig.model_fields[k].default}
    lines = [f"out: {recipe.out}", f"backend: {recipe.backend.name} {shown}", f"run hash: {run_hash(plan)}"]
    folder = RunFolder(recipe.out, recipe.allow_foreign)
    try:
        foreign = folder.foreign()
    except RunError as e:
        foreign, lines[0] = [], f"out: {recipe.out}: {e}"
    if foreign:
        lines.append(f"folder: holds files that are not this run's ({', '.join(foreign[:3])}"
                     + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "") + "): "
                     + ("they are left alone" if recipe.allow_foreign else "the run would be refused"))
    for p in plan:
        opts = p.stage.model_dump(exclude_defaults=True, exclude={"name"})
        lines.append(f"{p.stage.label:>14}: {' + '.join(p.inputs) or '(generates)'} -> {p.out}  {opts or ''}".rstrip())
        action, why = decide(folder, p)
        lines.append(f"{'':>14}  {action}" + (f" ({why})" if why and action != "reuse" else "") + f", key {p.key}")
    if recipe.report.html:
        lines.append(f"{'report':>14}: the stage files -> report.html")
    if recipe.price_per_million is not None:
        from selfalign.report.tokens import price_note

        lines.append(f"{'price':>14}: {price_note(recipe.price_per_million)} (README.md"
                     + (", report.html" if recipe.report.html else "") + ")")
    return "\n".join(lines)


def run_recipe(recipe: Recipe, say: Any = None, source: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """Run the recipe into its folder (resuming), then write report.html and the dataset card, under the
    folder's lock. Returns each stage's report and the names of the card files written."""
    from selfalign.io.runfolder import RunFolder, stage_files

    tell = say or (lambda _: None)
    pipeline = Pipeline(recipe.stages())
    plan = pipeline.keyed(recipe.backend)
    written: list[str] = []
    with RunFolder(recipe.out, recipe.allow_foreign).open([p.stage.label for p in plan]) as folder:
        reports = pipeline.run(folder, backend=recipe.backend, say=say)
        out = folder.path
        if recipe.report.html:
            if folder.may_write("report.html"):
                from selfalign.report.page import Summary, render_html

                summary = Summary(price=recipe.price_per_million)
                for p in plan:  # the run's own stage files, nothing else in the folder
                    for name in stage_files(p.stage.label):
                        if (out / name).is_file():
                            summary.add_file(str(out / name))
                (out / "report.html").write_text(render_html(summary), encoding="utf-8")
                written.append("report.html")
            else:
                tell(f"{out / 'report.html'} is not this run's file: left as it is")
        written += write_card(recipe, plan, folder, source, tell)
    first = ("README.md", "report.html")
    return reports, sorted(written, key=lambda n: first.index(n) if n in first else len(first))


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


def _config_names(labels: list[str]) -> dict[str, str]:
    """A `datasets` config name per exported file: the stage's name with `-` and `.` turned to `_`."""
    names: dict[str, str] = {}
    for label in labels:
        name = label.replace("-", "_").replace(".", "_")
        while name in names.values():
            name += "_"
        names[label] = name
    return names


def tokens_section(out: Path, plan: list[Planned], price: tuple[float, float] | None) -> str:
    """The card's tokens table, from each stage's NAME.json (reused stages say what they spent when made)."""
    from selfalign.io.runfolder import saved_report
    from selfalign.report.tokens import price_note, table

    rows = table([(p.stage.label, saved_report(out / f"{p.stage.label}.json").tokens) for p in plan], price)
    if not rows:
        return "No stage asked a model for anything (or each was answered by a backend that counts no tokens)."
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "| --- |" + " ---: |" * (len(rows[0]) - 1))
    return ("Counted by the backend itself (the server's `usage`, the engine's or the tokenizer's counts). "
            "Requests answered from the completion cache are counted apart and cost nothing; tokens/s is "
            f"completion tokens per second of model time; {price_note(price)}.\n\n" + "\n".join(lines))


def write_card(recipe: Recipe, plan: list[Planned], folder: Any, source: str | None,
               say: Any = lambda _: None) -> list[str]:
    """README.md beside the data: a dataset card with the usual metadata block (one `datasets` config per
    exported file), the constitution (every stage's asset files) and each stage's key. Writes only what is the
    run's (`folder.may_write`); returns the names written."""
    out = folder.path
    written: list[str] = []
    used: list[str] = []
    if folder.may_write("constitution"):
        const = out / "constitution"
        const.mkdir(exist_ok=True)
        for p in plan:
            for role, path in p.stage.assets().items():
                if role.startswith("against"):  # dedup's reference sets (often evaluation data): named, not copied
                    used.append(f"{p.stage.label} {role}: `{path}` (sha256 {p.parts['assets'][role]['hash']}...)")
                    continue
                if not Path(path).is_file():
                    continue
                name = f"{p.stage.label}-{role}{Path(path).suffix}"
                shutil.copyfile(path, const / name)
                used.append(f"constitution/{name}")
        written.append("constitution/")
    else:
        say(f"{out / 'constitution'} is not this run's: left as it is, the asset files are not copied")
    if source and folder.manifest.get("own_folder") and Path(source).resolve() != (out / "recipe.toml").resolve():
        if folder.may_write("recipe.toml"):
            shutil.copyfile(source, out / "recipe.toml")
            written.append("recipe.toml")
    exports = [p.stage.label for p in plan if p.stage.kind == "export"]
    counts = {p.stage.label: _counts(out, p.stage.label) for p in plan}  # from the files: resumed runs included
    kept = sum(counts[s][0] for s in exports)
    size = "n<1K" if kept < 1000 else "1K<n<10K" if kept < 10_000 else "10K<n<100K" if kept < 100_000 else "n>100K"
    rows = []
    cited: Counter[str] = Counter()
    for name, (n_kept, drops, principles) in counts.items():
        cited.update(principles)
        why = ", ".join(f"{r} {n}" for r, n in drops.most_common()) or "-"
        rows.append(f"| {name} | {n_kept + sum(drops.values())} | {n_kept} | {why} |")
    configs = _config_names([s for s in exports if counts[s][0]])  # an empty file is no split
    blocks = [f"- config_name: {c}\n" + ("  default: true\n" if i == 0 else "")
              + f"  data_files:\n  - split: train\n    path: {label}.jsonl"
              for i, (label, c) in enumerate(configs.items())]
    spent = tokens_section(out, plan, recipe.price_per_million)
    keys = "\n".join(f"  {p.stage.label}: \"{p.key}\"" for p in plan)
    key_rows = "\n".join(f"| {p.stage.label} | `{p.key}` |" for p in plan)
    loads = "\n".join(f'load_dataset("PATH", "{c}")  # {label}.jsonl' for label, c in configs.items())
    shown = recipe.shown()
    rhash = run_hash(plan)
    default_model = "the backend default (embedded: SmolLM2-135M-Instruct)"
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
{"configs:" + chr(10) + chr(10).join(blocks) if blocks else ""}
selfalign_run_hash: "{rhash}"
selfalign_stage_keys:
{keys}
---

# Synthetic SFT data made with selfalign

Made by `selfalign run` from the recipe below. Every stage has a key, a hash of everything that shaped its
output (its options, the backend and model, the content of the files it reads, the keys of its inputs); every
kept record of a stage carries that stage's key in `provenance[-1].recipe`. The run hash `{rhash}` covers
every stage's key.
The answers were written under a principle set with worked exemplars (SELF-ALIGN); the principles and the
model's internal thoughts were removed from the exported files ("principle engraving").

## Loading

```python
from datasets import load_dataset
{loads or "# no exported file has records"}
```

## Backend and sampling

- backend: `{recipe.backend.name}`, model: `{shown["backend"]["model"] or default_model}`
- per-stage sampling: see each stage's options below and the `provenance` field of the records.

## Stage keys

| stage | key (in `provenance[-1].recipe`) |
| --- | --- |
{key_rows}

## Counts per stage

| stage | read | kept | dropped (by reason) |
| --- | ---: | ---: | --- |
{chr(10).join(rows)}

## Tokens spent

{spent}

## Principles cited in the internal thoughts

{chr(10).join(f"- principle {pid}: {n}" for pid, n in cited.most_common()) or "- none"}

## The constitution

{chr(10).join(f"- [{u}]({u})" if u.startswith("constitution/") else f"- {u}" for u in used) or "- none"}

## The recipe

{"The file as given is copied to `recipe.toml`. " if "recipe.toml" in written else ""}\
Resolved, with any `--set` applied (credentials redacted):

```json
{json.dumps(shown, indent=2)}
```
{"" if not recipe.report.html else chr(10) + "A report of the data is in `report.html`." + chr(10)}"""
    if folder.may_write("README.md"):
        (out / "README.md").write_text(text, encoding="utf-8")
        written.insert(0, "README.md")
    else:
        say(f"{out / 'README.md'} is not this run's file: left as it is")
    return written
