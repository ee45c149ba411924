"""Hostile servers, through the CLI (issue 29): a server that refuses every request, one that goes down and
comes back, one that answers far too much, two that serve a model of the same name, and URLs that are no
URLs. The fake servers run in this process's threads; the CLI runs in-process (typer's CliRunner) except where
the exit status of a real process is the point."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from selfalign.cli import app
from support import jsonl, run_cli, write_jsonl

KEY = "sk-planted-secret-29"
GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")
ROWS = [{"id": f"q{i}", "prompt": f"Why are there tides, question {i}?"} for i in range(4)]


class Handler(BaseHTTPRequestHandler):
    mode = "ok"  # ok, 401, 403, 404, down (503), huge (a 10 MB answer)
    ok_first = 0  # completions answered well before the mode applies
    name = "A"
    answered = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test",
                                                     "max_model_len": 8192}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/completions"):
            return self._json(404, {"error": "not here"})
        with self.lock:
            n = type(self).answered
            type(self).answered += 1
        mode = self.mode if n >= self.ok_first else "ok"
        if mode in ("401", "403", "404", "down"):
            code = 503 if mode == "down" else int(mode)
            return self._json(code, {"error": {"message": f"no ({code})", "type": "invalid_request_error"}})
        text = f" By 2 (informative) I explain.\n\nSage: {GOOD} Served by {self.name}."
        if mode == "huge":
            text = "x" * 10_000_000
        try:
            self._json(200, {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50}})
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def serve():
    started = []

    def start(**attrs):
        handler = type("H", (Handler,), {"answered": 0, "lock": threading.Lock(), **attrs})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return handler, f"http://user:pw-secret@127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for srv in started:
        srv.shutdown()


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)


def principle(url, *args):
    return CliRunner().invoke(app, ["principle", "in.jsonl", "--backend", "openai", "--base-url", url,
                                    "--max-retries", "0", "--concurrency", "1", "--batch-size", "1", "-q", *args],
                              env={"COLUMNS": "200"})


@pytest.mark.parametrize(("status", "why"), [("401", "API key was not accepted"), ("403", "permission denied"),
                                             ("404", "does not serve the model 'fake'")])
def test_a_server_that_refuses_stops_the_run_at_once_and_keeps_what_was_finished(tmp_path, serve, status, why):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    handler, url = serve(mode=status, ok_first=2)
    result = principle(url, "-o", "out.jsonl", "--dropped", "d.jsonl")
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1, result.stderr
    assert last.startswith("error: the server at http://user:***@127.0.0.1:") and f"HTTP {status}" in last
    assert why in last and "pw-secret" not in result.stderr and KEY not in result.stderr
    assert handler.answered == 3  # it stopped at the first refusal, not after asking for every record
    assert [r["id"] for r in jsonl(tmp_path / "out.jsonl.partial")] == ["q0", "q1"]
    assert not (tmp_path / "d.jsonl.partial").read_text()  # nothing dropped as backend_error
    # the key fixed: the same command resumes and finishes
    _, good = serve()
    result = principle(good, "-o", "out.jsonl", "--dropped", "d.jsonl")
    assert result.exit_code == 0, result.stderr
    assert sorted(r["id"] for r in jsonl(tmp_path / "out.jsonl")) == ["q0", "q1", "q2", "q3"]


def test_a_refusal_exits_non_zero_in_a_real_process(tmp_path, serve):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    _, url = serve(mode="401")
    proc = run_cli("principle", str(tmp_path / "in.jsonl"), "--backend", "openai", "--base-url", url,
                   "--max-retries", "0", "-q", check=False, env={"SELFALIGN_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr and proc.stdout == ""
    assert "selfalign bug" not in proc.stderr and "pw-secret" not in proc.stderr


def test_records_dropped_by_an_outage_are_retried_by_the_same_command(tmp_path, serve):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    _, down = serve(mode="down", ok_first=1)
    result = principle(down, "-o", "out.jsonl", "--dropped", "d.jsonl")
    assert result.exit_code == 0, result.stderr
    assert len(jsonl(tmp_path / "out.jsonl")) == 1
    assert [d["drop_reason"] for d in jsonl(tmp_path / "d.jsonl")] == ["backend_error"] * 3
    handler, up = serve()
    result = principle(up, "-o", "out.jsonl", "--dropped", "d.jsonl")
    assert result.exit_code == 0, result.stderr
    assert handler.answered == 3  # the three dropped ones were asked again (the first is done)
    assert sorted(r["id"] for r in jsonl(tmp_path / "out.jsonl")) == ["q0", "q1", "q2", "q3"]
    assert jsonl(tmp_path / "d.jsonl") == []  # no stale backend_error entry for a record now kept


def test_an_answer_far_longer_than_asked_for_is_dropped_naming_the_cap(tmp_path, serve):
    write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    _, url = serve(mode="huge")
    result = principle(url, "-o", "out.jsonl", "--dropped", "d.jsonl", "--max-tokens", "256")
    assert result.exit_code == 0, result.stderr
    [d] = jsonl(tmp_path / "d.jsonl")
    assert d["drop_reason"] == "backend_error" and "cap for 256 tokens" in d["detail"]
    assert len((tmp_path / "d.jsonl").read_bytes()) < 100_000


def test_two_servers_serving_a_same_named_model_do_not_share_cached_answers(tmp_path, serve):
    write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    _, a = serve(name="A")
    _, b = serve(name="B")
    assert principle(a, "-o", "a.jsonl").exit_code == 0
    assert principle(b, "-o", "b.jsonl").exit_code == 0
    assert "Served by A" in jsonl(tmp_path / "a.jsonl")[0]["response"]
    assert "Served by B" in jsonl(tmp_path / "b.jsonl")[0]["response"]


@pytest.mark.parametrize("url", ["localhost:8000/v1", "http://[::1/v1", "ftp://host/v1", "http:///v1",
                                 "http://u:pw-secret@[::1/v1"])
def test_a_bad_base_url_is_one_line_naming_the_option(tmp_path, url):
    write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    result = principle(url)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --base-url"), result.stderr
    assert "selfalign bug" not in result.stderr and "pw-secret" not in result.stderr
