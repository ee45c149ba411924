"""The openai backend against a real llama-cpp-python server running the embedded SmolLM2 GGUF (n_ctx 2048).

Run with `make test-llamacpp` (needs `llama-cpp-python[server]`, built as ENVIRONMENT.md says). The server
starts in a few seconds.
"""

import math

import pytest

from support import jsonl, run_cli, write_jsonl
from support.servers import ServerFailed, serving

pytestmark = pytest.mark.llamacpp
pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]: make test-llamacpp")

N_CTX = 2048
QUESTIONS = ["Explain why the sky is blue.", "What are good habits for saving money?"]
# the 135M model's answers rarely pass the quality gates (tested on their own): these tests check the plumbing
PLUMBING = ["--keep", "truncated,template_debris,persona_leak,exemplar_leak,unwarranted_refusal,repetition_loop,"
            "too_short,wrong_language,restates_question,off_topic,answer_in_thoughts,miscited_principle"]
TEXTS = ["Why is the sky blue?", "def add(a, b):\n    return a + b  # sum", "Über den Wolken muss die Freiheit "
         "wohl grenzenlos sein.", "Photosynthesis turns sunlight, water and CO2 into glucose and O2.",
         "東京は日本の首都です。", "<|im_start|>user\nhello<|im_end|>"]


@pytest.fixture(scope="module")
def server():
    try:
        with serving("llamacpp", context=N_CTX, timeout=120) as url:
            yield url
    except ServerFailed as e:
        pytest.fail(str(e))


def _server_count(url: str, text: str) -> int:
    import httpx

    r = httpx.post(url.removesuffix("/v1") + "/extras/tokenize", json={"input": text}, timeout=30)
    r.raise_for_status()
    return len(r.json()["tokens"])


@pytest.fixture(scope="module")
def backend(server):
    from selfalign.backends import load_backend

    b = load_backend("openai", base_url=server)
    yield b
    b.close()


def test_the_backend_finds_llama_cpp_python_and_its_context(backend):
    s = backend.server
    assert (s.kind, s.context, s.context_from, s.tokenize) == ("llama-cpp-python", N_CTX, "the server", "/extras/tokenize")
    assert backend.max_context == N_CTX and backend.model == "smollm2"
    assert backend.supports_logit_bias and backend.concurrency == 1


def test_counts_are_the_servers_own_and_not_the_estimate(backend, server):
    from selfalign.text.tokens import token_counter

    counts = [_server_count(server, t) for t in TEXTS]
    assert [backend.count_tokens(t) for t in TEXTS] == counts
    assert backend.count_tokens_many([*TEXTS, TEXTS[0]]) == [*counts, counts[0]]
    o200k = token_counter("tiktoken:o200k_base")
    estimates = [math.ceil(o200k(t) * 1.3) for t in TEXTS]
    assert estimates != counts and [o200k(t) for t in TEXTS] != counts  # what the server says is not a guess


def test_logit_bias_reaches_the_model(backend):
    from selfalign.backends.base import SamplingParams

    prompt = "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"
    plain = backend.generate([prompt], SamplingParams(max_tokens=4, temperature=0))[0]
    first = plain.text.split()[0]
    biased = backend.generate([prompt], SamplingParams(max_tokens=4, temperature=0, logit_bias={first: -100}))[0]
    assert plain.finish_reason != "error" and biased.finish_reason != "error"
    assert not biased.text.startswith(first), (plain.text, biased.text)


def test_principle_keeps_records_and_drops_an_overlong_prompt_with_the_servers_count(tmp_path, server):
    from selfalign.assets import load_exemplars, load_principles
    from selfalign.text.templates import principle_prefix, principle_prompt

    long = " ".join(["word"] * 3000)
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": q} for q in [QUESTIONS[0], long, QUESTIONS[1]]])
    proc = run_cli("principle", str(src), "--backend", "openai", "--base-url", server, "--max-tokens", "64",
                   "--seed", "1", "--no-cache", *PLUMBING, "--dropped", str(tmp_path / "d.jsonl"), timeout=900)
    kept, dropped = jsonl(proc.stdout), jsonl(tmp_path / "d.jsonl")
    assert len(kept) + len(dropped) == 3
    assert kept, [d["drop_reason"] for d in dropped]
    assert all(r["provenance"][-1]["sampling"]["logit_bias"] == {"Sorry": -100.0} for r in kept)
    overlong = [d for d in dropped if d["record"]["prompt"] == long]
    assert [d["drop_reason"] for d in overlong] == ["prompt_too_long"]
    rendered = principle_prompt(principle_prefix(load_principles(), load_exemplars(), "Sage"), long, "Sage")
    assert overlong[0]["detail"] == f"{_server_count(server, rendered)} prompt tokens + 64 new > context {N_CTX}"
    assert f"server: llama.cpp (llama-cpp-python) at {server}, model smollm2, context {N_CTX} (from the server), " \
           "token counts from /extras/tokenize, logit bias: yes, 1 request at a time" in proc.stderr
