"""The model commands: generate, principle, refine. Each turns its options into a stage config from
`selfalign.steps` and hands it, with the shared backend and executor (`Engine`), to `run_stages`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from selfalign.cli.app import (
    Dropped,
    Engine,
    Input,
    OnErr,
    OnError,
    Output,
    Quarantine,
    Quiet,
    ReportPath,
    Run,
    Shard,
    app,
    fail,
    model_options,
    run_stages,
)
from selfalign.gates import REASONS, REVISION_REASONS


class Method(str, Enum):
    self_instruct = "self-instruct"
    red_team = "red-team"
    both = "both"


Principles = Annotated[str | None, typer.Option("--principles", help="Principle set (.md/.txt numbered list or .yaml).")]
Exemplars = Annotated[str | None, typer.Option("--exemplars", help="Exemplars file (.yaml or .jsonl: user, thoughts, answer).")]
Persona = Annotated[str, typer.Option("--persona", help="The assistant's internal name in the prompt.")]
Keep = Annotated[list[str] | None, typer.Option("--keep", metavar="REASON", help="Keep what this gate would drop "
                 "(repeatable or comma-separated; 'all' turns every gate off). Reasons: " + "; ".join(
                     f"[bold]{k}[/]: {v}" for k, v in REASONS.items()) + ".")]
MinWords = Annotated[int, typer.Option("--min-words", help="too_short: fewest words for an open question (a third "
                     "of it for a plain question; 1 when the query asks for brevity; characters of scripts "
                     "without spaces count 1.5 to a word). 0: off.")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature.")]
TopP = Annotated[float, typer.Option(help="Nucleus sampling.")]
MaxTokens = Annotated[int, typer.Option(help="New tokens per answer.")]


@app.command()
@model_options
def generate(
    num: Annotated[int, typer.Option("--num", "-n", help="Stop after this many accepted prompts.")] = 20,
    method: Annotated[Method, typer.Option("--method", help="self-instruct, red-team, or both.")] = Method.self_instruct,
    seeds: Annotated[str | None, typer.Option("--seeds", help="self-instruct seed pool: our JSONL ({'prompt'}) or "
                     "the public self-instruct format. (With --method red-team alone: the question types, as "
                     "--question-types.)")] = None,
    question_types: Annotated[str | None, typer.Option("--question-types", help="red-team question types "
                              "(.txt or TGRT .jsonl); --method red-team or both.")] = None,
    ratio: Annotated[float, typer.Option("--ratio", min=0.0, max=1.0, help="--method both: share of self-instruct "
                     "prompts.")] = 0.5,
    novelty_threshold: Annotated[float, typer.Option("--novelty-threshold", help="Reject a candidate whose "
                                 "embedding cosine to the pool is at or above this.")] = 0.85,
    no_embeddings: Annotated[bool, typer.Option("--no-embeddings", help="Novelty by exact match only.")] = False,
    topics_per_type: Annotated[int, typer.Option("--topics-per-type", help="red-team: topics per question type.")] = 10,
    max_types: Annotated[int | None, typer.Option("--max-types", help="red-team: use only this many question "
                         "types, sampled with --seed.")] = None,
    max_requests: Annotated[int | None, typer.Option("--max-requests", help="Give up after this many requests.")] = None,
    output: Output = None, dropped: Dropped = None, report: ReportPath = None, quiet: Quiet = False,
    *, engine: Engine,  # the shared options: see model_options
) -> None:
    """Synthesise prompts: self-instruct from a seed pool, or topic-guided red-teaming.

    Example: [bold]selfalign generate --num 8 > prompts.jsonl[/]
    """
    from selfalign.stages import RedTeam, SelfInstruct

    def refuse(name: str, value: object, default: object, why: str) -> None:
        if value != default:
            fail(f"{name}: {why}")

    if method is not Method.both:
        refuse("--ratio", ratio, 0.5, "applies only with --method both")
    if method is Method.self_instruct:
        refuse("--question-types", question_types, None, "applies only with --method red-team or both")
        refuse("--topics-per-type", topics_per_type, 10, "applies only with --method red-team or both")
        refuse("--max-types", max_types, None, "applies only with --method red-team or both")
    if method is Method.red_team and seeds is not None and question_types is not None:
        fail("--seeds: with --method red-team the question types come from --question-types; give one of them")
    common = dict(novelty_threshold=novelty_threshold, embeddings=not no_embeddings, max_requests=max_requests,
                  seed=engine.seed, batch_size=engine.batch_size)
    red = dict(topics_per_type=topics_per_type, max_types=max_types)
    if method is Method.self_instruct:
        stages = [SelfInstruct(num=num, seeds=seeds, **common)]
    elif method is Method.red_team:  # --seeds: the older spelling of --question-types here
        stages = [RedTeam(num=num, question_types=question_types or seeds, **red, **common)]
    else:
        n_si = round(num * ratio)
        stages = [SelfInstruct(num=n_si, seeds=seeds, **common),
                  RedTeam(num=num - n_si, question_types=question_types, **red, **common)]
    run = Run("generate", output, dropped, report, OnError.skip, quiet)
    run_stages(run, engine.executor, stages, engine.backend)


class JudgeMethod(str, Enum):
    auto = "auto"
    logprobs = "logprobs"
    vote = "vote"


@app.command()
@model_options
def principle(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    principles: Principles = None, exemplars: Exemplars = None, persona: Persona = "Sage",
    rename: Annotated[str | None, typer.Option("--rename", help="Replace the persona's name in answers.")] = None,
    temperature: Temperature = 0.5, top_p: TopP = 0.95, max_tokens: MaxTokens = 256,
    min_words: MinWords = 25, keep: Keep = None,
    no_apology_bias: Annotated[bool, typer.Option("--no-apology-bias", help="Do not push down 'Sorry' "
                               "(logit bias -100, where the backend takes one: not Ollama or hosted APIs).")] = False,
    n: Annotated[int, typer.Option("--n", min=1, help="Answers sampled per prompt. 2 gives each record a pair "
                 "(responses) for `selfalign judge` and `export --format dpo`; the first passing answer is kept "
                 "as the response.")] = 1,
    judge: Annotated[bool, typer.Option("--judge", help="Also ask the model whether each answer follows the "
                     "principles its thoughts cite (Yes/No log-odds, or a vote); below --judge-threshold it is "
                     "dropped as judge_rejected.")] = False,
    judge_threshold: Annotated[float, typer.Option("--judge-threshold", help="With --judge: the lowest log-odds "
                               "of Yes over No kept.")] = 0.0,
    judge_method: Annotated[JudgeMethod, typer.Option("--judge-method", help="With --judge: auto (log-probabilities where "
                            "the backend gives them), logprobs or vote.")] = JudgeMethod.auto,
    *, engine: Engine,  # the shared options: see model_options
) -> None:
    """Answer each prompt under the principle set, with internal thoughts; parse and filter.

    Example: [bold]selfalign principle prompts.jsonl --dropped dropped.jsonl > aligned.jsonl[/]
    """
    from selfalign.stages import Principle

    stage = Principle(principles=principles, exemplars=exemplars, persona=persona, rename=rename,
                      temperature=temperature, top_p=top_p, max_tokens=max_tokens, min_words=min_words,
                      keep=keep or [], apology_bias=not no_apology_bias, seed=engine.seed,
                      batch_size=engine.batch_size, n=n, judge=judge, judge_threshold=judge_threshold,
                      judge_method=judge_method.value)
    run = Run("principle", output, dropped, report, on_error, quiet, quarantine, shard)
    run.resume()
    run_stages(run, engine.executor, [stage], engine.backend, input)


@app.command()
@model_options
def refine(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    persona: Persona = "Sage", temperature: Temperature = 0.3, top_p: TopP = 0.7, max_tokens: MaxTokens = 512,
    repetition_penalty: Annotated[float, typer.Option(help="Repetition penalty.")] = 1.1,
    min_words: MinWords = 25, keep: Keep = None,
    *, engine: Engine,  # the shared options: see model_options
) -> None:
    """Verbose cloning: re-answer with a detailed persona; the concise answer is kept beside it.

    Example: [bold]selfalign refine aligned.jsonl > verbose.jsonl[/]
    """
    from selfalign.stages import Refine

    stage = Refine(persona=persona, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                   repetition_penalty=repetition_penalty, min_words=min_words, keep=keep or [], seed=engine.seed,
                   batch_size=engine.batch_size)
    run = Run("refine", output, dropped, report, on_error, quiet, quarantine, shard)
    run.resume()
    run_stages(run, engine.executor, [stage], engine.backend, input)


@app.command()
@model_options
def critique(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    principles: Principles = None,
    exemplars: Annotated[str | None, typer.Option("--exemplars", help="Critique exemplars (.yaml or .jsonl: user, "
                         "answer, check, critique, violations, revision).")] = None,
    persona: Persona = "Sage",
    sample: Annotated[int, typer.Option("--sample", help="Principles drawn from the set besides those the thoughts "
                      "cite (seeded per record).")] = 2,
    temperature: Temperature = 0.3, top_p: TopP = 0.9, max_tokens: MaxTokens = 384,
    repetition_penalty: Annotated[float, typer.Option(help="Repetition penalty.")] = 1.0,
    min_words: MinWords = 25,
    keep: Annotated[list[str] | None, typer.Option("--keep", metavar="REASON", help="Keep a revision this gate "
                    "would drop (repeatable or comma-separated; 'all'): " + ", ".join(REVISION_REASONS) + ".")]
    = None,
    *, engine: Engine,  # the shared options: see model_options
) -> None:
    """Check each answer against the principles its thoughts cite (and --sample more), and revise it where one
    is broken; records gain critique, violations and revision (pairs for judge and export --format dpo).

    Example: [bold]selfalign critique aligned.jsonl --dropped dropped.jsonl > critiqued.jsonl[/]
    """
    from selfalign.stages import Critique

    stage = Critique(principles=principles, exemplars=exemplars, persona=persona, sample=sample,
                     temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                     repetition_penalty=repetition_penalty, min_words=min_words, keep=keep or [], seed=engine.seed,
                     batch_size=engine.batch_size)
    run = Run("critique", output, dropped, report, on_error, quiet, quarantine, shard)
    run.resume()
    run_stages(run, engine.executor, [stage], engine.backend, input)



@app.command()
@model_options
def judge(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    principles: Principles = None,
    principle: Annotated[str, typer.Option("--principle", help="Judge by this principle (id or short name), or "
                         "all: the whole set.")] = "all",
    method: Annotated[JudgeMethod, typer.Option("--method", help="logprobs: the model's log-probabilities of the "
                      "one-token choice; vote: sampled answers; auto: logprobs where the backend gives them.")]
    = JudgeMethod.auto,
    samples: Annotated[int, typer.Option("--samples", help="vote: samples per answer order.")] = 5,
    *, engine: Engine,  # the shared options: see model_options
) -> None:
    """Judge each pair (response vs revision, or two sampled responses) by the principles, in both orders to
    cancel position bias; records gain judge (score, margin, chosen).

    Example: [bold]selfalign judge critiqued.jsonl > judged.jsonl && selfalign export judged.jsonl --format dpo[/]
    """
    from selfalign.stages import Judge

    stage = Judge(principles=principles, principle=principle, method=method.value, samples=samples,
                  seed=engine.seed, batch_size=engine.batch_size)
    run = Run("judge", output, dropped, report, on_error, quiet, quarantine, shard)
    run.resume()
    run_stages(run, engine.executor, [stage], engine.backend, input)

