"""OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp, Ollama, OpenAI, any compatible server), via the
`openai` client.

What it promises:
- On start it finds out what the server is and offers (see servers.py) and says so in one line on stderr:
  the kind, the model, the context window and where it came from, how tokens are counted, whether logit bias
  is applied, and how many requests go out at once.
- Token counts are the server's own (its tokenizer endpoint), else those of `tokenizer` (`--tokenizer`: a
  folder, a Hugging Face name in the local cache, or tiktoken:NAME), else estimates that say so:
  tiktoken o200k_base counts times ESTIMATE_MARGIN, rounded up. A tokenizer endpoint that fails mid-run is
  retried like any request, then the run stops with the reason: counts never silently become guesses.
- An unknown context window is an error naming --max-model-len (the `max_context` option), never a default.
- `count_tokens_many` counts a whole chunk at once (one wave of round trips), and remembers recent counts.
- `logit_bias` ({text: bias}) reaches servers that take it, as the token ids of the text's first token (with
  and without a leading space) found with the server's tokenizer once per bias; other servers get none.
- Requests go out concurrently (at most `concurrency` at once; by default as many as the server has slots,
  one for llama-cpp-python, else 8) over one pooled async client, on an event loop the backend owns (in a
  daemon thread), so `generate` stays a plain call. llama.cpp's server is asked to reuse its prompt cache.
- `timeout` is a deadline for each whole attempt (connect, send, headers, body, redirects), not for each socket
  read: a server that trickles bytes is cut off at it, and the attempt counts as a timeout.
- The client retries 429, 5xx, timeouts and resets with exponential backoff and honours Retry-After, up to
  `max_retries` times; a 200 whose body is no completion (not JSON, no choices, no text) is retried as often.
- A request that still fails becomes a Completion with `finish_reason="error"` and a short `error`, which the
  stage reports as a drop reason: nothing is lost, and the run goes on. Except a refusal that every request
  would get too (HTTP 401, 403, or 404 for the model): that stops the run at once (`BackendFailed`), one line
  naming the server; what was finished stays written.
- A completion's body is read in pieces, no further than a cap from its `max_tokens` (`answer_cap`:
  BYTES_PER_TOKEN per token plus ANSWER_SLACK): a longer answer is dropped as a backend error naming the cap,
  so memory stays bounded whatever a server sends.
- `base_url` must be an http(s) URL with a host (ValueError otherwise). `identity` (scheme, host, port, path;
  no credentials) is part of the completion cache's key: two servers serving a same-named model never share
  answers.
- The key is read from an environment variable (or a file) and never logged; the server's URL is only ever
  shown with its credentials masked (`self.base_url`); the real one goes to the HTTP client alone.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from selfalign.backends import replies, servers
from selfalign.backends.base import BackendFailed, Completion, SamplingParams, add_usage, new_usage
from selfalign.io.urls import redact_url

ESTIMATE = "tiktoken:o200k_base"
ESTIMATE_MARGIN = 1.3  # Llama, Qwen and SmolLM tokenizers make 10-30% more tokens of English than o200k_base
COUNT_WAVE = 64  # tokenizer requests in flight at once: a chunk of prompts is one wave
# llama-cpp-python tokenizes one request at a time behind its lock: 8 in flight hide the round trips, more only
# contend (measured, 64 principle prompts on a local server: 0.32 s one by one, 0.15 s 8 at once, 0.43 s 64)
LOCKED_WAVE = 8
REMEMBERED = 256  # recent texts whose count is kept


BYTES_PER_TOKEN = 128  # an answer's body may hold this much per token asked for (JSON-escaped text, fields) ...
ANSWER_SLACK = 1 << 20  # ... plus this; a longer answer is cut off there and dropped (see answer_cap)


class TokenizerFailed(BackendFailed):
    """The server's tokenizer endpoint failed even after retries."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class OpenAIBackend:
    name = "openai"
    chunk_size = 64
    supports_logit_bias = False  # until the server is known: see servers.BIAS
    supports_logprobs = False  # and servers.LOGPROBS

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 api_key_file: str | None = None,
                 concurrency: int | None = None, max_retries: int = 4, timeout: float = 120.0,
                 max_context: int | None = None, tokenizer: str | None = None):
        import httpx
        import openai

        url = base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        check_url(url)
        self.base_url = redact_url(url)  # for messages; `url` itself goes to the HTTP client only
        self.identity = server_identity(url)  # part of the completion cache's key
        key = os.environ.get(api_key_env)
        if api_key_file:
            try:
                key = open(api_key_file, encoding="utf-8").read().strip()  # noqa: SIM115
            except OSError as e:
                raise RuntimeError(f"cannot read the API key file {api_key_file}: {e.strerror}") from None
        self._openai, self._httpx = openai, httpx
        self.max_retries, self.timeout = max_retries, timeout
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = _deadline_client(timeout, max(concurrency or 0, COUNT_WAVE))
        self.client = openai.AsyncOpenAI(base_url=url, api_key=key or "EMPTY", max_retries=max_retries,
                                         timeout=timeout, http_client=self._http)
        self._loop = asyncio.new_event_loop()  # the async clients' pools belong to it: one for the backend's life
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
        self._thread.start()
        self._root = _root(httpx.URL(url))
        self._counted: OrderedDict[str, int] = OrderedDict()
        self._biases: dict[tuple, dict[str, float] | None] = {}
        try:
            self.server = self._run(self._detect(model, max_context is None))
            self._local, counts = self._counter(tokenizer)
            why = self._settle(max_context, concurrency)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            self.close()
            raise RuntimeError(self._refused(e)) from None
        except openai.OpenAIError as e:
            self.close()
            raise RuntimeError(f"cannot reach the server at {self.base_url}: {type(e).__name__}") from None
        except replies.Malformed as e:
            self.close()
            raise RuntimeError(f"the server at {self.base_url} did not list its models: {e}") from None
        except BaseException:
            self.close()
            raise
        _say(f"server: {self.server.label} at {self.base_url}, model {self.model}, context {self.max_context} "
             f"(from {self.server.context_from}), token counts {counts}, logit bias: "
             f"{'yes' if self.supports_logit_bias else 'no'}, {self.concurrency} "
             f"request{'s' * (self.concurrency > 1)} at a time ({why})")

    def _settle(self, max_context: int | None, concurrency: int | None) -> str:
        """Context, logit bias and concurrency from the server and the user's options (the user's win); an
        unknown context is a RuntimeError. Returns why the concurrency is what it is."""
        server = self.server
        if max_context is not None:
            server.context, server.context_from = int(max_context), "--max-model-len"
        elif server.context is None:
            raise RuntimeError(server.no_context(self.base_url))
        self.model, self.max_context = server.model, int(server.context)
        self.supports_logit_bias = server.logit_bias
        self.supports_logprobs = server.kind in servers.LOGPROBS
        self.choice_usage = new_usage()  # one echo request per prompt and choice, tokens from its `usage`
        self.concurrency, why = (max(1, concurrency), "--concurrency") if concurrency else _auto_concurrency(server)
        self._gate = asyncio.Semaphore(self.concurrency)
        self._count_gate = asyncio.Semaphore(LOCKED_WAVE if server.kind == "llama-cpp-python" else COUNT_WAVE)
        return why

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _models(self) -> list[dict]:
        raw = await self.client.models.with_raw_response.list()
        data = replies.body_object(raw.http_response.text)
        models = replies.field_list(data, "data", empty_ok=True)
        return [m for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def _detect(self, model: str | None, need_context: bool) -> servers.Server:
        try:
            served = await self._models()
        except self._openai.NotFoundError:
            served = []  # an API without a model list: --model names the model
        if not model and len(served) > 1:  # Ollama lists every pulled model: picking one would be a guess
            ids = ", ".join(m["id"] for m in served[:6]) + (", ..." if len(served) > 6 else "")
            raise RuntimeError(f"the server at {self.base_url} serves {len(served)} models ({ids}): "
                               "pass --model NAME")
        name = model or (served[0]["id"] if served else "")
        if not name:
            raise RuntimeError(f"the server at {self.base_url} lists no models: pass --model NAME")
        return await servers.detect(self._http, self._root, self._headers, served, name, need_context)

    def _counter(self, tokenizer: str | None) -> tuple[Callable[[str], int] | None, str]:
        """The local counter (None: the server's tokenizer), and how counts are made, in words."""
        from selfalign.text.tokens import token_counter

        if self.server.tokenize:  # the served model's own tokenizer: better than any the user can name
            return None, f"from {self.server.tokenize}" + (f" (--tokenizer {tokenizer} unused)" if tokenizer else "")
        if tokenizer:
            try:
                return token_counter(tokenizer), f"from --tokenizer {tokenizer}"
            except (ImportError, OSError, RuntimeError, ValueError) as e:
                raise RuntimeError(f"--tokenizer {tokenizer}: {e}") from None
        estimate = token_counter(ESTIMATE)
        return (lambda text: math.ceil(estimate(text) * ESTIMATE_MARGIN),
                f"estimated ({ESTIMATE.split(':')[1]} x {ESTIMATE_MARGIN:g}, rounded up: the server has no "
                "tokenizer endpoint; --tokenizer names the model's own)")

    def count_tokens(self, text: str) -> int:
        return self.count_tokens_many([text])[0]

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """Tokens of each text; the server counts all those it has not counted lately at once."""
        if self._local is not None:
            return [self._local(t) for t in texts]
        found = {t: self._counted[t] for t in texts if t in self._counted}
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        if todo:
            async def all_of_them() -> list[list[int]]:
                return list(await asyncio.gather(*(self._tokenize(t, special=True) for t in todo)))

            found.update({t: len(ids) for t, ids in zip(todo, self._run(all_of_them()), strict=True)})
        for t in texts:
            self._counted[t] = found[t]
            self._counted.move_to_end(t)
        while len(self._counted) > REMEMBERED:
            self._counted.popitem(last=False)
        return [found[t] for t in texts]

    async def _tokenize(self, text: str, special: bool) -> list[int]:
        """The server's token ids of `text`, retried as a completion is; TokenizerFailed when it keeps failing."""
        path = self.server.tokenize
        url, body = servers.endpoint(self._root, path), self.server.tokenize_body(text, special)
        why = ""
        for attempt in range(self.max_retries + 1):
            wait = min(0.5 * 2 ** attempt, 8.0)
            try:
                async with self._count_gate:
                    r = await self._http.post(url, json=body, headers=self._headers)
            except self._httpx.TransportError as e:  # connection refused or reset, the deadline passed
                why = type(e).__name__
            else:
                if r.status_code == 200:
                    try:
                        ids = servers.token_ids(r.json())
                    except ValueError:
                        ids = None
                    if ids is not None:
                        return ids
                    why = "an answer without token ids"
                else:
                    why = f"HTTP {r.status_code}"
                    if r.status_code != 429 and r.status_code < 500:
                        break
                    wait = _retry_after(r.headers.get("retry-after")) or wait
            if attempt < self.max_retries:
                await asyncio.sleep(wait)
        tries = attempt + 1
        raise TokenizerFailed(f"the server's tokenizer ({path} at {self.base_url}) failed: {why} "
                              f"({tries} tr{'ies' if tries > 1 else 'y'}); rather than guess token counts the run "
                              "stops: run it again to resume, or pass --tokenizer to count locally")

    def _bias(self, logit_bias: dict[str, float]) -> dict[str, float] | None:
        """{token id: bias} for the first token of each text, with and without a leading space; once per bias."""
        if not logit_bias or not self.supports_logit_bias:
            return None
        key = tuple(sorted(logit_bias.items()))
        if key not in self._biases:
            async def ids() -> dict[str, float] | None:
                bos = await self._tokenize("", special=False) if self.server.kind == "llama-cpp-python" else []
                bias: dict[str, float] = {}
                for text, value in logit_bias.items():
                    for variant in (text, " " + text):
                        tokens = await self._tokenize(variant, special=False)
                        tokens = tokens[len(bos):] if tokens[:len(bos)] == bos else tokens
                        if tokens:
                            bias[str(tokens[0])] = float(value)
                return bias or None

            self._biases[key] = self._run(ids())
        return self._biases[key]

    def _extra(self, params: SamplingParams) -> dict[str, Any] | None:
        """The request's fields beyond the OpenAI client's own, as this server names them."""
        extra: dict[str, Any] = {}
        if self.server.kind in ("llama-server", "llama-cpp-python"):
            extra["repeat_penalty"] = params.repetition_penalty  # their name; llama-cpp-python's default is 1.1
        elif params.repetition_penalty != 1.0:
            extra["repetition_penalty"] = params.repetition_penalty
        if self.server.kind == "llama-server":
            extra["cache_prompt"] = True  # reuse the KV of the prefix a slot already holds
        bias = self._bias(params.logit_bias)
        if bias:
            extra["logit_bias"] = bias
        return extra or None

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        extra = self._extra(params)

        async def all_of_them() -> list[Completion]:
            return list(await asyncio.gather(*(self._one(p, params, extra) for p in prompts)))

        return self._run(all_of_them())

    async def _one(self, prompt: str, params: SamplingParams, extra: dict[str, Any] | None) -> Completion:
        async with self._gate:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))  # a malformed answer may be transient
                try:
                    raw = await self.client.completions.with_raw_response.create(
                        model=self.model, prompt=prompt, max_tokens=params.max_tokens, temperature=params.temperature,
                        top_p=params.top_p, stop=params.stop or None, seed=params.seed, extra_body=extra)
                    return replies.completion(raw.http_response.text, params)
                except replies.Malformed as e:
                    error = str(e)
                except AnswerTooLong as e:  # read no further than the cap: dropped, not retried
                    return replies.failed(str(e))
                except (self._openai.AuthenticationError, self._openai.PermissionDeniedError,
                        self._openai.NotFoundError) as e:  # every other request would get the same: stop the run
                    raise BackendFailed(self._refused(e)) from None
                except self._openai.APITimeoutError:
                    return replies.failed(f"APITimeoutError: no complete answer within {self.timeout:g}s")
                except self._openai.OpenAIError as e:  # the client has retried what is worth retrying
                    status = getattr(e, "status_code", None)
                    return replies.failed(f"{type(e).__name__}{f' {status}' if status else ''}")
                except Exception as e:  # noqa: BLE001 - whatever one request raises is that request's drop reason
                    return replies.failed(type(e).__name__)
        return replies.failed(error)

    def _refused(self, e: Any) -> str:
        """One line for a server that refuses the key (401), the permission (403) or the model (404)."""
        status = getattr(e, "status_code", None)
        why = {401: "the API key was not accepted (set it with --api-key-env or --api-key-file)",
               403: "permission denied for this key",
               404: f"it does not serve the model {getattr(self, 'model', '?')!r} at this address (--model, "
                    "--base-url)"}.get(status, type(e).__name__)
        return f"the server at {self.base_url} refused the request with HTTP {status}: {why}; the run stops"

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[dict[str, float] | None]:
        """See Backend.choice_logprobs: the server echoes `prompt + choice` with each token's log-probability,
        and the last one is the choice's. None for a prompt whose requests failed after the retries."""
        if not self.supports_logprobs:
            raise ValueError(f"the {self.server.label} server gives no exact log-probabilities")

        async def one(prompt: str) -> dict[str, float] | None:
            got = await asyncio.gather(*(self._echo_logprob(prompt, c) for c in choices))
            return None if any(v is None for v in got) else dict(zip(choices, got, strict=True))

        async def all_of_them() -> list[dict[str, float] | None]:
            return list(await asyncio.gather(*(one(p) for p in prompts)))

        return self._run(all_of_them())

    async def _echo_logprob(self, prompt: str, choice: str) -> float | None:
        self.choice_usage["requests"] += 1  # counted once, answered or not (as a failed generate request is)
        async with self._gate:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
                try:
                    raw = await self.client.completions.with_raw_response.create(
                        model=self.model, prompt=prompt + choice, max_tokens=0, temperature=0, logprobs=0, echo=True)
                    data = replies.body_object(raw.http_response.text)
                    add_usage(self.choice_usage, 0, *replies.usage(data))
                    lp = replies.field_list(data, "choices")[0].get("logprobs") or {}
                    tokens, values = lp.get("tokens") or [], lp.get("token_logprobs") or []
                except replies.Malformed:
                    continue
                except (self._openai.AuthenticationError, self._openai.PermissionDeniedError,
                        self._openai.NotFoundError) as e:
                    raise BackendFailed(self._refused(e)) from None
                except Exception:  # noqa: BLE001 - the client has retried what is worth retrying
                    return None
                if not tokens or not values or not isinstance(values[-1], int | float):
                    continue  # malformed: no log-probabilities in the echo
                if tokens[-1] != choice:
                    raise ValueError(f"the choice {choice!r} is not one token of the server's tokenizer after this "
                                     f"prompt (its last token is {tokens[-1]!r}): choose single-token choices")
                return max(float(values[-1]), -9999.0)
        return None

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


def check_url(url: str) -> None:
    """ValueError (one line, credentials masked) unless `url` is an http(s) URL with a host."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as e:
        raise ValueError(f"--base-url {redact_url(url)}: not a URL ({e})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"--base-url {redact_url(url)}: not an http:// or https:// URL with a host, e.g. "
                         "http://127.0.0.1:8000/v1")


def server_identity(url: str) -> str:
    """The server's address as the completion cache keys it: scheme, host, port and path, without credentials,
    query or fragment, the host lower-cased and the port made explicit."""
    import httpx

    u = httpx.URL(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{u.scheme}://{u.host.lower()}:{port}{u.path.rstrip('/')}"


def answer_cap(body: bytes) -> int | None:
    """The most bytes a completion's HTTP body may have: BYTES_PER_TOKEN per token asked for (`max_tokens`),
    plus the prompt's bytes again as many times over when it is echoed with log-probabilities, plus
    ANSWER_SLACK. None when `body` asks for no completion."""
    import json

    try:
        data = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("max_tokens"), int):
        return None
    cap = ANSWER_SLACK + BYTES_PER_TOKEN * max(0, data["max_tokens"])
    if data.get("echo"):
        cap += BYTES_PER_TOKEN * len(str(data.get("prompt", "")).encode("utf-8"))
    return cap


class AnswerTooLong(Exception):
    """An answer's body passed its cap (answer_cap): reading stopped there. Made an openai.OpenAIError by
    `_too_long`, so that the openai client passes it on at once instead of retrying."""


@functools.cache
def _too_long() -> type[Exception]:
    """AnswerTooLong as an openai.OpenAIError too (the openai package is imported only when the backend is)."""
    import openai

    return type("AnswerTooLong", (AnswerTooLong, openai.OpenAIError), {})


def _deadline_client(timeout: float, connections: int) -> Any:
    """An httpx.AsyncClient whose every `send` (connect, request, headers, body and redirects; the backend never
    streams) is over by `timeout` seconds, or raises httpx.ReadTimeout, which the openai client retries. A
    completion's body is read in pieces and no further than its cap (answer_cap): past it, AnswerTooLong."""
    import httpx

    too_long = _too_long()

    class DeadlineClient(httpx.AsyncClient):
        async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            cap = answer_cap(request.content) if request.method == "POST" and not kwargs.get("stream") and \
                request.url.path.endswith("/completions") else None
            try:
                async with asyncio.timeout(timeout):
                    if cap is None:
                        return await super().send(request, **kwargs)
                    response = await super().send(request, **{**kwargs, "stream": True})
                    try:
                        parts, size = [], 0
                        async for piece in response.aiter_bytes():
                            size += len(piece)
                            if size > cap:
                                raise too_long(f"the answer is longer than {cap:,} bytes, the cap for "
                                               f"{json_max_tokens(request.content)} tokens; the rest was not read")
                            parts.append(piece)
                        response._content = b"".join(parts)  # what httpx's read() would have set
                    finally:
                        await response.aclose()
                    return response
            except TimeoutError:
                raise httpx.ReadTimeout(f"no complete answer within {timeout:g}s", request=request) from None

    # the client, not a custom transport, so that proxies from the environment still apply
    return DeadlineClient(timeout=timeout, follow_redirects=True,
                          limits=httpx.Limits(max_connections=None, max_keepalive_connections=connections))


def json_max_tokens(body: bytes) -> Any:
    import json

    try:
        return json.loads(body).get("max_tokens")
    except (ValueError, AttributeError, RecursionError):
        return "?"


def _root(url: Any) -> Any:
    """The server's own address: the API URL without its /v1 (query and credentials kept)."""
    path = url.path.rstrip("/")
    return url.copy_with(path=path.removesuffix("/v1") or "/")


def _auto_concurrency(server: servers.Server) -> tuple[int, str]:
    if server.kind == "llama-cpp-python":
        # it runs one request at a time behind a lock: more in flight only wait inside the server, where their
        # wait counts against --request-timeout (measured: 8 principle prompts took 11 s at 1, 2 or 8 at once)
        return 1, "the server runs one at a time"
    if server.slots:
        return server.slots, "the server's slots"
    return 8, "the default; --concurrency sets it"


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), 30.0) if value else None
    except ValueError:
        return None
