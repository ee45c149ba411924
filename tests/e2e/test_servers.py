"""The openai backend finds out what server it talks to: small fake servers imitate the endpoints of vLLM, SGLang,
llama.cpp's llama-server, llama-cpp-python, Ollama and a hosted API. Detection, the one line on stderr, the
context window (or a clear error), token counts (the server's, --tokenizer's, or stated estimates), counting a
chunk at once, logit bias by token id, and llama.cpp's prompt cache."""

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfalign.backends import load_backend, servers
from selfalign.backends.base import SamplingParams

BOS = 1


def ids_of(text: str) -> list[int]:
    """The fake tokenizer: one token per word, a word after a space being another token than the same word
    at the start (as BPE and SentencePiece tokenizers have it)."""
    return [zlib.crc32(((" " if m.group(1) else "") + m.group(2)).encode()) % 90_000 + 10
            for m in re.finditer(r"(\s?)(\S+)", text)]


# what each kind of server answers: (method, path) -> JSON, or a function of the request body
KINDS = {
    "vllm": {
        ("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "vllm", "max_model_len": 4096}]},
        ("GET", "/version"): {"version": "0.10.0"},
        ("POST", "/tokenize"): lambda b: {"tokens": ids_of(b["prompt"]), "count": len(ids_of(b["prompt"])),
                                          "max_model_len": 4096},
    },
    "sglang": {
        ("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "sglang", "max_model_len": 32768}]},
        ("GET", "/get_model_info"): {"model_path": "/models/m", "is_generation": True},
        ("POST", "/tokenize"): lambda b: {"tokens": ids_of(b["prompt"]), "count": len(ids_of(b["prompt"]))},
    },
    "llama-server": {
        ("GET", "/v1/models"): {"data": [{"id": "m.gguf", "owned_by": "llamacpp", "meta": {"n_ctx_train": 8192}}]},
        ("GET", "/props"): {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 3},
        ("POST", "/tokenize"): lambda b: {"tokens": ([BOS] if b.get("add_special") else []) + ids_of(b["content"])},
    },
    "llama-cpp-python": {
        ("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "me", "permissions": []}]},
        ("POST", "/extras/tokenize"): lambda b: {"tokens": [BOS] + ids_of(b["input"])},
    },
    "ollama": {
        ("GET", "/v1/models"): {"data": [{"id": "m:latest", "owned_by": "library"}]},
        ("GET", "/api/version"): {"version": "0.5.7"},
        ("POST", "/api/show"): {"parameters": "num_ctx                        8192\nstop \"<|im_end|>\"",
                                "model_info": {"general.architecture": "llama", "llama.context_length": 131072}},
    },
    "other": {("GET", "/v1/models"): {"data": [{"id": "gpt-x", "owned_by": "openai"}]}},
}
N_CTX = 1024  # the fake llama-cpp-python's


class Fake(BaseHTTPRequestHandler):
    routes: dict = {}
    bodies: list = []  # (path, body) of every POST
    barrier: threading.Barrier | None = None  # tokenizer requests wait here for each other
    in_flight = peak = 0
    failures: list = []  # statuses the tokenizer answers before it works again
    hang: threading.Event | None = None  # GET /props waits for it
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/props" and self.hang is not None:  # answers late, as llama-server would
            self.hang.wait(30)
            return self._send(200, {"default_generation_settings": {"n_ctx": 1}, "total_slots": 1})
        answer = self.routes.get(("GET", self.path))
        self._send(200, answer) if answer is not None else self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append((self.path, body))
        if self.path == "/v1/completions":
            return self._completion(body)
        answer = self.routes.get(("POST", self.path))
        if answer is None:
            return self._send(404, {"detail": "Not Found"})
        if self.path.endswith("/tokenize") and self.failures:
            return self._send(self.failures.pop(0), {"error": "tokenizer trouble"})
        if self.path.endswith("/tokenize") and self.barrier is not None:
            with self.lock:
                type(self).in_flight += 1
                type(self).peak = max(self.peak, self.in_flight)
            try:
                self.barrier.wait(10)  # breaks (and the request fails) unless all of them are in flight at once
            except threading.BrokenBarrierError:
                return self._send(500, {"error": "requests came one after another"})
            finally:
                with self.lock:
                    type(self).in_flight -= 1
        self._send(200, answer(body) if callable(answer) else answer)

    def _completion(self, body):
        if ("POST", "/extras/tokenize") in self.routes and len(ids_of(body["prompt"])) + 1 >= N_CTX:
            n = len(ids_of(body["prompt"])) + 1
            return self._send(400, {"error": {
                "message": f"This model's maximum context length is {N_CTX} tokens, however you requested "
                           f"{n + 1} tokens ({n} in your prompt; 1 for the completion). Please reduce your prompt; "
                           "or completion length.", "type": "invalid_request_error", "code": "context_length_exceeded"}})
        self._send(200, {"id": "c", "object": "text_completion", "model": body["model"],
                         "choices": [{"index": 0, "text": " fine", "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}})


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # a wave of 64 connections at once


@pytest.fixture
def serve():
    """serve(kind, **changes) -> the URL of a fake server of that kind; routes set to None are removed."""
    started = []

    def start(kind, **changes):
        routes = {**KINDS[kind]}
        for key, value in changes.items():
            method, path = key.split(" ", 1)
            routes.pop((method, path)) if value is None else routes.__setitem__((method, path), value)
        handler = type("Handler", (Fake,), {"routes": routes, "bodies": [], "failures": [], "in_flight": 0,
                                            "peak": 0, "lock": threading.Lock()})
        srv = Server(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        start.handler = handler
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for srv in started:
        if srv.RequestHandlerClass.hang is not None:
            srv.RequestHandlerClass.hang.set()
        srv.shutdown()


def backend(url, **options):
    b = load_backend("openai", base_url=url, max_retries=options.pop("max_retries", 0), timeout=30, **options)
    return b


EXPECTED = {  # kind: (context, tokenizer endpoint, logit bias, concurrency)
    "vllm": (4096, "/tokenize", True, 8),
    "sglang": (32768, "/tokenize", True, 8),
    "llama-server": (2048, "/tokenize", True, 3),
    "llama-cpp-python": (N_CTX, "/extras/tokenize", True, 1),
    "ollama": (8192, None, False, 8),
}


@pytest.mark.parametrize("kind", EXPECTED)
def test_each_kind_is_detected_and_said_in_one_line(serve, kind, capsys):
    url = serve(kind)
    b = backend(url)
    try:
        context, tokenize, bias, concurrency = EXPECTED[kind]
        s = b.server
        assert (s.kind, s.context, s.context_from, s.tokenize, s.logit_bias) == (kind, context, "the server", tokenize, bias)
        assert (b.max_context, b.supports_logit_bias, b.concurrency) == (context, bias, concurrency)
        out, err = capsys.readouterr()
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"server: {servers.LABELS[kind]} at {url}, model {b.model}, "
                                                        f"context {context} (from the server), token counts ")
        assert f"logit bias: {'yes' if bias else 'no'}" in lines[0]
        assert (f"token counts from {tokenize}" in lines[0]) if tokenize else ("token counts estimated" in lines[0])
    finally:
        b.close()


def test_counts_are_the_servers_own(serve):
    texts = ["Why is the sky blue?", "one", "Explain  tides,\nplease: in two short lines."]
    for kind, special in [("vllm", 0), ("llama-server", 1), ("llama-cpp-python", 1), ("sglang", 0)]:
        b = backend(serve(kind))
        try:
            assert [b.count_tokens(t) for t in texts] == [len(ids_of(t)) + special for t in texts], kind
            assert b.count_tokens_many(texts) == [len(ids_of(t)) + special for t in texts], kind
        finally:
            b.close()


def test_the_tokens_a_stage_spends_are_the_servers_usage(serve):
    """generate: each reply's `usage` (absent: 0, never a guess); choice_logprobs: each echo request's, through
    the backend's choice_usage; both reach a stage's counts through Metered."""
    from selfalign.report.tokens import Metered, Tokens

    url = serve("vllm")
    handler = serve.handler

    def completion(self, body):
        if body.get("echo"):  # a scoring request: the prompt and the choice echoed with their log-probabilities
            words = ids_of(body["prompt"])
            return self._send(200, {"choices": [{"index": 0, "text": body["prompt"], "logprobs": {
                "tokens": ["x"] * (len(words) - 1) + [" A" if body["prompt"].endswith(" A") else " B"],
                "token_logprobs": [None] + [-0.5] * (len(words) - 1)}}],
                "usage": {"prompt_tokens": len(words), "completion_tokens": 0, "total_tokens": len(words)}})
        usage = {} if "no usage" in body["prompt"] else {"usage": {"prompt_tokens": len(ids_of(body["prompt"])),
                                                                    "completion_tokens": 2}}
        self._send(200, {"choices": [{"index": 0, "text": " two words", "finish_reason": "stop"}], **usage})

    handler._completion = completion
    b = backend(url)
    t = Tokens()
    try:
        m = Metered(b, t)
        m.generate(["one two three", "four five", "no usage here"], SamplingParams(max_tokens=8))
        assert (t.requests, t.prompt_tokens, t.completion_tokens) == (3, 5, 4)
        m.choice_logprobs(["Better answer: one two", "Better answer:"], [" A", " B"])
        assert b.choice_usage == {"requests": 4, "prompt_tokens": 5 + 5 + 3 + 3, "completion_tokens": 0}
        assert (t.requests, t.prompt_tokens, t.completion_tokens) == (3 + 4, 5 + 16, 4)
    finally:
        b.close()


def test_a_chunk_is_counted_in_one_wave_of_requests(serve):
    url = serve("vllm")
    b = backend(url)
    try:
        texts = [f"prompt number {i} " + "word " * i for i in range(64)]
        serve.handler.barrier = threading.Barrier(64)  # each request waits until all 64 are in flight
        assert b.count_tokens_many(texts) == [len(ids_of(t)) for t in texts]
        assert serve.handler.peak == 64
        # counted lately: asked again, nothing goes to the server
        asked = len(serve.handler.bodies)
        assert b.count_tokens_many(texts[:10]) == [len(ids_of(t)) for t in texts[:10]]
        assert len(serve.handler.bodies) == asked
    finally:
        b.close()


def test_an_unknown_context_window_is_an_error_naming_the_flag(serve):
    cases = [("other", {}, ["an OpenAI-compatible API", "'gpt-x'", "--max-model-len"]),
             ("ollama", {"POST /api/show": {"parameters": "stop \"x\"", "model_info": {"llama.context_length": 131072}}},
              ["Ollama", "num_ctx", "OLLAMA_CONTEXT_LENGTH", "--max-model-len", "trained for 131072"]),
             ("vllm", {"GET /v1/models": {"data": [{"id": "m", "owned_by": "vllm"}]}}, ["vLLM", "--max-model-len"]),
             ("llama-cpp-python", {}, ["llama-cpp-python", "--n_ctx", "--max-model-len"])]
    for kind, changes, words in cases:
        url = serve(kind, **changes)
        if kind == "llama-cpp-python":  # the over-long probe prompt is answered instead of refused
            serve.handler._completion = lambda self, body: self._send(200, {"choices": [{"text": "", "index": 0}]})
        with pytest.raises(RuntimeError) as e:
            backend(url)
        assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), (kind, str(e.value))
        assert url in str(e.value)


def test_a_given_context_needs_no_probe_and_wins(serve, capsys):
    url = serve("llama-cpp-python")
    b = backend(url, max_context=512)
    try:
        assert b.max_context == 512 and b.server.context_from == "--max-model-len"
        assert not [p for p, _ in serve.handler.bodies if p == "/v1/completions"]  # no over-long probe was sent
        assert "context 512 (from --max-model-len)" in capsys.readouterr().err
    finally:
        b.close()
    b = backend(serve("other"), max_context=8192)
    b.close()


def test_without_a_server_tokenizer_counts_are_stated_estimates(serve, capsys):
    from selfalign.text.tokens import token_counter

    b = backend(serve("other"), max_context=8192)
    try:
        text = "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen."
        n = token_counter("tiktoken:o200k_base")(text)
        assert b.count_tokens(text) == math.ceil(n * 1.3) > n
        assert b.count_tokens_many([text, "a b c"]) == [math.ceil(n * 1.3), math.ceil(3 * 1.3)]
        err = capsys.readouterr().err
        assert err.count("estimated") == 1 and "o200k_base x 1.3" in err and "--tokenizer" in err
        assert len(err.splitlines()) == 1
    finally:
        b.close()


def test_the_named_tokenizer_counts_where_the_server_has_none(serve, capsys):
    from selfalign.text.tokens import token_counter

    b = backend(serve("ollama"), tokenizer="tiktoken:cl100k_base")
    try:
        text = "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen."
        assert b.count_tokens(text) == token_counter("tiktoken:cl100k_base")(text)
        assert "token counts from --tokenizer tiktoken:cl100k_base" in capsys.readouterr().err
    finally:
        b.close()
    with pytest.raises(RuntimeError, match="^--tokenizer tiktoken:nope: no offline data"):
        backend(serve("ollama"), tokenizer="tiktoken:nope")
    b = backend(serve("vllm"), tokenizer="tiktoken:cl100k_base")  # the server's own tokenizer wins
    try:
        assert b.count_tokens(text) == len(ids_of(text)) != token_counter("tiktoken:cl100k_base")(text)
        assert "token counts from /tokenize (--tokenizer tiktoken:cl100k_base unused)" in capsys.readouterr().err
    finally:
        b.close()


def test_a_failing_server_tokenizer_is_retried_then_stops_the_run(serve):
    url = serve("llama-server")
    b = backend(url, max_retries=2)
    try:
        serve.handler.failures[:] = [503, 500]  # two failures, then it works: retried, the count is right
        assert b.count_tokens("three short words") == 4
        serve.handler.failures[:] = [503] * 3  # three failures: 2 retries are spent
        before = len(serve.handler.bodies)
        with pytest.raises(RuntimeError) as e:
            b.count_tokens("other words")
        assert len(serve.handler.bodies) - before == 3
        assert "tokenizer" in str(e.value) and "HTTP 503" in str(e.value) and "3 tries" in str(e.value)
        assert "--tokenizer" in str(e.value) and url in str(e.value)
        serve.handler.failures[:] = [400]  # not worth retrying
        before = len(serve.handler.bodies)
        with pytest.raises(RuntimeError, match="HTTP 400 \\(1 try\\)"):
            b.count_tokens("yet other words")
        assert len(serve.handler.bodies) - before == 1
    finally:
        b.close()


def _completions(handler):
    """The completion requests, without llama-cpp-python's over-long context probe."""
    return [body for path, body in handler.bodies
            if path == "/v1/completions" and len(body["prompt"]) < servers.LONG_PROBE_WORDS]


@pytest.mark.parametrize("kind", ["vllm", "llama-server", "llama-cpp-python"])
def test_logit_bias_goes_out_as_the_servers_token_ids(serve, kind):
    b = backend(serve(kind))
    try:
        params = SamplingParams(max_tokens=5, logit_bias={"Sorry": -100.0})
        assert [c.text for c in b.generate(["Hello", "Hi"], params)] == [" fine", " fine"]
        tokenized = len(serve.handler.bodies)
        b.generate(["Again"], params)
        assert len(serve.handler.bodies) == tokenized + 1  # the ids were found once
        want = {str(ids_of("Sorry")[0]): -100.0, str(ids_of(" Sorry")[0]): -100.0}
        assert len(want) == 2 and str(BOS) not in want
        assert all(body["logit_bias"] == want for body in _completions(serve.handler))
    finally:
        b.close()


def test_no_logit_bias_where_the_server_cannot_take_it(serve):
    for kind in ("ollama", "other"):
        b = backend(serve(kind), max_context=4096)
        try:
            assert b.supports_logit_bias is False
            b.generate(["Hello"], SamplingParams(max_tokens=5, logit_bias={"Sorry": -100.0}))
            assert [body.get("logit_bias") for body in _completions(serve.handler)] == [None], kind
        finally:
            b.close()


def test_llama_cpp_servers_get_their_own_fields(serve):
    params = SamplingParams(max_tokens=5)
    for kind, cache, penalty in [("llama-server", True, 1.0), ("llama-cpp-python", None, 1.0), ("vllm", None, None)]:
        b = backend(serve(kind))
        try:
            b.generate(["Hello"], params)
            body = _completions(serve.handler)[0]
            assert (body.get("cache_prompt"), body.get("repeat_penalty")) == (cache, penalty), kind
        finally:
            b.close()
    b = backend(serve("vllm"))
    try:
        b.generate(["Hello"], SamplingParams(max_tokens=5, repetition_penalty=1.2))
        assert _completions(serve.handler)[0]["repetition_penalty"] == 1.2
    finally:
        b.close()


def test_concurrency_follows_the_server_unless_given(serve, capsys):
    b = backend(serve("llama-server"), concurrency=5)
    try:
        assert b.concurrency == 5 and "5 requests at a time (--concurrency)" in capsys.readouterr().err
    finally:
        b.close()
    b = backend(serve("llama-server"))
    try:
        assert b.concurrency == 3 and "3 requests at a time (the server's slots)" in capsys.readouterr().err
    finally:
        b.close()


def test_a_probe_that_hangs_does_not_hold_up_the_start(serve, monkeypatch):
    monkeypatch.setattr(servers, "PROBE_TIMEOUT", 0.5)
    url = serve("vllm")
    serve.handler.hang = threading.Event()  # GET /props answers only when the test ends
    began = time.monotonic()
    b = backend(url)  # its requests' own deadline is 30 s
    try:
        assert time.monotonic() - began < 10
        assert b.server.kind == "vllm" and b.max_context == 4096
    finally:
        b.close()


def test_a_hugging_face_name_is_read_from_the_local_cache_offline(tmp_path):
    from selfalign.io.paths import model_dir

    try:
        folder = model_dir(convert=False)
    except RuntimeError:
        pytest.skip("the embedded model is not converted yet")
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "config.json")):
            (snapshot / f.name).symlink_to(f)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("0123abc")
    code = ("import sys; from selfalign.text.tokens import token_counter\n"
            "for name in sys.argv[1:]:\n"
            " try:\n  print(token_counter(name)('Why is the sky blue?'))\n"
            " except RuntimeError as e:\n  print('error:', e)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "acme/tiny", "acme/absent", str(folder)], capture_output=True,
                          text=True, env=env, timeout=300)
    cached, absent, local = proc.stdout.splitlines()
    assert cached == local and int(cached) > 3, proc.stderr[-2000:]
    assert absent == ("error: 'acme/absent' is neither a tokenizer folder nor a model in the local Hugging Face "
                      "cache: fetch it once with `hf download acme/absent` (or pass a folder)")


def test_a_server_with_several_models_needs_model_named_and_takes_the_one_named(serve, capsys):
    two = {"data": [{"id": "qwen2.5:7b", "owned_by": "library"}, {"id": "llama3:8b", "owned_by": "library"}]}
    url = serve("vllm", **{"GET /v1/models": {"data": [{**m, "owned_by": "vllm", "max_model_len": 4096}
                                                       for m in two["data"]]}})
    with pytest.raises(RuntimeError) as e:
        backend(url)
    assert "serves 2 models (qwen2.5:7b, llama3:8b): pass --model NAME" in str(e.value)
    b = backend(url, model="llama3:8b")
    try:
        assert b.model == "llama3:8b"
    finally:
        b.close()
