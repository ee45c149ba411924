"""What a hostile user or server can do, in this process (issue 29): an output that is an input, links planted
at side files, deeply nested lines, injected report values, servers that refuse, answer too much or share a
model name, values out of range, scratch folders left by a kill. No subprocess, no model, no network."""

import json
import os

import pytest

from support import invoke, one_error_line, jsonl, write_jsonl

ROWS = [{"id": f"r{i}", "prompt": f"Question number {i}?", "thoughts": "By 2 (informative) I answer.",
         "principles": ["2"], "response": f"Answer number {i}, explained in a full sentence."} for i in range(3)]
DEEP = '{"id": "deep", "prompt": "q", "thoughts": "t", "response": "r", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


# ---- 2. an output that is an input -----------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["./in.jsonl", "link.jsonl", "hard.jsonl"])
@pytest.mark.parametrize("flag", ["-o", "--dropped", "--quarantine", "--report"])
def test_an_output_that_is_the_input_is_refused_before_anything_is_touched(tmp_path, flag, spelling):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    (tmp_path / "link.jsonl").symlink_to(src)
    os.link(src, tmp_path / "hard.jsonl")
    before = src.read_bytes()
    result = invoke("export", "in.jsonl", flag, spelling, "-q")
    assert result.exit_code != 0 and "is the input in.jsonl" in one_error_line(result)
    assert src.read_bytes() == before and not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.lock"))


def test_a_resumable_stage_does_not_rename_its_input_away(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    before = src.read_bytes()
    result = invoke("principle", "in.jsonl", "-o", "./in.jsonl", "--backend", "scripted", "--model", "none", "-q")
    assert result.exit_code != 0 and "is the input" in one_error_line(result)
    assert src.read_bytes() == before


def test_stdin_redirected_from_the_output_is_refused(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    with open(src) as fp:
        monkeypatch.setattr("sys.stdin", fp)
        from selfalign.runner import RunError, Runner

        with pytest.raises(RunError, match="is the input <stdin>"):
            Runner("export", output=str(src)).records("-", dict)


def test_two_outputs_that_are_one_file_are_refused(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    result = invoke("export", "in.jsonl", "-o", "out.jsonl", "--dropped", "./out.jsonl", "-q")
    assert result.exit_code != 0 and "the same file" in one_error_line(result)


def test_report_output_that_is_an_input_is_refused(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    before = src.read_bytes()
    for fmt in ("html", "json"):
        result = invoke("report", "in.jsonl", "-f", fmt, "-o", "./in.jsonl")
        assert result.exit_code != 0 and "is the input" in one_error_line(result)
        assert src.read_bytes() == before


def test_an_unwritable_report_output_is_one_line_not_a_bug(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    (tmp_path / "file").write_text("")
    result = invoke("report", "in.jsonl", "-f", "json", "-o", "file/report.json")
    assert result.exit_code == 1 and "cannot write file/report.json" in one_error_line(result)


# ---- 3. links planted at side files ----------------------------------------------------------------------
@pytest.mark.parametrize("side", [".lock", ".partial"])
def test_a_link_planted_at_a_side_file_is_refused_not_followed(tmp_path, side):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / f"out.jsonl{side}").symlink_to(victim)
    result = invoke("export", "in.jsonl", "-o", "out.jsonl", "-q")
    assert result.exit_code != 0 and "symbolic link" in one_error_line(result)
    assert victim.read_text() == "precious\n"


def test_a_link_planted_at_the_corrupt_side_file_is_refused_on_resume(tmp_path):
    from selfalign.io.storage import UnsafePath, scan

    part = tmp_path / "out.jsonl.partial"
    part.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out.jsonl.corrupt.jsonl").symlink_to(victim)
    with pytest.raises(UnsafePath):
        scan(part, name=str(tmp_path / "out.jsonl"))
    assert victim.read_text() == "precious\n"


def test_a_link_planted_at_the_tmp_file_is_replaced_not_followed(tmp_path):
    from selfalign.io.storage import scan

    part = tmp_path / "out.jsonl.partial"
    part.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out.jsonl.partial.tmp").symlink_to(victim)
    assert scan(part, name=str(tmp_path / "out.jsonl")) == {"a", "b"}
    assert victim.read_text() == "precious\n" and jsonl(part) == [{"id": "a"}, {"id": "b"}]


def test_a_symlinked_output_is_still_written_through(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    (tmp_path / "out.jsonl").symlink_to(tmp_path / "real.jsonl")
    result = invoke("export", "in.jsonl", "-o", "out.jsonl", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.jsonl").is_symlink() and len(jsonl(tmp_path / "real.jsonl")) == 3


# ---- 6. one bad line does not stop a command -------------------------------------------------------------
def test_a_deeply_nested_line_is_set_aside_and_the_good_lines_are_written(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROWS[0]) + "\n" + DEEP + "\n" + json.dumps(ROWS[1]) + "\n")
    result = invoke("export", "in.jsonl", "-o", "out.jsonl", "--dropped", "d.jsonl", "-q")
    assert result.exit_code == 0, result.stderr
    assert len(jsonl(tmp_path / "out.jsonl")) == 2
    [bad] = jsonl(tmp_path / "d.jsonl")
    assert bad["drop_reason"] == "invalid_input" and bad["line"] == 2 and bad["file"] == "in.jsonl"


def test_a_nested_line_under_the_recursion_limit_is_set_aside_too(tmp_path):
    deep = {**ROWS[2], "x": json.loads("[" * 900 + "]" * 900)}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(deep) + "\n")
    result = invoke("export", "in.jsonl", "-o", "out.jsonl", "--dropped", "d.jsonl", "-q")
    assert result.exit_code == 0, result.stderr
    assert len(jsonl(tmp_path / "out.jsonl")) == 1 and jsonl(tmp_path / "d.jsonl")[0]["line"] == 2


def test_reading_never_raises_past_the_line():
    import io
    import sys

    from selfalign.io.jsonl import InputError, read_json_lines

    data = (json.dumps(ROWS[0]) + "\n" + DEEP + "\n" + '{"n": ' + "9" * 5000 + "}\n" + json.dumps(ROWS[1]) + "\n")
    stdin = sys.stdin
    try:
        sys.stdin = io.TextIOWrapper(io.BytesIO(data.encode()))
        got = list(read_json_lines("-"))
    finally:
        sys.stdin = stdin
    assert [isinstance(o, InputError) for _, o in got] == [False, True, True, False]
    assert [n for n, _ in got] == [1, 2, 3, 4]


def test_scan_sets_a_deeply_nested_line_aside(tmp_path):
    from selfalign.io.storage import scan

    part = tmp_path / "out.jsonl.partial"
    part.write_text('{"id": "a"}\n' + DEEP + '\n{"id": "b"}\n')
    assert scan(part, name=str(tmp_path / "out.jsonl")) == {"a", "b"}
    assert jsonl(tmp_path / "out.jsonl.corrupt.jsonl")[0]["line"] == 2


def test_report_reads_past_a_deep_line_and_a_deep_report_is_one_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROWS[0]) + "\n" + DEEP + "\n")
    result = invoke("report", "in.jsonl", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["bad_lines"] == 1
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = invoke("report", "deep.json", "-f", "json")
    assert result.exit_code == 1 and "not a JSON report" in one_error_line(result)


# ---- 5. injection into the report ------------------------------------------------------------------------
def test_every_value_from_a_report_file_is_escaped_in_the_page(tmp_path):
    evil = "<script>alert(1)</script>"
    (tmp_path / "r.json").write_text(json.dumps({"stage": "principle", "read": evil, "kept": evil,
                                                 "dropped": {evil: evil}}))
    write_jsonl(tmp_path / "d.jsonl", [{"stage": evil, "drop_reason": evil, "detail": evil, "record": {"prompt": evil}}])
    result = invoke("report", "r.json", "d.jsonl", "-o", "page.html")
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "page.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page


# ---- 9. values checked when the command line or recipe is read -------------------------------------------
@pytest.mark.parametrize(("args", "named"), [
    (["principle", "--max-tokens", "-5"], "'--max-tokens': -5"),
    (["principle", "--top-p", "7"], "'--top-p': 7.0"),
    (["principle", "--top-p", "0"], "'--top-p': 0.0"),
    (["principle", "--temperature", "nan"], "'--temperature': nan"),
    (["principle", "--temperature", "-1"], "'--temperature'"),
    (["principle", "--batch-size", "0"], "'--batch-size'"),
    (["principle", "--min-words", "-1"], "'--min-words'"),
    (["refine", "--repetition-penalty", "0"], "'--repetition-penalty'"),
    (["critique", "--sample", "-1"], "'--sample'"),
    (["judge", "--samples", "0"], "'--samples'"),
    (["generate", "--num", "-3"], "'--num'"),
    (["principle", "--concurrency", "0"], "'--concurrency'"),
    (["principle", "--request-timeout", "-1"], "'--request-timeout'"),
    (["principle", "--max-retries", "-1"], "'--max-retries'"),
    (["principle", "--gpu-memory-utilization", "2"], "'--gpu-memory-utilization'"),
    (["export", "--max-tokens", "0"], "'--max-tokens'"),
    (["export", "--min-margin", "inf"], "'--min-margin'"),
    (["dedup", "--cluster-size", "0"], "'--cluster-size'"),
    (["dedup", "--jaccard", "nan"], "'--jaccard'"),
])
def test_a_value_out_of_range_is_one_line_naming_the_option(args, named):
    result = invoke(*args, stdin="")
    assert result.exit_code == 2 and named in one_error_line(result), result.stderr
    assert "selfalign bug" not in result.stderr


@pytest.mark.parametrize(("make", "field"), [
    (lambda s: s.Export(format="csv"), "format"),
    (lambda s: s.BackendConfig(name="llama"), "name"),
    (lambda s: s.Principle(top_p=1.5), "top_p"),
    (lambda s: s.Refine(max_tokens=0), "max_tokens"),
    (lambda s: s.Dedup(search="fast"), "search"),
    (lambda s: s.Load(path="x", records="pairs"), "records"),
])
def test_the_python_api_checks_the_same_values(make, field):
    from pydantic import ValidationError

    import selfalign

    with pytest.raises(ValidationError) as e:
        make(selfalign)
    assert e.value.errors()[0]["loc"] == (field,)


RECIPE = """
out = "{out}"
[backend]
name = "{backend}"
[[stage]]
kind = "load"
path = "prompts.jsonl"
[[stage]]
kind = "principle"
[[stage]]
kind = "export"
format = "{format}"
"""


@pytest.mark.parametrize(("backend", "format", "named"), [("llama", "messages", "backend.name"),
                                                            ("scripted", "csv", "format")])
def test_an_unknown_backend_or_format_fails_a_dry_run(tmp_path, backend, format, named):
    (tmp_path / "r.toml").write_text(RECIPE.format(out=tmp_path / "out", backend=backend, format=format))
    result = invoke("run", "r.toml", "--dry-run")
    assert result.exit_code == 2 and named in one_error_line(result)


# ---- 11. scratch folders left by a kill, half-written lines ----------------------------------------------
def test_a_scratch_folder_left_by_a_killed_build_is_removed_by_the_next(tmp_path):
    import fcntl

    from selfalign.io.paths import build_once

    out = tmp_path / "models" / "mpnet"
    out.parent.mkdir()
    dead = out.with_name("mpnet.tmp4194300")  # a build killed mid-unpack: no process holds its lock
    (dead / "part").mkdir(parents=True)
    (dead / "part" / "weights.bin").write_bytes(b"0" * 1000)
    (out.with_name("mpnet.tmp4194300.lock")).write_text("")
    live = out.with_name("mpnet.tmp4194301")  # a build still running: it holds its lock
    live.mkdir()
    fd = os.open(out.with_name("mpnet.tmp4194301.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    other = out.with_name("mpnet.tmpfoo")  # not a name build_once makes
    other.mkdir()

    def make(scratch):
        (scratch / "m").mkdir()
        (scratch / "m" / "config.json").write_text("{}")
        return scratch / "m"

    try:
        assert build_once(out, make) == out and (out / ".complete").exists()
        assert not dead.exists() and not out.with_name("mpnet.tmp4194300.lock").exists()
        assert live.exists() and other.exists()
        assert sorted(p.name for p in out.parent.iterdir()) == ["mpnet", "mpnet.tmp4194301", "mpnet.tmp4194301.lock",
                                                                "mpnet.tmpfoo"]
    finally:
        os.close(fd)


def test_a_half_written_input_line_completed_later_is_read_again_on_resume(tmp_path, script):
    good = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
            "far side both bulge, so most coasts see two high tides and two low tides every day.")
    rules = script([{"text": f" By 2 (informative) I explain.\n\nSage: {good}"}])
    full = json.dumps({"id": "b", "prompt": "Why are there tides, b?"})
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "prompt": "Why are there tides, a?"}) + "\n" + full[:12])  # being written
    args = ["principle", "in.jsonl", "--backend", "scripted", "--model", rules, "-o", "out.jsonl",
            "--dropped", "d.jsonl", "-q",
            "--keep", "off_topic,restates_question"]  # the embedding gates are not what this is about
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert [d["drop_reason"] for d in jsonl(tmp_path / "d.jsonl")] == ["invalid_input"]
    src.write_text(src.read_text() + full[12:] + "\n")  # the writer finished the line
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert sorted(r["id"] for r in jsonl(tmp_path / "out.jsonl")) == ["a", "b"]
    assert jsonl(tmp_path / "d.jsonl") == []  # no stale invalid_input entry


def test_a_bad_line_still_bad_on_resume_is_set_aside_once(tmp_path, script):
    rules = script([{"text": " By 2 (informative) I explain.\n\nSage: fine."}])
    src = tmp_path / "in.jsonl"
    src.write_text("not json\n")
    args = ["principle", "in.jsonl", "--backend", "scripted", "--model", rules, "-o", "out.jsonl",
            "--dropped", "d.jsonl", "-q"]
    for _ in range(2):
        assert invoke(*args).exit_code == 0
    assert [d["line"] for d in jsonl(tmp_path / "d.jsonl")] == [1]


# ---- 10, 11. the answer's cap, the cache's key -----------------------------------------------------------
def test_the_answer_cap_follows_max_tokens_and_an_echoed_prompt():
    from selfalign.backends.openai import ANSWER_SLACK, BYTES_PER_TOKEN, answer_cap

    assert answer_cap(json.dumps({"prompt": "q", "max_tokens": 256}).encode()) == ANSWER_SLACK + 256 * BYTES_PER_TOKEN
    assert answer_cap(json.dumps({"prompt": "q" * 1000, "max_tokens": 0, "echo": True}).encode()) \
        == ANSWER_SLACK + 1000 * BYTES_PER_TOKEN
    assert answer_cap(b"not json") is None and answer_cap(b'{"messages": []}') is None
    assert answer_cap(json.dumps({"max_tokens": 256}).encode()) < 10_000_000  # the hostile server's 10 MB


def test_the_cache_key_includes_the_server_without_its_credentials():
    from selfalign.backends.base import SamplingParams
    from selfalign.backends.openai import server_identity
    from selfalign.io.cache import CompletionCache

    p = SamplingParams()
    a, b = server_identity("http://u:pw@Host-A:8000/v1/"), server_identity("http://host-b:8000/v1")
    assert a == "http://host-a:8000/v1" and "pw" not in a
    assert server_identity("https://api.example.com/v1") == "https://api.example.com:443/v1"
    assert CompletionCache.key("openai", "m", p, "q", a) != CompletionCache.key("openai", "m", p, "q", b)
    assert CompletionCache.key("openai", "m", p, "q", a) == CompletionCache.key("openai", "m", p, "q",
                                                                                server_identity("http://host-a:8000/v1"))
    # a local backend's keys are as they were: its cached completions stay
    assert CompletionCache.key("transformers", "m", p, "q") == CompletionCache.key("transformers", "m", p, "q", "")


def test_a_backend_config_is_shown_without_credentials():
    from selfalign.steps import BackendConfig

    c = BackendConfig(name="openai", base_url="http://u:pw-secret@h:8000/v1?api_key=k2")
    shown = json.dumps(c.public(mode="json"))
    assert "pw-secret" not in shown and "k2" not in shown and "h:8000" in shown
    assert c.base_url == "http://u:pw-secret@h:8000/v1?api_key=k2"  # the real one still reaches the client


# ---- 11. a huge single prompt --------------------------------------------------------------------------
def test_a_huge_line_is_held_once_while_its_record_is_worked_on(tmp_path):
    import tracemalloc

    from selfalign.io.jsonl import read_records
    from selfalign.records import PromptRecord

    size = 20_000_000
    (tmp_path / "big.jsonl").write_text(json.dumps({"id": "x", "prompt": "word " * (size // 5)}) + "\n")
    tracemalloc.start()
    try:
        for _, rec in read_records(str(tmp_path / "big.jsonl"), PromptRecord):
            held = tracemalloc.get_traced_memory()[0]
            assert len(rec.prompt) == size
            assert held < 1.5 * size  # the record's text, not the raw line and the parsed dict beside it
    finally:
        tracemalloc.stop()


def test_counting_a_huge_prompt_makes_no_list_of_its_words():
    import tracemalloc

    from selfalign.backends.scripted import ScriptedBackend

    backend = ScriptedBackend(rules=[{"text": "x"}])
    text = "word " * 2_000_000
    tracemalloc.start()
    try:
        assert backend.count_tokens(text) == 2_000_000
        assert tracemalloc.get_traced_memory()[1] < 1_000_000
    finally:
        tracemalloc.stop()


def test_generate_ratio_out_of_range_is_one_line_naming_it():
    result = invoke("generate", "--method", "both", "--ratio", "7", stdin="")
    assert result.exit_code == 2 and "'--ratio'" in one_error_line(result)
