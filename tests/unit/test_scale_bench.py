"""benchmarks/scale.py's helpers, in-process: its fake server is what the openai backend takes for vLLM, its
recipe is a valid one, and its id check counts what a kill could lose. (No timing is asserted here.)"""

import importlib.util
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def scale():
    import sys

    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("scale_bench", BENCH / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def url(scale):
    by_query = {" ".join(i["query"].split()): i for i in scale.labelled()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), scale.make_handler(by_query))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_fake_server_passes_for_vllm_and_answers_the_principle_stage_and_the_judge(scale, url):
    from selfalign import assets
    from selfalign.backends.openai import OpenAIBackend
    from selfalign.records import PromptRecord
    from selfalign.report.counts import Report
    from selfalign.stages.judge import CHOICES
    from selfalign.stages.principle import Principle, PrincipleStage

    be = OpenAIBackend(base_url=url, concurrency=4)
    try:
        assert (be.server.kind, be.max_context, be.server.tokenize, be.supports_logprobs) == \
            ("vllm", 8192, "/tokenize", True)
        stage = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), Principle(seed=1),
                               Report("principle"))
        rec = PromptRecord.model_validate({"prompt": scale.FRAMES[0].format(s="Return the sum of two numbers.")})
        comp = be.generate([stage.render(rec)], stage.params)[0]
        assert comp.finish_reason in ("stop", "length") and comp.completion_tokens > 0
        got = be.choice_logprobs(["Which is better? Better answer:"], list(CHOICES))[0]
        assert set(got) == set(CHOICES) and all(v <= 0 for v in got.values())
    finally:
        be.close()


def test_answers_mix_good_and_spoiled_and_labelled_queries_get_their_labelled_completion(scale):
    pool = scale.labelled()
    by_query = {" ".join(i["query"].split()): i for i in pool}
    assert scale.answer(pool[0]["query"], 1, by_query) == (pool[0]["completion"], pool[0]["finish_reason"])
    q = scale.FRAMES[1].format(s="Read a pickled object from a file.")
    outs = [scale.answer(q, seed, by_query) for seed in range(600)]
    good = sum(1 for text, fin in outs if fin == "stop" and "Read a pickled object" in text and len(text) > 300)
    assert 0.5 < good / len(outs) < 0.8  # about two thirds written well, the rest spoiled
    assert scale.answer(q, 7, by_query) == scale.answer(q, 7, by_query)  # deterministic per seed


def test_the_recipe_cut_after_each_stage_is_a_valid_recipe(scale, tmp_path):
    from selfalign.recipe import load_recipe

    plan = scale.stages(tmp_path / "prompts.jsonl")
    for k in range(1, len(plan) + 1):
        f = tmp_path / f"r{k}.toml"
        f.write_text(scale.recipe_text(tmp_path / "out", "http://127.0.0.1:9/v1", plan[:k]), encoding="utf-8")
        r = load_recipe(f)
        assert [s.label for s in r.stages()] == [scale.label(s) for s in plan[:k]]
        assert r.backend.name == "openai" and r.report.html is False


def test_the_id_check_counts_lost_doubled_and_unknown_records(scale, tmp_path):
    (tmp_path / "principle.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in ("a", "b", "b")))
    (tmp_path / "principle-dropped.jsonl").write_text(json.dumps({"id": "z"}) + "\n")
    got = scale.check_ids([{"id": x} for x in "abc"], tmp_path)
    assert got == {"lost": 1, "twice": 1, "unknown": 1, "ids_checked": 3}
