"""The openai backend against a local server that injects faults: 429 with Retry-After, 5xx, resets,
timeouts, malformed 200s, bytes trickled past the deadline, and a prompt that never succeeds. Nothing is lost,
the run goes on, and neither the API key nor a credential in the server's URL appears anywhere."""

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support import jsonl, run_cli, write_jsonl

KEY = "sk-planted-secret-4b1d"
GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")
PLANS = {"flaky429": ["429"], "flaky500": ["500", "502"], "reset": ["reset"], "slow": ["timeout"], "dead": ["503"] * 99}
MALFORMED = {"notjson": ["notjson"] * 99, "nochoices": ["nochoices"] * 99, "nullchoices": ["nullchoices"] * 99,
             "once": ["notext"]}
SLOW = {"trickle": ["trickle"] * 99, "drip": ["drip"] * 99}
FAULTS = {**PLANS, **MALFORMED, **SLOW}


class Handler(BaseHTTPRequestHandler):
    attempts: dict = {}
    keys_seen: set = set()

    def log_message(self, *args):
        pass

    def _json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _raw(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, fault):
        """A status line, then (trickle) the headers and one body byte every 0.2 s of a 100 kB body, or (drip)
        one header byte every 0.2 s; for a minute at most, or until the client hangs up."""
        try:
            if fault == "trickle":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
            else:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(300):
                self.wfile.write(b" " if fault == "trickle" else b"a")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self.keys_seen.add(self.headers.get("Authorization", ""))
        self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                     "owned_by": "test", "max_model_len": 8192}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/tokenize"):
            return self._json(404, {"error": "no tokenizer here"})
        prompt = body["prompt"]
        tag = next((t for t in FAULTS if f"[{t}]" in prompt[-200:]), None)
        n = self.attempts.get(prompt, 0)
        self.attempts[prompt] = n + 1
        fault = FAULTS[tag][n] if tag and n < len(FAULTS[tag]) else None
        if fault == "reset":
            self.connection.close()
            return
        if fault in ("trickle", "drip"):
            return self._trickle(fault)
        if fault == "notjson":
            return self._raw(200, b"<html>upstream hiccup</html>")
        if fault in ("nochoices", "nullchoices", "notext"):
            choices = {"nochoices": [], "nullchoices": None, "notext": [{"index": 0, "finish_reason": "stop"}]}
            return self._json(200, {"id": "c", "object": "text_completion", "created": 0, "model": "fake",
                                    "choices": choices[fault]})
        if fault == "timeout":
            time.sleep(3)
        elif fault == "429":
            return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        elif fault:
            return self._json(int(fault), {"error": {"message": "server trouble"}})
        text = f" By 2 (informative) I explain.\n\nSage: {GOOD}"
        self._json(200, {"id": "c", "object": "text_completion", "created": 0, "model": "fake",
                         "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50}})


@pytest.fixture
def server():
    Handler.attempts = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_faults_are_retried_and_a_dead_request_becomes_a_drop_reason(tmp_path, server):
    rows = [{"prompt": f"Why are there tides? [{tag}]"} for tag in [*PLANS, "fine"]]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cache = tmp_path / "cache"
    proc = run_cli("principle", str(src), "--backend", "openai", "--base-url", server, "--max-retries", "3",
                   "--request-timeout", "1", "--concurrency", "4", "-o", str(tmp_path / "out.jsonl"),
                   "--dropped", str(tmp_path / "d.jsonl"), "--report", str(tmp_path / "r.json"),
                   env={"OPENAI_API_KEY": KEY, "SELFALIGN_CACHE_DIR": str(cache)})
    kept = {r["prompt"] for r in jsonl(tmp_path / "out.jsonl")}
    dropped = jsonl(tmp_path / "d.jsonl")
    assert kept == {r["prompt"] for r in rows if "[dead]" not in r["prompt"]}
    assert [(d["record"]["prompt"], d["drop_reason"]) for d in dropped] == [("Why are there tides? [dead]", "backend_error")]
    assert "503" in dropped[0]["detail"]
    attempts = {t: n for p, n in Handler.attempts.items() for t in [*PLANS, "fine"] if f"[{t}]" in p[-200:]}
    assert attempts["flaky429"] == 2 and attempts["flaky500"] == 3 and attempts["reset"] == 2
    assert attempts["slow"] == 2 and attempts["dead"] == 4 and attempts["fine"] == 1
    assert f"Bearer {KEY}" in Handler.keys_seen  # the key was used ...
    texts = [proc.stdout, proc.stderr, *(p.read_text(errors="ignore") for p in tmp_path.glob("*.json*"))]
    db = sqlite3.connect(cache / "completions.sqlite")
    texts += [row[0] + row[1] for row in db.execute("SELECT key, completion FROM completions")]
    assert not any(KEY in t for t in texts)  # ... and appears in no output, log, report or cache entry
    # a re-run resumes: the dead one is retried, the others are already written
    again = run_cli("principle", str(src), "--backend", "openai", "--base-url", server, "--max-retries", "0",
                    "-o", str(tmp_path / "out.jsonl"), "--request-timeout", "1",
                    env={"OPENAI_API_KEY": KEY, "SELFALIGN_CACHE_DIR": str(cache)})
    assert "resuming: 5 records" in again.stderr and len(jsonl(tmp_path / "out.jsonl")) == 5


def test_backend_that_is_unreachable_stops_before_work(tmp_path):
    proc = run_cli("principle", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                   stdin='{"prompt": "q"}\n', check=False, env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 2 and "cannot reach the server" in proc.stderr and KEY not in proc.stderr


def _run(tmp_path, server, rows, *args, timeout=600):
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    return run_cli("principle", str(src), "--backend", "openai", "--base-url", server, "--concurrency", "4",
                   "-o", str(tmp_path / "out.jsonl"), "--dropped", str(tmp_path / "d.jsonl"), *args, timeout=timeout,
                   env={"OPENAI_API_KEY": KEY, "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")})


def _attempts(tags):
    return {t: n for p, n in Handler.attempts.items() for t in tags if f"[{t}]" in p[-200:]}


def test_a_malformed_success_is_retried_then_becomes_a_drop_reason(tmp_path, server):
    tags = [*MALFORMED, "fine"]
    rows = [{"prompt": f"Why are there tides? [{t}]"} for t in tags]
    _run(tmp_path, server, rows, "--max-retries", "2", "--request-timeout", "5")  # exits 0: the run goes on
    assert {r["prompt"] for r in jsonl(tmp_path / "out.jsonl")} == {rows[3]["prompt"], rows[4]["prompt"]}
    dropped = {d["record"]["prompt"]: d for d in jsonl(tmp_path / "d.jsonl")}
    assert set(dropped) == {r["prompt"] for r in rows[:3]}
    assert all(d["drop_reason"] == "backend_error" and "malformed response" in d["detail"] for d in dropped.values())
    assert "choices is empty" in dropped[rows[1]["prompt"]]["detail"]
    assert _attempts(tags) == {"notjson": 3, "nochoices": 3, "nullchoices": 3, "once": 2, "fine": 1}


def test_request_timeout_is_a_deadline_for_the_whole_request(tmp_path, server):
    rows = [{"prompt": f"Why are there tides? [{t}]"} for t in SLOW]
    # a few seconds; each trickled attempt would last a minute (2 minutes in all) if only socket reads were timed
    _run(tmp_path, server, rows, "--max-retries", "1", "--request-timeout", "1", timeout=20)
    dropped = {d["record"]["prompt"]: d for d in jsonl(tmp_path / "d.jsonl")}
    assert set(dropped) == {r["prompt"] for r in rows} and not jsonl(tmp_path / "out.jsonl")
    assert all(d["drop_reason"] == "backend_error" and "timeout" in d["detail"].lower() for d in dropped.values())
    assert _attempts(SLOW) == {"trickle": 2, "drip": 2}


@pytest.mark.parametrize("how", ["option", "env"])
def test_credentials_in_the_server_url_are_never_printed(how):
    url = "http://user:sk-secret-in-url@127.0.0.1:9/v1?api_key=sk-secret-in-query&x=1"
    args = ["--base-url", url] if how == "option" else []
    env = {"OPENAI_API_KEY": KEY, **({"OPENAI_BASE_URL": url} if how == "env" else {})}
    proc = run_cli("principle", "--backend", "openai", "--max-retries", "0", *args, stdin='{"prompt": "q"}\n',
                   check=False, env=env)
    assert proc.returncode == 2 and "cannot reach the server" in proc.stderr and "127.0.0.1:9" in proc.stderr
    assert "sk-secret" not in proc.stdout + proc.stderr and KEY not in proc.stdout + proc.stderr
