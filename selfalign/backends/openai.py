"""OpenAI-compatible HTTP backend (`vllm serve`, OpenAI, any compatible server), via the `openai` client.

What it promises:
- Requests go out concurrently (at most `concurrency` at once) over one pooled async client, on an event loop
  the backend owns (in a daemon thread), so `generate` stays a plain call.
- `timeout` is a deadline for each whole attempt (connect, send, headers, body, redirects), not for each socket
  read: a server that trickles bytes is cut off at it, and the attempt counts as a timeout.
- The client retries 429, 5xx, timeouts and resets with exponential backoff and honours Retry-After, up to
  `max_retries` times; a 200 whose body is no completion (not JSON, no choices, no text) is retried as often.
- A request that still fails becomes a Completion with `finish_reason="error"` and a short `error`, which the
  stage reports as a drop reason: nothing is lost, and the run goes on.
- The key is read from an environment variable (or a file) and never logged; the server's URL is only ever
  shown with its credentials masked (`self.base_url`); the real one goes to the HTTP client alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

from selfalign.backends.base import Completion, SamplingParams, cut_at_stop
from selfalign.urls import redact_url


class Malformed(ValueError):
    """A 200 whose body is not what the API promises."""


class OpenAIBackend:
    name = "openai"
    chunk_size = 64
    supports_logit_bias = False  # needs the server's token ids; not attempted over HTTP

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 api_key_file: str | None = None,
                 concurrency: int = 8, max_retries: int = 4, timeout: float = 120.0,
                 max_context: int | None = None):
        import openai

        url = base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        self.base_url = redact_url(url)  # for messages; `url` itself goes to the HTTP client only
        key = os.environ.get(api_key_env)
        if api_key_file:
            try:
                key = open(api_key_file, encoding="utf-8").read().strip()  # noqa: SIM115
            except OSError as e:
                raise RuntimeError(f"cannot read the API key file {api_key_file}: {e.strerror}") from None
        self._openai = openai
        self.concurrency, self.max_retries, self.timeout = max(1, concurrency), max_retries, timeout
        self._http = _deadline_client(timeout, self.concurrency)
        self.client = openai.AsyncOpenAI(base_url=url, api_key=key or "EMPTY", max_retries=max_retries,
                                         timeout=timeout, http_client=self._http)
        self._gate = asyncio.Semaphore(self.concurrency)
        self._loop = asyncio.new_event_loop()  # the async clients' pools belong to it: one for the backend's life
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
        self._thread.start()
        self._tokenize_url = url.rstrip("/").removesuffix("/v1") + "/tokenize"
        self._estimate = None
        served: list[dict] = []
        if not model or max_context is None:
            try:
                served = self._run(self._models())
            except openai.OpenAIError as e:
                self.close()
                raise RuntimeError(f"cannot reach the server at {self.base_url}: {type(e).__name__}") from None
            except Malformed as e:
                self.close()
                raise RuntimeError(f"the server at {self.base_url} did not list its models: {e}") from None
        self.model = model or (served[0]["id"] if served else "")
        if max_context is None and served:
            entry = next((m for m in served if m["id"] == self.model), served[0])
            max_context = _count(entry.get("max_model_len"))
        self.max_context = int(max_context or 4096)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _models(self) -> list[dict]:
        raw = await self.client.models.with_raw_response.list()
        data = _json(raw.http_response.text)
        models = _list(data, "data", empty_ok=True)
        return [m for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def count_tokens(self, text: str) -> int:
        if self._estimate is None:
            try:
                r = self._run(self._http.post(self._tokenize_url, json={"model": self.model, "prompt": text}))
                if r.status_code == 200 and "count" in r.json():
                    return int(r.json()["count"])
            except Exception:  # noqa: BLE001 - a server without /tokenize: estimate instead
                pass
            from selfalign.tokens import token_counter

            self._estimate = token_counter("tiktoken:o200k_base")
        return self._estimate(text)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        async def all_of_them() -> list[Completion]:
            return list(await asyncio.gather(*(self._one(p, params) for p in prompts)))

        return self._run(all_of_them())

    async def _one(self, prompt: str, params: SamplingParams) -> Completion:
        extra = {"repetition_penalty": params.repetition_penalty} if params.repetition_penalty != 1.0 else None
        async with self._gate:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))  # a malformed answer may be transient
                try:
                    raw = await self.client.completions.with_raw_response.create(
                        model=self.model, prompt=prompt, max_tokens=params.max_tokens, temperature=params.temperature,
                        top_p=params.top_p, stop=params.stop or None, seed=params.seed, extra_body=extra)
                    return _completion(raw.http_response.text, params)
                except Malformed as e:
                    error = str(e)
                except self._openai.APITimeoutError:
                    return _failed(f"APITimeoutError: no complete answer within {self.timeout:g}s")
                except self._openai.OpenAIError as e:  # the client has retried what is worth retrying
                    status = getattr(e, "status_code", None)
                    return _failed(f"{type(e).__name__}{f' {status}' if status else ''}")
                except Exception as e:  # noqa: BLE001 - whatever one request raises is that request's drop reason
                    return _failed(type(e).__name__)
        return _failed(error)

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shutdown() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()  # requests still in flight after an interrupted generate
            await self.client.close()
            await self._http.aclose()
            await asyncio.get_running_loop().shutdown_default_executor()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()


def _deadline_client(timeout: float, connections: int) -> Any:
    """An httpx.AsyncClient whose every `send` (connect, request, headers, body and redirects; the backend never
    streams) is over by `timeout` seconds, or raises httpx.ReadTimeout, which the openai client retries."""
    import httpx

    class DeadlineClient(httpx.AsyncClient):
        async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            try:
                async with asyncio.timeout(timeout):
                    return await super().send(request, **kwargs)
            except TimeoutError:
                raise httpx.ReadTimeout(f"no complete answer within {timeout:g}s", request=request) from None

    # the client, not a custom transport, so that proxies from the environment still apply
    return DeadlineClient(timeout=timeout, follow_redirects=True,
                          limits=httpx.Limits(max_connections=None, max_keepalive_connections=connections))


def _failed(error: str) -> Completion:
    return Completion(text="", finish_reason="error", error=error)


def _json(body: str) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise Malformed("malformed response: not JSON") from None
    if not isinstance(data, dict):
        raise Malformed(f"malformed response: a JSON {type(data).__name__}, not an object")
    return data


def _list(data: dict, name: str, empty_ok: bool = False) -> list:
    """`data[name]`, a list (non-empty unless `empty_ok`), or Malformed saying how it falls short."""
    value = data.get(name)
    if not isinstance(value, list) or not (value or empty_ok):
        why = ("missing" if name not in data else "null" if value is None else "empty" if value == []
               else f"a {type(value).__name__}, not a list")
        raise Malformed(f"malformed response: {name} is {why}")
    return value


def _completion(body: str, params: SamplingParams) -> Completion:
    """The Completion in a 200's body, or Malformed saying what is wrong with it."""
    data = _json(body)
    choice = _list(data, "choices")[0]
    if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
        raise Malformed("malformed response: the choice has no text")
    try:
        choice["text"].encode("utf-8")
    except UnicodeEncodeError:
        raise Malformed("malformed response: the text holds a lone surrogate") from None
    text, _ = cut_at_stop(choice["text"], params.stop)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Completion(text=text, finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                      prompt_tokens=_count(usage.get("prompt_tokens")),
                      completion_tokens=_count(usage.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
