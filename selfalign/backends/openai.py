"""OpenAI-compatible HTTP backend (`vllm serve`, OpenAI, any compatible server), via the `openai` client.

Requests go out concurrently (`concurrency`) over one pooled client; the client retries 429, 5xx,
timeouts and resets with exponential backoff and honours Retry-After. A request that still fails becomes
a Completion with `finish_reason="error"`, which the stage reports as a drop reason: nothing is lost.
The key is read from an environment variable and never logged.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from selfalign.backends.base import Completion, SamplingParams, cut_at_stop


class OpenAIBackend:
    name = "openai"
    chunk_size = 64
    supports_logit_bias = False  # needs the server's token ids; not attempted over HTTP

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 api_key_file: str | None = None,
                 concurrency: int = 8, max_retries: int = 4, timeout: float = 120.0,
                 max_context: int | None = None, **_: Any):
        import httpx
        import openai

        self._openai = openai
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        key = os.environ.get(api_key_env)
        if api_key_file:
            try:
                key = open(api_key_file, encoding="utf-8").read().strip()  # noqa: SIM115
            except OSError as e:
                raise RuntimeError(f"cannot read the API key file {api_key_file}: {e.strerror}") from None
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key or "EMPTY",
                                    max_retries=max_retries, timeout=timeout)
        self._http = httpx.Client(timeout=timeout)
        self.concurrency = max(1, concurrency)
        served = None
        if not model or max_context is None:
            try:
                served = self.client.models.list().data
            except openai.OpenAIError as e:
                raise RuntimeError(f"cannot reach the server at {self.base_url}: {type(e).__name__}") from None
        self.model = model or (served[0].id if served else "")
        if max_context is None and served:
            entry = next((m for m in served if m.id == self.model), served[0])
            max_context = getattr(entry, "max_model_len", None) or (entry.model_extra or {}).get("max_model_len")
        self.max_context = int(max_context or 4096)
        self._tokenize_url = self.base_url.rstrip("/").removesuffix("/v1") + "/tokenize"
        self._estimate = None

    def count_tokens(self, text: str) -> int:
        if self._estimate is None:
            try:
                r = self._http.post(self._tokenize_url, json={"model": self.model, "prompt": text})
                if r.status_code == 200 and "count" in r.json():
                    return int(r.json()["count"])
            except Exception:  # noqa: BLE001 - a server without /tokenize: estimate instead
                pass
            from selfalign.tokens import token_counter

            self._estimate = token_counter("tiktoken:o200k_base")
        return self._estimate(text)

    def _one(self, prompt: str, params: SamplingParams) -> Completion:
        try:
            r = self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=params.max_tokens, temperature=params.temperature,
                top_p=params.top_p, stop=params.stop or None, seed=params.seed,
                extra_body={"repetition_penalty": params.repetition_penalty}
                if params.repetition_penalty != 1.0 else None,
            )
        except self._openai.OpenAIError as e:
            status = getattr(e, "status_code", None)
            return Completion(text="", finish_reason="error",
                              error=f"{type(e).__name__}{f' {status}' if status else ''}")
        choice = r.choices[0]
        text, _ = cut_at_stop(choice.text or "", params.stop)
        usage = r.usage
        return Completion(text=text, finish_reason="length" if choice.finish_reason == "length" else "stop",
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self._one(p, params), prompts))

    def close(self) -> None:
        self.client.close()
        self._http.close()
