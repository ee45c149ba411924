"""What answers at an OpenAI-compatible URL: which server, its context window, its tokenizer, what it accepts.

What it promises:
- `detect` asks a handful of cheap questions at once, each cut off after `PROBE_TIMEOUT` seconds; a 404, an
  error page, a body of the wrong shape or a refused connection is an answer ("not this kind"), so detection
  never hangs and never fails a run by itself.
- It knows vLLM, SGLang, llama.cpp's `llama-server`, llama-cpp-python's server and Ollama by their own
  endpoints; anything else is "an OpenAI-compatible API" that offers what its model list says and no more.
- The context window is the server's own number (or None: the backend then stops with `Server.no_context`,
  never a guess). A tokenizer endpoint is used only once it has answered a probe with token ids.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

PROBE_TIMEOUT = 5.0  # seconds for one probe; the probes of a wave run at once
# llama-cpp-python reports its n_ctx only when it refuses a prompt: this many one-token words are over any
# context it is likely to run with, and it refuses them after tokenizing, before evaluating (0.13 s measured)
LONG_PROBE_WORDS = 262_144

LABELS = {
    "vllm": "vLLM", "sglang": "SGLang", "llama-server": "llama.cpp (llama-server)",
    "llama-cpp-python": "llama.cpp (llama-cpp-python)", "ollama": "Ollama", "other": "an OpenAI-compatible API",
}
# where each kind may have a tokenizer endpoint (its request body: Server.tokenize_body), in the order tried
TOKENIZE = {"vllm": ["/tokenize"], "sglang": ["/tokenize", "/v1/tokenize"], "llama-server": ["/tokenize"],
            "llama-cpp-python": ["/extras/tokenize"], "other": ["/tokenize"], "ollama": []}
BIAS = {"vllm", "sglang", "llama-server", "llama-cpp-python"}  # accept OpenAI `logit_bias` {"token id": bias}
# give exact prompt log-probabilities (`echo` with `logprobs`, raw: before any sampling processing), for the judge;
# others get a sampled vote (llama.cpp's servers have no echo, and a top-20 list misses a choice ranked lower)
LOGPROBS = {"vllm"}


@dataclass
class Server:
    kind: str  # a key of LABELS
    model: str
    context: int | None = None  # tokens a prompt and its answer may fill; None: the server does not say
    context_from: str = ""  # "the server", or the flag that set it
    tokenize: str | None = None  # path of the tokenizer endpoint that answered, e.g. "/extras/tokenize"
    logit_bias: bool = False  # takes `logit_bias` by token id (and we can find the ids: needs `tokenize`)
    slots: int | None = None  # requests it runs at once, where it says
    hint: str = ""  # how to learn or set the context window, where it is unknown

    @property
    def label(self) -> str:
        return LABELS[self.kind]

    def no_context(self, url: str) -> str:
        """The one-line error for an unknown context window."""
        how = self.hint or "pass --max-model-len N, the model's context length as the server runs it"
        return f"{self.label} at {url} does not say the context window of model {self.model!r}: {how}"

    def tokenize_body(self, text: str, special: bool) -> dict[str, Any]:
        """The tokenizer request for `text`; `special`: with the special tokens a prompt gets (BOS)."""
        if self.kind == "llama-server":
            return {"content": text, "add_special": special}
        if self.kind == "llama-cpp-python":
            return {"model": self.model, "input": text}  # always with BOS where the model adds one
        return {"model": self.model, "prompt": text, "add_special_tokens": special}


def token_ids(data: Any) -> list[int] | None:
    """The token ids in a tokenizer's answer, or None if it holds none."""
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if isinstance(tokens, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        return tokens
    return None


def endpoint(root: Any, path: str) -> Any:
    """The URL of `path` (e.g. "/tokenize") on the server at `root` (an httpx.URL)."""
    return root.copy_with(path=root.path.rstrip("/") + path)


def count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def detect(http: Any, root: Any, headers: dict[str, str], served: list[dict], model: str,
                 need_context: bool) -> Server:
    """What `root` (an httpx.URL, the server's address without /v1) is, for `model` in its list `served`.
    `need_context`: find the context window even where that costs a request (llama-cpp-python)."""
    ask = _Asker(http, root, headers)
    entry = next((m for m in served if m.get("id") == model), served[0] if len(served) == 1 else {})
    owners = {m.get("owned_by") for m in served}
    answers = await asyncio.gather(ask.get("/props"), ask.get("/version"), ask.get("/api/version"),
                                   ask.get("/get_model_info"), ask.post("/extras/tokenize", {"model": model, "input": "Hi"}))
    props, version, api_version, model_info, extras = [a if isinstance(a, dict) else {} for a in answers]
    listed = count(entry.get("max_model_len"))
    settings = props.get("default_generation_settings")
    if isinstance(settings, dict) or "llamacpp" in owners:
        server = Server("llama-server", model, count((settings or {}).get("n_ctx")) or listed,
                        slots=count(props.get("total_slots")),
                        hint="pass --max-model-len N, the server's --ctx-size divided by its --parallel slots")
    elif token_ids(extras) is not None:
        server = Server("llama-cpp-python", model, hint="pass --max-model-len N, the --n_ctx the server was "
                        "started with")
        server.tokenize = "/extras/tokenize"
        if need_context:
            server.context = await _refused_length(ask, model)
    elif "model_path" in model_info or "sglang" in owners:
        server = Server("sglang", model, listed)
        if server.context is None:
            info = await ask.get("/get_server_info")
            server.context = count(info.get("context_length")) if isinstance(info, dict) else None
    elif isinstance(api_version.get("version"), str):
        server = await _ollama(ask, model)
    elif "vllm" in owners or (isinstance(version.get("version"), str) and listed):
        server = Server("vllm", model, listed)
    else:
        server = Server("other", model, listed)
    if server.context is not None:
        server.context_from = "the server"
    if server.tokenize is None:
        for path in TOKENIZE[server.kind]:
            if token_ids(await ask.post(path, server.tokenize_body("Hi", True))) is not None:
                server.tokenize = path
                break
    server.logit_bias = server.kind in BIAS and server.tokenize is not None
    return server


async def _refused_length(ask: _Asker, model: str) -> int | None:
    """llama-cpp-python's n_ctx, from its refusal of an over-long prompt (HTTP 400 "This model's maximum
    context length is N tokens", from llama.py's "exceed context window of N")."""
    data = await ask.post("/v1/completions", {"model": model, "prompt": "a " * LONG_PROBE_WORDS, "max_tokens": 1},
                          ok=(400,), timeout=6 * PROBE_TIMEOUT)
    error = data.get("error") if isinstance(data, dict) else None
    message = str(error.get("message") if isinstance(error, dict) else error)
    found = re.search(r"maximum context length is (\d+)|exceed context window of (\d+)", message)
    return count(int(found.group(1) or found.group(2))) if found else None


async def _ollama(ask: _Asker, model: str) -> Server:
    """Ollama runs a model with its `num_ctx` and silently cuts longer prompts: the context is num_ctx where
    the model sets it, else unknown (the default depends on the Ollama version and OLLAMA_CONTEXT_LENGTH)."""
    shown = await ask.post("/api/show", {"model": model, "name": model})
    shown = shown if isinstance(shown, dict) else {}
    found = re.search(r"^\s*num_ctx\s+(\d+)", str(shown.get("parameters") or ""), re.MULTILINE)
    info = shown.get("model_info") if isinstance(shown.get("model_info"), dict) else {}
    trained = next((count(v) for k, v in info.items() if k.endswith(".context_length")), None)
    hint = ("Ollama silently cuts prompts beyond the model's num_ctx, and this model sets none: set it with "
            "`PARAMETER num_ctx N` in a Modelfile (or OLLAMA_CONTEXT_LENGTH=N where the server starts), then "
            f"pass --max-model-len N{f' (the model was trained for {trained} tokens)' if trained else ''}")
    return Server("ollama", model, count(int(found.group(1))) if found else None, hint=hint)


class _Asker:
    """GET and POST against the server's root that answer the JSON body of a 200 (or of a status in `ok`),
    or None for anything else, within a deadline."""

    def __init__(self, http: Any, root: Any, headers: dict[str, str]):
        self.http, self.root, self.headers = http, root, headers

    async def get(self, path: str) -> Any:
        return await self._ask("GET", path, None)

    async def post(self, path: str, body: dict, ok: tuple[int, ...] = (), timeout: float | None = None) -> Any:
        return await self._ask("POST", path, body, ok, timeout)

    async def _ask(self, method: str, path: str, body: dict | None, ok: tuple[int, ...] = (),
                   timeout: float | None = None) -> Any:
        timeout = timeout or PROBE_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                r = await self.http.request(method, endpoint(self.root, path), json=body, headers=self.headers,
                                            timeout=timeout)
                return r.json() if r.status_code == 200 or r.status_code in ok else None
        except Exception:  # noqa: BLE001 - any failure of a probe means "not this kind of server"
            return None
