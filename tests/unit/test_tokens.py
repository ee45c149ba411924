"""Tokens counted: each stage's prompt and completion tokens, by the backend's own counts, reach its report, the
dataset card, report.html and the summaries; cache hits are counted apart and cost nothing; a price per million
tokens gives the cost, and a bad one is one line naming the option or field. In-process, scripted backend."""

import json
import shutil

import pytest

from selfalign import Export, Load, Pipeline, Principle
from selfalign.assets import default_path
from selfalign.backends.base import SamplingParams
from selfalign.backends.scripted import ScriptedBackend
from selfalign.io.cache import CachedBackend, CompletionCache
from selfalign.recipe import load_recipe, run_recipe
from selfalign.report.page import Summary, print_text, render_html
from selfalign.report.tokens import Metered, Tokens, parse_price
from support import invoke, one_error_line, write_jsonl

ANSWER = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
          "far side both bulge, so most coasts see two high tides and two low tides every day.")
RULES = [{"text": f" By 2 (informative) I explain.\n\nSage: {ANSWER}"}]
KEEP = ["off_topic", "restates_question"]  # the embedding gates are tested elsewhere


class Recording(ScriptedBackend):
    """The scripted backend, keeping every completion it made: what the counts must add up to."""

    def __init__(self, rules):
        super().__init__(rules=rules)
        self.made = []

    def generate(self, prompts, params):
        out = super().generate(prompts, params)
        self.made += out
        return out


def prompts(tmp_path, n=3):
    return write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i} about the tides?"} for i in range(n)])


def pipeline(tmp_path):
    return Pipeline([Load(path=str(prompts(tmp_path))), Principle(keep=KEEP), Export(name="sft")])


def test_a_stage_reports_the_backends_own_counts_and_the_requests(tmp_path):
    backend = Recording(RULES)
    reports = pipeline(tmp_path).run(tmp_path / "out", backend=backend)
    t = reports["principle"].tokens
    assert backend.made and t.requests == len(backend.made) == 3
    assert t.prompt_tokens == sum(c.prompt_tokens for c in backend.made) > 0
    assert t.completion_tokens == sum(c.completion_tokens for c in backend.made) > 0
    assert t.cached_requests == 0 and t.seconds > 0
    saved = json.loads((tmp_path / "out" / "principle.json").read_text())["tokens"]
    assert {k: saved[k] for k in ("requests", "prompt_tokens", "completion_tokens", "cached_requests")} == {
        "requests": 3, "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
        "cached_requests": 0}
    assert "tokens" not in json.loads((tmp_path / "out" / "load.json").read_text())  # no model, nothing spent


def test_completions_from_the_cache_are_counted_apart_and_cost_nothing(tmp_path):
    cache = CompletionCache(tmp_path / "completions.sqlite")
    first = pipeline(tmp_path).run(tmp_path / "a", backend=CachedBackend(Recording(RULES), cache))["principle"].tokens
    again = CachedBackend(Recording(RULES), cache)
    second = pipeline(tmp_path).run(tmp_path / "b", backend=again)["principle"].tokens
    assert again.inner.made == [] and second.requests == second.prompt_tokens == second.completion_tokens == 0
    assert (second.cached_requests, second.cached_prompt_tokens, second.cached_completion_tokens) == (
        first.requests, first.prompt_tokens, first.completion_tokens)
    assert second.cost((1.0, 2.0)) == 0 and first.cost((1.0, 2.0)) > 0


def test_a_mixed_call_counts_hits_and_misses_each_where_it_belongs(tmp_path):
    cache = CompletionCache(tmp_path / "completions.sqlite")
    params = SamplingParams(max_tokens=16)
    CachedBackend(ScriptedBackend(rules=[{"text": "one two three"}]), cache).generate(["a b"], params)
    t = Tokens()
    Metered(CachedBackend(ScriptedBackend(rules=[{"text": "one two three"}]), cache), t).generate(
        ["a b", "c d e"], params)
    assert (t.requests, t.prompt_tokens, t.completion_tokens) == (1, 3, 3)
    assert (t.cached_requests, t.cached_prompt_tokens, t.cached_completion_tokens) == (1, 2, 3)
    stored = cache.get([cache.key("scripted", "inline", params, "a b")])
    assert [c.cached for c in stored.values()] == [False]  # marked on the way out, never stored as such


def test_the_judges_scoring_calls_spend_tokens_too():
    backend = ScriptedBackend(rules=[{"choices": {" A": -0.1, " B": -2.0}}])
    t = Tokens()
    Metered(backend, t).choice_logprobs(["one two three", "four five"], [" A", " B"])
    assert (t.requests, t.prompt_tokens, t.completion_tokens) == (2, 5, 0)
    assert backend.choice_usage == {"requests": 2, "prompt_tokens": 5, "completion_tokens": 0}


def test_the_price_makes_the_cost_of_fresh_tokens_only():
    t = Tokens(requests=4, prompt_tokens=2_000_000, completion_tokens=500_000, cached_requests=9,
               cached_prompt_tokens=10**9, cached_completion_tokens=10**9, seconds=100)
    assert t.cost((0.15, 0.6)) == pytest.approx(0.3 + 0.3)
    assert t.cost(None) is None and t.rate() == 5000
    assert t.line((0.15, 0.6)).endswith("5,000.0 tokens/s, $0.6000")
    assert parse_price("0.15, 0.6") == (0.15, 0.6) and parse_price([0, 2]) == (0.0, 2.0)
    for bad in ("0.15", "a,b", "-1,1", "1,nan", "1,2,3", [1], [True, 1], "1,inf"):
        with pytest.raises(ValueError, match="^--price-per-million .*expected INPUT,OUTPUT"):
            parse_price(bad)


@pytest.fixture
def recipe(tmp_path):
    rules = write_jsonl(tmp_path / "model.jsonl", RULES)
    principles = shutil.copy(default_path("principles", "default.md"), tmp_path / "principles.md")
    path = tmp_path / "recipe.toml"
    path.write_text(f"""out = "{tmp_path / 'out'}"
price_per_million = [0.15, 0.6]
[backend]
name = "scripted"
model = "{rules}"
cache = false
[[stage]]
kind = "load"
path = "{prompts(tmp_path)}"
[[stage]]
kind = "principle"
principles = "{principles}"
keep = {json.dumps(KEEP)}
[[stage]]
kind = "export"
name = "sft"
""")
    return path


def test_the_card_and_the_page_state_the_tokens_and_their_cost(recipe, tmp_path):
    reports, _ = run_recipe(load_recipe(recipe), source=str(recipe))
    t = reports["principle"].tokens
    usd = (t.prompt_tokens * 0.15 + t.completion_tokens * 0.6) / 1e6
    card = (tmp_path / "out" / "README.md").read_text()
    section = card.split("## Tokens spent", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| principle |"))
    assert row.split(" | ")[1:4] == ["3", f"{t.prompt_tokens:,}", f"{t.completion_tokens:,}"]
    assert f"${usd:.2g}" in row and "$0.15 / $0.6 per million" in section and "| load |" not in section
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<table id='tokens'>" in page and f"<td>{t.prompt_tokens:,}</td>" in page and f"${usd:.2g}" in page


def test_a_reused_stage_keeps_the_tokens_it_spent_when_made(recipe, tmp_path):
    run_recipe(load_recipe(recipe))
    first = (tmp_path / "out" / "README.md").read_text().split("## Tokens spent", 1)[1].split("\n## ", 1)[0]
    reports, _ = run_recipe(load_recipe(recipe, ["run.price_per_million=[1, 1]"]))  # every stage reused
    again = (tmp_path / "out" / "README.md").read_text().split("## Tokens spent", 1)[1].split("\n## ", 1)[0]
    assert reports["principle"].tokens.requests == 3 and "$1 / $1 per million" in again
    assert first.split("| principle |")[1].split(" | ")[:3] == again.split("| principle |")[1].split(" | ")[:3]


def test_a_bad_price_in_a_recipe_names_the_field(recipe):
    with pytest.raises(ValueError, match=r"recipe.toml: field price_per_million: .*expected INPUT,OUTPUT"):
        load_recipe(recipe, ["run.price_per_million=[-1, 2]"])


def test_the_text_and_json_reports_total_the_stages(tmp_path):
    for name, n in (("principle", 10), ("refine", 30)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"stage": name, "tokens": {
            "requests": 1, "prompt_tokens": n * 1000, "completion_tokens": n * 100, "seconds": 1.0}}))
    s = Summary(price=(1.0, 10.0))
    for name in ("principle", "refine"):
        s.add_file(str(tmp_path / f"{name}.json"))
    tokens = s.as_dict()["tokens"]
    assert tokens["total"]["prompt_tokens"] == 40_000 and tokens["total"]["completion_tokens"] == 4_000
    assert tokens["stages"]["refine"]["cost_usd"] == pytest.approx(0.03 + 0.03)
    assert tokens["total"]["cost_usd"] == pytest.approx(0.08) and tokens["price_per_million"] == [1.0, 10.0]
    from rich.console import Console

    console = Console(record=True, width=200)
    print_text(s.as_dict(), console)
    text = console.export_text()
    assert "tokens spent" in text and "40,000" in text and "$0.0800" in text
    assert "<table id='tokens'>" in render_html(s)


def test_the_cli_takes_a_price_and_refuses_a_bad_one_in_one_line(recipe, tmp_path):
    bad = invoke("run", str(recipe), "--price-per-million", "cheap")
    assert bad.exit_code == 2 and "--price-per-million 'cheap': expected INPUT,OUTPUT" in one_error_line(bad)
    done = invoke("run", str(recipe), "--price-per-million", "2,4")
    assert done.exit_code == 0, done.stderr
    assert "tokens: 3 requests" in done.stderr and "$2 / $4 per million" in (tmp_path / "out" / "README.md").read_text()
    report = invoke("report", str(tmp_path / "out" / "principle.json"), "-f", "json", "--price-per-million", "1,1")
    assert report.exit_code == 0 and json.loads(report.stdout)["tokens"]["total"]["cost_usd"] > 0
    nothing = invoke("report", str(tmp_path / "out" / "load.json"), "-f", "json", "--price-per-million", "1,1")
    assert nothing.exit_code == 2 and "no stage report among the files counts any tokens" in one_error_line(nothing)


def test_a_ray_worker_sends_the_tokens_of_each_chunk_back(tmp_path):
    from selfalign.executors.ray_workers import StageWorker
    from selfalign.stages.refine import Refine

    worker = StageWorker(Refine, Refine().model_dump(), {}, {"name": "scripted", "model": str(
        write_jsonl(tmp_path / "m.jsonl", [{"text": "Sage: " + ANSWER}])), "cache": False}, None, None)
    line = json.dumps({"id": "a", "prompt": "Why tides?", "thoughts": "t", "response": ANSWER})
    out = worker({"seq": [0], "lines": [line]})
    extra = [json.loads(j) for k, j in zip(out["kind"], out["json"], strict=True) if k == "extra"]
    assert len(extra) == 1 and extra[0]["tokens"]["requests"] == 1 and extra[0]["tokens"]["prompt_tokens"] > 0


def test_a_resumed_stage_adds_what_it_spent_before(tmp_path):
    rules = [{"match": "Question 1", "text": "", "finish_reason": "error"}, *RULES]
    backend = Recording(rules)
    first = pipeline(tmp_path).run(tmp_path / "out", backend=backend)["principle"]
    assert first.dropped["backend_error"] == 1 and first.tokens.requests == 3
    again = pipeline(tmp_path).run(tmp_path / "out", backend=backend)["principle"]  # resumed: asks the one again
    assert again.tokens.requests == 4 and again.tokens.prompt_tokens == sum(c.prompt_tokens for c in backend.made)
