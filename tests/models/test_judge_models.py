"""The pairwise judge on the embedded model (transformers, float32 on the CPU): its log-probabilities are the
plain forward pass's, and it scores the labelled pairs."""

import math

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


@pytest.mark.slow
def test_embedded_choice_logprobs_are_the_plain_forward_pass_log_softmax_batched_or_not(embedded):
    import torch

    prompts = [judge_prompt(q, a, b, PRINCIPLES, one=False) for q, a, b in PAIRS] + ["Short. Better answer:"]
    got = embedded.choice_logprobs(prompts, list(CHOICES))
    assert embedded.lm.dtype == torch.float32
    for prompt, lp in zip(prompts, got, strict=True):
        ids = embedded.tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.inference_mode():
            ref = torch.log_softmax(embedded.lm(ids).logits[0, -1].float(), -1)
        for choice in CHOICES:
            token = embedded.tok(choice, add_special_tokens=False).input_ids
            assert len(token) == 1  # " A" and " B" are one token each in SmolLM2's tokenizer
            assert lp[choice] == pytest.approx(float(ref[token[0]]), abs=1e-4)
    with pytest.raises(ValueError, match="' Answer B'"):
        embedded.choice_logprobs(["Better answer:"], [" Answer B"])


@pytest.mark.slow
def test_the_judge_on_the_embedded_model(embedded):
    outs = list(judge(pair_records(), embedded, Judge(), PRINCIPLES))
    for out in outs:
        j = out.judge
        assert j["method"] == "logprobs" and math.isfinite(j["score"]) and 0 < j["choice_mass"] <= 1
        assert j["score"] == pytest.approx(sum(j["orders"]) / 2)
    # a 135M model is a weak judge (see benchmarks/judge.py): only the plumbing is asserted, not its verdicts


# -- vLLM on the CPU, float32 like the embedded backend; and a real vLLM OpenAI server -------------------------
