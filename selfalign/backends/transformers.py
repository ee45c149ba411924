"""Embedded backend: transformers on CPU (or a GPU when present), no network.

Speed comes from four things: the prompt prefix shared by a call's prompts (principles + exemplars)
is computed once and its KV cache reused by every batch; prompts are batched by length; each sequence
stops at its stop sequence instead of running to the token limit; and that check decodes only each row's
last few tokens (transformers' own `stop_strings` maps every stop string over the whole vocabulary on every
call: about 5 s a call for SmolLM2's 49k tokens on 2 cores).

On a CPU a stage hands over `chunk_size` = 8 prompts a call, so that the first records of a long principle
prompt are written within a minute or so on 2 cores; on a GPU, 64.
"""

from __future__ import annotations

from typing import Any

from selfalign.backends.base import (Completion, SamplingParams, add_usage, choice_token_ids, cut_at_stop,
                                     new_usage)
from selfalign.io.paths import resolve_model

MIN_SHARED_PREFIX = 32  # tokens; below this, reuse is not worth a cache copy
ATTENTION = "selfalign_gqa_sdpa"


def _register_attention() -> None:
    """SDPA that keeps grouped-query K/V unexpanded (`enable_gqa`), with a padding mask too.

    transformers' own SDPA path expands K/V to every query head whenever a mask is present, which copies
    the whole KV cache on every decoding step; with a long shared prefix that copy dominated the run.
    """
    import torch
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    def gqa_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                 scaling: float | None = None, **_: Any) -> tuple[Any, None]:
        mask = attention_mask[:, :, :, : key.shape[-2]] if attention_mask is not None else None
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling,
            is_causal=mask is None and query.shape[2] > 1, enable_gqa=key.shape[1] != query.shape[1])
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(ATTENTION, gqa_sdpa)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def common_prefix_len(seqs: list[list[int]]) -> int:
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


class StopAtText:
    """A stopping criterion: a row is done once its decoded tail holds one of `stops`.

    Each step decodes only the last few new tokens of each row (every token decodes to at least one character
    here, so the longest stop string plus two tokens covers a stop that ends on this step)."""

    def __init__(self, tok: Any, stops: list[str], start: int):
        self.tok, self.stops, self.start = tok, [s for s in stops if s], start
        self.tail = max((len(s) for s in self.stops), default=0) + 2

    def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
        import torch

        new = input_ids[:, self.start:]
        tails = self.tok.batch_decode(new[:, -self.tail:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in tails], device=input_ids.device)


class TransformersBackend:
    name = "transformers"
    supports_logit_bias = True
    supports_logprobs = True  # choice_logprobs from the logits
    chunk_size = 64  # sorted by length inside, then run `batch_size` at a time (8 on a CPU: see the docstring)

    def __init__(self, model: str | None = None, batch_size: int = 16, device: str | None = None,
                 dtype: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from selfalign.threads import use_free_cores

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        use_free_cores()
        self._torch = torch
        self.model = resolve_model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (
            torch.bfloat16 if self.device.startswith("cuda") else torch.float32)
        self.tok = AutoTokenizer.from_pretrained(self.model)
        _register_attention()
        self.lm = AutoModelForCausalLM.from_pretrained(self.model, dtype=torch_dtype).to(self.device).eval()
        if getattr(self.lm.config, "num_key_value_heads", None) not in (None, self.lm.config.num_attention_heads):
            self.lm.set_attn_implementation(ATTENTION)
        self.batch_size = batch_size
        if not self.device.startswith("cuda"):
            self.chunk_size = 8
        self.max_context = int(getattr(self.lm.config, "max_position_embeddings", 2048))
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self._prefix: tuple[int, ...] = ()
        self._prefix_cache: Any = None
        self.stats = {"prefix_tokens_reused": 0, "prefix_computations": 0}
        self.choice_usage = new_usage()  # one row of a forward pass per prompt scored

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False).input_ids)

    def close(self) -> None:
        self._prefix_cache = None

    # -- shared prefix -------------------------------------------------------------------------
    def _shared_prefix(self, ids: list[list[int]]) -> tuple[int, ...]:
        """The prefix to reuse: the cached one if every prompt extends it, else the batch's own."""
        if self._prefix and all(len(s) > len(self._prefix) and tuple(s[: len(self._prefix)]) == self._prefix
                                for s in ids):
            return self._prefix
        if len(ids) < 2:
            return ()
        n = min(common_prefix_len(ids), min(len(s) for s in ids) - 1)  # keep >= 1 new token per row
        if n < MIN_SHARED_PREFIX:
            return ()
        prefix = tuple(ids[0][:n])
        torch = self._torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.lm.config)
        with torch.inference_mode():
            self.lm(torch.tensor([prefix], device=self.device), past_key_values=cache, use_cache=True)
        self._prefix, self._prefix_cache = prefix, cache
        self.stats["prefix_computations"] += 1
        return prefix

    def _batch_cache(self, batch: int, length: int) -> Any:
        """A preallocated cache for one batch, holding the shared prefix in every row.

        Preallocated (static) because a growing cache re-copies all of its keys and values on every step,
        which with a long prefix costs more than the model itself.
        """
        from transformers import StaticCache

        cache = StaticCache(config=self.lm.config, max_cache_len=length)
        for layer, src in zip(cache.layers, self._prefix_cache.layers, strict=True):
            k, v = src.keys, src.values
            layer.update(k.expand(batch, *k.shape[1:]), v.expand(batch, *v.shape[1:]))
        return cache

    # -- choice log-probabilities --------------------------------------------------------------
    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float] | None]:
        """Log-softmax (float32, whole vocabulary) of the raw next-token logits after each prompt, read at each
        choice's token; see the Backend protocol. One forward pass per batch of prompts sorted by length, right-
        padded (a causal model's real tokens never see the pads after them), no shared-prefix cache: exactness
        first."""
        torch = self._torch
        encode = lambda text: self.tok(text, add_special_tokens=False).input_ids  # noqa: E731
        rows = [choice_token_ids(encode, p, choices) for p in prompts]
        if any(not ids for ids, _ in rows):
            raise ValueError("an empty prompt has no next token to score")
        order = sorted(range(len(prompts)), key=lambda i: len(rows[i][0]))
        results: list[dict[str, float] | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start: start + self.batch_size]
            width = max(len(rows[i][0]) for i in batch)
            x = torch.tensor([rows[i][0] + [self.pad_id] * (width - len(rows[i][0])) for i in batch],
                             device=self.device)
            mask = torch.tensor([[1] * len(rows[i][0]) + [0] * (width - len(rows[i][0])) for i in batch],
                                device=self.device)
            last = sorted({len(rows[i][0]) - 1 for i in batch})  # only these positions' logits are computed
            with torch.inference_mode():
                logits = self.lm(x, attention_mask=mask, use_cache=False,
                                 logits_to_keep=torch.tensor(last, device=self.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for r, i in enumerate(batch):
                lp = logprobs[r, last.index(len(rows[i][0]) - 1)]
                results[i] = {c: float(lp[t]) for c, t in zip(choices, rows[i][1], strict=True)}
        add_usage(self.choice_usage, len(rows), sum(len(ids) for ids, _ in rows))
        return results

    # -- generation ----------------------------------------------------------------------------
    def _bias(self, logit_bias: dict[str, float]) -> dict[tuple[int, ...], float] | None:
        bias: dict[tuple[int, ...], float] = {}
        for text, value in logit_bias.items():
            for variant in (text, " " + text):
                ids = self.tok(variant, add_special_tokens=False).input_ids
                if ids:
                    bias[(ids[0],)] = float(value)
        return bias or None

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        torch = self._torch
        if params.seed is not None:
            torch.manual_seed(params.seed)
        ids = [self.tok(p, add_special_tokens=False).input_ids for p in prompts]
        prefix = self._shared_prefix(ids)
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start: start + self.batch_size]
            outs = self._generate_batch([ids[i] for i in batch], prefix, params)
            for i, c in zip(batch, outs, strict=True):
                results[i] = c
        return [r for r in results if r is not None]

    def _generate_batch(self, rows: list[list[int]], prefix: tuple[int, ...], params: SamplingParams
                        ) -> list[Completion]:
        torch = self._torch
        p = len(prefix)
        suffixes = [r[p:] for r in rows]
        width = max(len(s) for s in suffixes)
        # pads sit between the shared prefix and each row's own tokens, masked out; positions follow the mask
        input_ids = [list(prefix) + [self.pad_id] * (width - len(s)) + s for s in suffixes]
        mask = [[1] * p + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
        kwargs: dict[str, Any] = {}
        if prefix:
            kwargs["past_key_values"] = self._batch_cache(len(rows), p + width + params.max_tokens)
            self.stats["prefix_tokens_reused"] += p * len(rows)
        sampling = params.temperature > 0
        if sampling:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if any(params.stop):
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([StopAtText(self.tok, params.stop, len(input_ids[0]))])
        bias = self._bias(params.logit_bias)
        if bias:
            kwargs["sequence_bias"] = bias
        x = torch.tensor(input_ids, device=self.device)
        with torch.inference_mode():
            out = self.lm.generate(
                x, attention_mask=torch.tensor(mask, device=self.device), max_new_tokens=params.max_tokens,
                repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
                pad_token_id=self.pad_id, **kwargs,
            )
        eos = self.lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        completions = []
        for row, gen in zip(rows, out[:, x.shape[1]:].tolist(), strict=True):
            n = len(gen)
            hit_eos = False
            for j, t in enumerate(gen):
                if t in eos_ids:
                    n, hit_eos = j, True
                    break
            gen = gen[:n]
            while gen and gen[-1] == self.pad_id and self.pad_id not in eos_ids:
                gen.pop()
            text, hit_stop = cut_at_stop(self.tok.decode(gen, skip_special_tokens=True), params.stop)
            finished = hit_stop or hit_eos or len(gen) < params.max_tokens
            completions.append(Completion(text=text, finish_reason="stop" if finished else "length",
                                          prompt_tokens=len(row), completion_tokens=len(gen)))
        return completions
