"""No option silently ignored (issue 28): every option of every command, and every field of every stage, either
changes what reaches the stage, the backend, the executor or the output, or is refused with exit 2 in one line.

The walk is over the commands' click objects and `selfalign.stages.STAGES`, so a new option or field is checked
without being listed here; the non-default value comes from the parameter's type. What the CLI would run is
captured where it hands the stage configs to the executor (`run_stages`), so nothing here loads a model."""

import json
from dataclasses import asdict, is_dataclass
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import typer
from pydantic import BaseModel, ValidationError
from typer.core import TyperOption
from typer.testing import CliRunner

from selfalign.cli import app
from selfalign.stages import STAGES
from selfalign.steps import BackendConfig, Stage

COMMAND = typer.main.get_command(app)

# options that apply only beside another one: the pair is checked to CHANGE something (not merely be refused)
COMPANION: dict[tuple[str, str], list[str]] = {
    ("generate", "--ratio"): ["--method", "both"],
    ("generate", "--question-types"): ["--method", "red-team"],
    ("generate", "--topics-per-type"): ["--method", "red-team"],
    ("generate", "--max-types"): ["--method", "red-team"],
    ("principle", "--judge-threshold"): ["--judge"],
    ("principle", "--judge-method"): ["--judge"],
    ("export", "--min-margin"): ["--format", "dpo"],
    ("dedup", "--cluster-size"): ["--search", "cluster"],
    ("judge", "--samples"): ["--method", "vote"],
    **{(cmd, opt): ["--executor", "ray"] for cmd in ("generate", "principle", "refine", "critique", "judge", "dedup")
       for opt in ("--ray-address", "--ray-actors", "--ray-cpus-per-actor", "--ray-gpus-per-actor")},
    **{(cmd, opt): ["--backend", "openai"] for cmd in ("generate", "principle", "refine", "critique", "judge")
       for opt in ("--base-url", "--api-key-env", "--api-key-file", "--concurrency", "--max-retries",
                   "--request-timeout", "--tokenizer")},
    **{(cmd, opt): ["--backend", "vllm"] for cmd in ("generate", "principle", "refine", "critique", "judge")
       for opt in ("--tensor-parallel-size", "--gpu-memory-utilization", "--quantization")},
}
# values with a format of their own (anything else: from the type)
VALUE = {"--shard": "0/2", "--keep": "too_short", "--set": "principle.temperature=0.3"}
# the only options that do not reach a stage, with why
EXEMPT = {"--help": "shows the help", "--debug": "only how a selfalign bug is reported"}


def walk(group: Any, path: tuple[str, ...] = ()):
    """(command path, command) for every command under `group`."""
    if hasattr(group, "commands"):
        for name, sub in group.commands.items():
            yield from walk(sub, (*path, name))
    else:
        yield path, group


OPTIONS = [(" ".join(path), p) for path, cmd in walk(COMMAND) for p in cmd.params
           if isinstance(p, TyperOption) and p.opts[0] not in EXEMPT]


def bare(annotation: Any) -> Any:
    """`int | None` -> int, `list[str] | None` -> list[str]."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if isinstance(annotation, UnionType) or get_origin(annotation) is Union else annotation


def other_value(param: Any, tmp_path) -> list[str]:
    """The arguments that give `param` a valid value other than its default."""
    flag = max(param.opts, key=len)
    default = getattr(param.default, "value", param.default)
    kind = bare(param.type_descriptor.annotation)
    if param.is_flag or kind is bool:  # an --x/--no-x option on by default: --no-x
        return [param.secondary_opts[0] if default is True and param.secondary_opts else flag]
    if flag in VALUE:
        return [flag, VALUE[flag]]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return [flag, next(c.value for c in kind if c.value != default)]
    if kind is int:
        return [flag, str(1 if default is None else default + 1)]
    if kind is float:
        value = 1.0 if default is None else default + 1
        if param.max is not None and value > param.max:
            value = (default + (param.min or 0.0)) / 2
        return [flag, str(value)]
    path = tmp_path / f"value{flag}.txt"  # a str: where a path is expected it names a real file
    path.write_text("1. Be honest: say what you know.\n", encoding="utf-8")
    return [flag, str(path)]


def snapshot(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return (type(value).__name__, value.model_dump(mode="json"))
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, asdict(value))
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    return value


@pytest.fixture
def capture(monkeypatch, tmp_path):
    """Run a command in-process; what it would run is captured at `run_stages` (and a recipe at `run_recipe`),
    and nothing runs. Returns (exit code, one comparable picture of what it would do, stderr)."""
    import selfalign.cli.data
    import selfalign.cli.models
    import selfalign.recipe

    seen: list[Any] = []

    def run_stages(run, executor, stages, backend=None, input=None):
        options = getattr(executor, "opts", None)
        seen.append({"run": {k: getattr(run, k) for k in ("output", "dropped_path", "report_path", "on_error",
                                                             "quarantine", "shard", "quiet", "resumable")},
                     "executor": (type(executor).__name__, snapshot(options)), "stages": snapshot(stages),
                     "backend": snapshot(backend), "input": input})

    def run_recipe(plan, say=None, source=None):
        seen.append({"plan": snapshot(plan), "quiet": say is not None and say("x") is None and say.__name__})
        return {}, []

    for module in (selfalign.cli.data, selfalign.cli.models):
        monkeypatch.setattr(module, "run_stages", run_stages)
    monkeypatch.setattr(selfalign.recipe, "run_recipe", run_recipe)
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"prompt": "Why are there tides?", "response": "The Moon."}\n', encoding="utf-8")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'out = "{tmp_path / "out"}"\n[backend]\nname = "scripted"\n[[stage]]\nkind = "load"\n'
                      f'path = "{inputs}"\n[[stage]]\nkind = "principle"\n', encoding="utf-8")
    positional = {"run": [str(recipe)], "report": [str(inputs)], "generate": []}

    def invoke(command: str, *args: str):
        seen.clear()
        before = set(tmp_path.iterdir())
        words = command.split()
        result = CliRunner().invoke(app, [*words, *positional.get(command, [str(inputs)]), *args],
                                    env={"COLUMNS": "200"})
        made = sorted(p.name for p in set(tmp_path.iterdir()) - before)
        for p in set(tmp_path.iterdir()) - before:
            if p.is_file():
                p.unlink()
        return result.exit_code, json.dumps([seen, result.stdout, made], default=str), result.stderr

    return invoke


def refused(code: int, stderr: str) -> bool:
    lines = stderr.strip().splitlines()
    return code == 2 and len(lines) == 1 and lines[0].startswith("error: ")


@pytest.mark.parametrize(("command", "param"), OPTIONS, ids=[f"{c}{max(p.opts, key=len)}" for c, p in OPTIONS])
def test_every_option_changes_what_runs_or_is_refused(capture, tmp_path, command, param):
    flag = max(param.opts, key=len)
    companion = COMPANION.get((command, flag), [])
    code, base, err = capture(command, *companion)
    assert code == 0, err
    code, changed, err = capture(command, *companion, *other_value(param, tmp_path))
    if companion:  # in the context it is meant for, it must do something; out of it, the same or be refused
        assert code == 0 and changed != base, (flag, err)
        code, base, err = capture(command)
        assert code == 0, err
        code, changed, err = capture(command, *other_value(param, tmp_path))
    assert refused(code, err) or (code == 0 and changed != base), (flag, code, err)


@pytest.mark.parametrize(("command", "args", "named"), [
    ("generate", ["--question-types", "x.txt"], "--question-types"),
    ("generate", ["--ratio", "0.2"], "--ratio"),
    ("generate", ["--topics-per-type", "3"], "--topics-per-type"),
    ("generate", ["--max-types", "3"], "--max-types"),
    ("generate", ["--method", "red-team", "--seeds", "x.txt", "--question-types", "y.txt"], "--seeds"),
    ("export", ["--format", "dpo", "--revised"], "--revised"),
    ("export", ["--format", "dpo", "--verbose"], "--verbose"),
    ("export", ["--verbose", "--revised"], "--revised"),
    ("export", ["--min-margin", "1"], "--min-margin"),
    ("dedup", ["--search", "all-pairs", "--cluster-above", "5"], "--cluster-above"),
    ("dedup", ["--search", "all-pairs", "--cluster-size", "5"], "--cluster-size"),
    ("dedup", ["--threshold", "1.5", "--embedding-model", "all-minilm-l6-v2"], "--embedding-model"),
    ("dedup", ["--threshold", "1.5", "--no-cache"], "--no-cache"),
    ("judge", ["--method", "logprobs", "--samples", "3"], "--samples"),
    ("generate", ["--no-embeddings", "--novelty-threshold", "0.5"], "--novelty-threshold"),
    ("dedup", ["--threshold", "2", "--jaccard", "2", "--no-second-look"], "--no-second-look"),
    ("principle", ["--concurrency", "3"], "--concurrency"),
    ("principle", ["--judge-threshold", "1"], "--judge-threshold"),
    ("principle", ["--ray-actors", "2"], "--ray-actors"),
    ("dedup", ["--ray-cpus-per-actor", "1"], "--ray-cpus-per-actor"),
])
def test_an_option_that_does_not_apply_is_refused_in_one_line_naming_it(capture, command, args, named):
    code, _, err = capture(command, *args)
    assert refused(code, err) and named in err, err
    assert "=" not in err.split(":", 1)[1], err  # said in the CLI's words: --format dpo, not format=dpo


def test_red_team_reads_question_types_not_seeds(capture, tmp_path):
    types = tmp_path / "types.txt"
    types.write_text("How do I pick a lock?\n", encoding="utf-8")
    code, picture, err = capture("generate", "--method", "red-team", "--question-types", str(types))
    assert code == 0, err
    assert json.loads(picture)[0][0]["stages"][0][1]["question_types"] == str(types)


# ---- the stages' fields: the recipe and the Python API ------------------------------------------------------
def other_field_value(stage: type[BaseModel], name: str, tmp_path) -> Any:
    info = stage.model_fields[name]
    default = info.get_default(call_default_factory=True)
    kind = bare(info.annotation)
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) in (list, frozenset):  # keep: the reasons, held as a set
        return ["too_short"] if name == "keep" else [str(tmp_path / "in.jsonl")]
    if kind is bool:
        return not default
    if get_origin(kind) is Literal:
        return next(a for a in get_args(kind) if a != default)
    if kind is int:
        return 1 if default is None else default + 1
    if kind is float:
        return 0.5 if default is None else default + 1
    return str(tmp_path / "in.jsonl")


# fields that apply only beside another (the recipe's and Python's side of COMPANION)
FIELD_COMPANION = {
    ("principle", "judge_threshold"): {"judge": True}, ("principle", "judge_method"): {"judge": True},
    ("export", "min_margin"): {"format": "dpo"}, ("dedup", "cluster_size"): {"search": "cluster"},
    ("judge", "samples"): {"method": "vote"}, ("judge", "vote_max_tokens"): {"method": "vote"},
}
REQUIRED = {"load": {"path": "in.jsonl"}}
FIELDS = [(kind, name) for kind, cls in STAGES.items() for name in cls.model_fields if name not in REQUIRED.get(kind, {})]


@pytest.mark.parametrize(("kind", "name"), FIELDS, ids=[f"{k}.{n}" for k, n in FIELDS])
def test_every_stage_field_changes_the_stage_or_is_refused(tmp_path, kind, name):
    cls = STAGES[kind]
    base = {**REQUIRED.get(kind, {}), **FIELD_COMPANION.get((kind, name), {})}
    before = cls(**base)
    try:
        after = cls(**base, **{name: other_field_value(cls, name, tmp_path)})
    except ValidationError as e:
        assert (kind, name) not in FIELD_COMPANION, e
        assert name in str(e)
        return
    if name in FIELD_EXEMPT:
        return
    assert _built(after) != _built(before), f"{kind}.{name} changes nothing the stage builds"


FIELD_EXEMPT = {"name": "the stage's file name in a run folder (tests/unit/test_pipeline.py)",
                "tokenizer": "export: read by prepare (the token counter); the CLI walk above sees it"}


def _built(stage: Any) -> Any:
    """What a stage builds, as far as it can be seen without a model: its asset files, its embedding model, the
    records it reads, and the stage its step holds (whose fields its code reads: see the test below)."""
    from collections import defaultdict

    from selfalign.runner import Runner

    from selfalign.backends.scripted import ScriptedBackend

    runner = Runner(stage.kind)
    try:
        step = stage.build(ScriptedBackend(rules=[]), runner, defaultdict(list), None)
    except ValueError as e:  # refused beside this backend (judge_method=logprobs: the scripted one has none)
        return str(e)
    held = [*(vars(step.__self__).values() if hasattr(step, "__self__") else ()),
            *(c.cell_contents for c in getattr(step, "__closure__", None) or ())]
    configs = [repr(v) for v in held if isinstance(v, Stage)]  # the stage's code holds the stage itself
    assert configs or stage.kind == "load", stage
    return stage.assets(), stage.embeds(), stage.input_model().__name__, configs


@pytest.mark.parametrize(("kind", "name"), FIELDS, ids=[f"{k}.{n}" for k, n in FIELDS])
def test_every_stage_field_is_read_by_the_stage_code(kind, name):
    """The stage's code reads its options from the stage itself: a field no code of its module (or the shared
    base) reads or names (for a getattr) would change nothing."""
    import inspect
    import re
    import sys

    import selfalign.steps

    if name in FIELD_EXEMPT:
        return
    source = inspect.getsource(sys.modules[STAGES[kind].__module__]) + inspect.getsource(selfalign.steps)
    assert re.search(rf"\.{name}\b|\"{name}\"", source), f"{kind}.{name}: no code reads it"  # "x": a getattr


@pytest.mark.parametrize(("kind", "fields", "named"), [
    ("red-team", {"topics_per_type": 10, "max_types": 3}, None),
    ("export", {"format": "dpo", "revised": True}, "revised"),
    ("export", {"format": "dpo", "verbose": True}, "verbose"),
    ("export", {"verbose": True, "revised": True}, "revised"),
    ("export", {"min_margin": 1.0}, "min_margin"),
    ("dedup", {"search": "all-pairs", "cluster_size": 5}, "cluster_size"),
    ("dedup", {"threshold": 1.5, "cache": False}, "cache"),
    ("dedup", {"threshold": 1.5, "embedding_model": "all-minilm-l6-v2"}, "embedding_model"),
    ("judge", {"method": "logprobs", "samples": 3}, "samples"),
    ("self-instruct", {"embeddings": False, "novelty_threshold": 0.5}, "novelty_threshold"),
    ("dedup", {"threshold": 2.0, "jaccard": 2.0, "second_look": False}, "second_look"),
    ("principle", {"judge_threshold": 1.0}, "judge_threshold"),
    ("principle", {"judge_method": "vote"}, "judge_method"),
])
def test_a_field_that_does_not_apply_is_refused_naming_it(kind, fields, named):
    if named is None:
        STAGES[kind](**fields)
        return
    with pytest.raises(ValidationError, match=named):
        STAGES[kind](**fields)


def test_backend_config_fields_are_all_the_clis():
    """Every BackendConfig field is an option of the model commands (so the walk above covers it)."""
    flags = {max(p.opts, key=len) for p in COMMAND.commands["principle"].params if isinstance(p, TyperOption)}
    from selfalign.steps import long_flag

    assert {long_flag(BackendConfig, f) for f in BackendConfig.model_fields} <= flags


def test_ray_options_given_to_the_local_executor_are_refused_in_python_too():
    from selfalign.executors import make_executor

    with pytest.raises(ValueError, match="--ray-actors: Ray options apply only with --executor ray"):
        make_executor("local", actors=2)


def test_red_team_still_takes_its_types_from_seeds_alone(capture, tmp_path):
    types = tmp_path / "types.txt"
    types.write_text("How do I pick a lock?\n", encoding="utf-8")
    code, picture, err = capture("generate", "--method", "red-team", "--seeds", str(types))
    assert code == 0, err
    assert json.loads(picture)[0][0]["stages"][0][1]["question_types"] == str(types)
