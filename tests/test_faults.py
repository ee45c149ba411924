"""The openai backend against a local server that injects faults: 429 with Retry-After, 5xx, resets,
timeouts, and a prompt that never succeeds. Nothing is lost, and the API key appears nowhere."""

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import jsonl, run_cli, write_jsonl

KEY = "sk-planted-secret-4b1d"
GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")
PLANS = {"flaky429": ["429"], "flaky500": ["500", "502"], "reset": ["reset"], "slow": ["timeout"], "dead": ["503"] * 99}


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

    def do_GET(self):
        self.keys_seen.add(self.headers.get("Authorization", ""))
        self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                     "owned_by": "test", "max_model_len": 8192}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/tokenize"):
            return self._json(404, {"error": "no tokenizer here"})
        prompt = body["prompt"]
        tag = next((t for t in PLANS if f"[{t}]" in prompt[-200:]), None)
        n = self.attempts.get(prompt, 0)
        self.attempts[prompt] = n + 1
        fault = PLANS[tag][n] if tag and n < len(PLANS[tag]) else None
        if fault == "reset":
            self.connection.close()
            return
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
