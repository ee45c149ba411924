"""The data commands: dedup, export, run (a recipe), report, cache."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from selfalign.cli.app import (
    IO,
    Quiet,
    Run,
    RunError,
    Stopped,
    app,
    console,
    escape_text,
    executor_options,
    fail,
    io_options,
    make_executor,
    run_stages,
)
from selfalign.cli.options import Group, stage_fields, with_groups

PRICE_HELP = ("USD per million prompt tokens and per million completion tokens, e.g. 0.15,0.6: adds what the "
              "run's tokens cost (completion-cache hits are free) to the card, report.html and the summary.")

DEDUP_EXECUTOR = "local: this process; ray: embeddings computed by a pool of Ray actors, the search here."


@app.command()
@with_groups(io_options(shard=False), stage_fields("dedup"),
             Group("executor", lambda: executor_options(DEDUP_EXECUTOR), make_executor))
def dedup(*, io: IO, fields: dict[str, Any], executor: Any) -> None:
    """Remove exact (normalised) and near-duplicate records; the first occurrence is kept.

    Example: [bold]selfalign dedup aligned.jsonl --dropped dups.jsonl > unique.jsonl[/]
    """
    from selfalign.stages import Dedup

    run_stages(io.run("dedup"), executor, [Dedup(**fields)], input=io.input)


@app.command()
@with_groups(io_options(), stage_fields("export"))
def export(*, io: IO, fields: dict[str, Any]) -> None:
    """Write SFT JSONL (messages, ShareGPT or Alpaca), principles and internal thoughts removed; or preference
    pairs (dpo).

    Example: [bold]selfalign export aligned.jsonl --format messages > sft.jsonl[/]
    """
    from selfalign.executors import LocalExecutor
    from selfalign.stages import Export

    run_stages(io.run("export"), LocalExecutor(), [Export(**fields)], input=io.input)


@app.command("run")
def run_recipe(
    recipe: Annotated[str, typer.Argument(help="Recipe file (TOML): the backend, the stages in order, the output folder.")],
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="NAME.FIELD=VALUE", help="Change one option "
                    "(repeatable), e.g. principle.temperature=0.3, backend.model=/models/x, run.out=out/big, "
                    "run.allow_foreign=true (write into a folder that holds other files; they are left alone).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved plan: per stage, run (and which "
                       "part of its key changed) or reuse; writes nothing.")] = False,
    price: Annotated[str | None, typer.Option("--price-per-million", metavar="INPUT,OUTPUT", help=PRICE_HELP
                     + " Overrides the recipe's price_per_million.")] = None,
    quiet: Quiet = False,
) -> None:
    """Run a whole workflow from one recipe file into one folder (its own: locked, holding only its files); a
    rerun remakes exactly the stages whose key (options, model, asset files, inputs) changed and those after
    them, and resumes a half-done one under the same key. Writes report.html and a dataset card (README.md)
    with the constitution beside the data.

    Example: [bold]selfalign run examples/recipe.toml --set self-instruct.num=100 --dry-run[/]
    """
    from selfalign.recipe import load_recipe, plan_text
    from selfalign.recipe import run_recipe as run_all

    from selfalign.io.jsonl import InputError

    # what a user can cause (a missing file, a bad option, an unreachable server, a missing extra) is one line
    user_errors = (InputError, ValueError, RuntimeError, OSError)
    try:
        plan = load_recipe(recipe, set_)
        if price is not None:
            from selfalign.report.tokens import parse_price

            plan = plan.model_copy(update={"price_per_million": parse_price(price)})
        if dry_run:
            typer.echo(plan_text(plan))
            return
    except RunError as e:
        fail(str(e), e.code)
    except user_errors as e:
        fail(str(e))
    say = (lambda _: None) if quiet else Run._say
    try:
        reports, written = run_all(plan, say=say, source=recipe)
    except Stopped as e:
        console.print(f"[yellow]{escape_text(str(e))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(e.code) from None
    except RunError as e:  # the library names its option; here it is a --set
        fail(str(e).replace("or allow_foreign", "or --set run.allow_foreign=true"), e.code)
    except user_errors as e:
        fail(str(e))
    if not quiet:
        from selfalign.report.tokens import Tokens

        total = Tokens()
        for name, rep in reports.items():
            reasons = rep.dropped.most_common()
            more, rest = len(reasons) - 3, sum(n for _, n in reasons[3:])  # the rest counted, named in NAME.json
            top = ", ".join(f"{r} {n}" for r, n in reasons[:3]) + (
                f", {more} more reason{'s' * (more > 1)}: {rest} record{'s' * (rest > 1)} (in {name}.json)"
                if more > 0 else "")
            t = rep.tokens
            spent = [f"{t.prompt_tokens:,} + {t.completion_tokens:,} tokens"] if t.requests else []
            spent += [f"{t.cached_requests:,} requests cached"] if t.cached_requests else []
            console.print(f"{name:>14}: {rep.read} read, {rep.kept} kept" + (f" (dropped: {top})" if top else "")
                          + (f"; {', '.join(spent)}" if spent else ""), highlight=False, soft_wrap=True)
            total.add(rep.tokens)
        if total:
            console.print(f"{'tokens':>14}: {total.line(plan.price_per_million)}", highlight=False, soft_wrap=True)
        console.print(f"done: {escape_text(plan.out)}" + (f" ({', '.join(written)})" if written else ""),
                      highlight=False, soft_wrap=True)


class ReportFormat(str, Enum):
    html = "html"
    text = "text"
    json = "json"


@app.command()
def report(
    files: Annotated[list[str], typer.Argument(help="Outputs of any stage (JSONL: prompts, aligned, refined, "
                                               "dropped, exported) and the JSON written by --report.")],
    output: Annotated[str | None, typer.Option("-o", "--output", help="Where to write (html: default "
                                               "report.html; json: default stdout).")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f", help="html page, text tables, or json.")]
    = ReportFormat.html,
    price: Annotated[str | None, typer.Option("--price-per-million", metavar="INPUT,OUTPUT", help=PRICE_HELP
                     + " Needs stage reports (NAME.json) among the files.")] = None,
) -> None:
    """See the dataset: counts through the pipeline, drops by reason with examples, principle citations,
    lengths, question-type coverage and searchable samples, in one offline HTML page.

    Example: [bold]selfalign report out/*.jsonl out/*.json -o report.html[/]
    """
    import json as _json

    from selfalign.io.jsonl import InputError
    from selfalign.report.page import Summary, print_text, render_html

    from selfalign.io.storage import same_file

    target = output or ("report.html" if format is ReportFormat.html else None)
    try:
        from selfalign.report.tokens import parse_price

        prices = parse_price(price) if price is not None else None
    except ValueError as e:
        fail(str(e))
    for f in files:  # before anything is read or written
        if target and same_file(f, target):
            fail(f"-o {target} is the input {f}: writing it would destroy the input; choose another file")
    summary = Summary(price=prices)
    try:
        for f in files:
            summary.add_file(f)
    except InputError as e:
        fail(str(e), 1)
    if prices is not None and not any(t for _, t in summary.tokens):
        fail("--price-per-million: no stage report among the files counts any tokens (give the NAME.json a "
             "model stage wrote, e.g. out/principle.json)")
    if format is ReportFormat.text:
        print_text(summary.as_dict(), Console(width=None if sys.stdout.isatty() else 120))
        return
    text = _json.dumps(summary.as_dict(), indent=2) + "\n" if format is ReportFormat.json else render_html(summary)
    if target is None:
        sys.stdout.write(text)
        return
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {target}: {e.strerror or e}", 1)
    if format is ReportFormat.html:
        console.print(f"report: {target}")


cache_app = typer.Typer(help="The completion cache: show its size, or clear it.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info() -> None:
    """Where the cache is and how many completions it holds; a cache that cannot be read is said in one line.

    Example: [bold]selfalign cache info[/]
    """
    from selfalign.io.cache import CacheError, default_cache

    cache = default_cache(warn=lambda _: None)
    try:
        s = cache.stats()
    except CacheError as e:
        fail(str(e), 1)
    typer.echo(f"{s['path']}: {s['completions']} completions, {s['bytes'] / 1e6:.1f} MB")
    if cache.problem:  # readable, but it cannot store
        typer.echo(f"warning: {cache.describe()}", err=True)


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every stored completion, and remove a cache file that is not a readable SQLite database.

    Example: [bold]selfalign cache clear[/]
    """
    from selfalign.io.cache import CacheError, clear_cache

    try:
        done = clear_cache()
    except CacheError as e:
        fail(str(e), 1)
    for line in done:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


