"""The model commands: generate, principle, refine, critique, judge. Their options are the stage's fields
(`stage_fields`), the input and output options (`io_options`) and the backend's and executor's (`ENGINE`); each
makes its stage and hands it, with the backend and executor, to `run_stages`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from selfalign.cli.app import ENGINE, IO, Engine, app, fail, io_options, run_stages
from selfalign.cli.options import stage_fields, with_groups


class Method(str, Enum):
    self_instruct = "self-instruct"
    red_team = "red-team"
    both = "both"


@app.command()
@with_groups(io_options(records=False), stage_fields("self-instruct", "red-team", skip=("name", "seed")), ENGINE)
def generate(
    method: Annotated[Method, typer.Option("--method", help="self-instruct, red-team, or both.")] = Method.self_instruct,
    ratio: Annotated[float, typer.Option("--ratio", min=0.0, max=1.0, help="--method both: share of self-instruct "
                     "prompts.")] = 0.5,
    *, io: IO, fields: dict[str, Any], engine: Engine,
) -> None:
    """Synthesise prompts: self-instruct from a seed pool, or topic-guided red-teaming. (With --method red-team
    alone, --seeds names the question types, as --question-types.)

    Example: [bold]selfalign generate --num 8 > prompts.jsonl[/]
    """
    from selfalign.stages import RedTeam, SelfInstruct
    from selfalign.steps import long_flag

    if method is not Method.both and ratio != 0.5:
        fail("--ratio: applies only with --method both")
    red = {k: fields.pop(k) for k in RedTeam.model_fields if k not in SelfInstruct.model_fields and k in fields}
    if method is Method.self_instruct:
        for k, v in red.items():
            if v != RedTeam.model_fields[k].default:
                fail(f"{long_flag(RedTeam, k)}: applies only with --method red-team or both")
    seeds, num = fields.pop("seeds", None), fields.pop("num")
    if method is Method.red_team and seeds is not None and red.get("question_types") is not None:
        fail("--seeds: with --method red-team the question types come from --question-types; give one of them")
    common = {**fields, "seed": engine.backend.seed}
    if method is Method.self_instruct:
        stages = [SelfInstruct(num=num, seeds=seeds, **common)]
    elif method is Method.red_team:  # --seeds: the older spelling of --question-types here
        stages = [RedTeam(num=num, **{**red, "question_types": red.get("question_types") or seeds}, **common)]
    else:
        n_si = round(num * ratio)
        stages = [SelfInstruct(num=n_si, seeds=seeds, **common), RedTeam(num=num - n_si, **red, **common)]
    run_stages(io.run("generate"), engine.executor, stages, engine.backend)


def answer(kind: str, io: IO, fields: dict[str, Any], engine: Engine) -> None:
    """A stage that answers each record (resumed by id) with the run's seed, over the command's backend."""
    from selfalign.stages import STAGES

    stage = STAGES[kind](**fields, seed=engine.backend.seed)
    run = io.run(kind)
    run.resume()
    run_stages(run, engine.executor, [stage], engine.backend, io.input)


def groups(kind: str) -> Any:
    """A model command's options: input and output, the stage's fields (the seed is the backend's), the engine."""
    return with_groups(io_options(), stage_fields(kind, skip=("name", "seed")), ENGINE)


@app.command()
@groups("principle")
def principle(*, io: IO, fields: dict[str, Any], engine: Engine) -> None:
    """Answer each prompt under the principle set, with internal thoughts; parse and filter.

    Example: [bold]selfalign principle prompts.jsonl --dropped dropped.jsonl > aligned.jsonl[/]
    """
    answer("principle", io, fields, engine)


@app.command()
@groups("refine")
def refine(*, io: IO, fields: dict[str, Any], engine: Engine) -> None:
    """Verbose cloning: re-answer with a detailed persona; the concise answer is kept beside it.

    Example: [bold]selfalign refine aligned.jsonl > verbose.jsonl[/]
    """
    answer("refine", io, fields, engine)


@app.command()
@groups("critique")
def critique(*, io: IO, fields: dict[str, Any], engine: Engine) -> None:
    """Check each answer against the principles its thoughts cite (and --sample more), and revise it where one
    is broken; records gain critique, violations and revision (pairs for judge and export --format dpo).

    Example: [bold]selfalign critique aligned.jsonl --dropped dropped.jsonl > critiqued.jsonl[/]
    """
    answer("critique", io, fields, engine)


@app.command()
@groups("judge")
def judge(*, io: IO, fields: dict[str, Any], engine: Engine) -> None:
    """Judge each pair (response vs revision, or two sampled responses) by the principles, in both orders to
    cancel position bias; records gain judge (score, margin, chosen).

    Example: [bold]selfalign judge critiqued.jsonl > judged.jsonl && selfalign export judged.jsonl --format dpo[/]
    """
    answer("judge", io, fields, engine)
