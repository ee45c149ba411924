"""Nothing lost, nothing blocked: bad records, repeated ids, side files and locks, corrupt and unwritable
outputs, bugs, SIGTERM, resume memory, an oversized principle set, reruns over bad input, a missing input.

Runs use the scripted backend; waits are on conditions (a file's first line), never a sleep then a signal."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest


from support import ROOT, jsonl, run_cli, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")


def _rules(tmp_path, delay=0.0, name="rules.jsonl", **settings):
    rows = [{"delay": delay}, {"log": str(tmp_path / "answered.log")}, *({k: v} for k, v in settings.items()),
            {"text": f" By 2 (informative) I explain.\n\nSage: {GOOD}"}]
    return str(write_jsonl(tmp_path / name, rows))


def _principle(src, rules, *args, env=None, check=True, **kw):
    return run_cli("principle", str(src), "--backend", "scripted", "--model", rules, "--batch-size", "2", "--keep",
                   "all", *args,
                   env={"SELFALIGN_CACHE_DIR": str(src.parent / "cache"), **(env or {})}, check=check, **kw)


def _popen(args, tmp_path, **kw):
    env = {**os.environ, "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-m", "selfalign", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_for_lines(path, proc, n=1, limit=120):
    """Wait until `path` holds `n` whole lines (or the process ended); bounded."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before {path.name} had {n} lines"


def _prompts(tmp_path, n, name="in.jsonl"):
    return write_jsonl(tmp_path / name, [{"prompt": f"Question number {i} about the tides?"} for i in range(n)])


# 1 -----------------------------------------------------------------------------------------------------
def test_a_record_that_cannot_be_encoded_is_quarantined_and_the_run_goes_on(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Why is the sky blue?"}\n{"prompt": "Broken \\ud800 text"}\n'
                   '{"prompt": "A pair is fine: \\ud83d\\ude00 ok?"}\n')
    rules = _rules(tmp_path)
    out, dropped = tmp_path / "out.jsonl", tmp_path / "d.jsonl"
    proc = _principle(src, rules, "-o", str(out), "--dropped", str(dropped))
    assert f"{src}:2: holds a lone surrogate (\\ud800)" in proc.stderr
    assert [r["prompt"] for r in jsonl(out)] == ["Why is the sky blue?", "A pair is fine: \U0001F600 ok?"]
    assert [(d["drop_reason"], d["line"]) for d in jsonl(dropped)] == [("invalid_input", 2)]
    again = _principle(src, rules, "-o", str(out), "--dropped", str(dropped))  # the rerun is not blocked either
    assert again.returncode == 0 and len(jsonl(dropped)) == 1
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "Why?", "response": "Because."}\n{"prompt": "Bad \\udfff", "response": "x"}\n'
                     '{"prompt": "How?", "response": "Like so."}\n')
    for stage in (["export"], ["dedup", "--threshold", "2", "--jaccard", "2"]):
        res = run_cli(*stage, str(pairs))
        assert res.returncode == 0 and len(jsonl(res.stdout)) == 2 and ":2: holds a lone surrogate" in res.stderr


# 2 -----------------------------------------------------------------------------------------------------
def test_derived_ids_keep_meaning_and_repeated_ids_are_reported_the_same_interrupted_or_not(tmp_path):
    rows = [{"prompt": "What is C++?"}, {"prompt": "What is C#?"},
            {"id": "q1", "prompt": "How do tides work?"}, {"id": "q2", "prompt": "Why is the sea salty?"},
            {"id": "q1", "prompt": "What makes waves?"}, *({"prompt": f"Question {i} about the sea?"} for i in range(6))]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    rules = _rules(tmp_path)
    whole = _principle(src, rules, "-o", str(tmp_path / "a.jsonl"), "--dropped", str(tmp_path / "a-d.jsonl"))
    kept = jsonl(tmp_path / "a.jsonl")
    assert len({r["id"] for r in kept}) == len(kept) == 10
    assert {"What is C++?", "What is C#?"} <= {r["prompt"] for r in kept}
    assert [(d["drop_reason"], d["line"]) for d in jsonl(tmp_path / "a-d.jsonl")] == [("duplicate_id", 5)]
    assert "in.jsonl:5: id 'q1' is already used at line 3" in whole.stderr
    # the same input, the run killed part way (the backend's process exits after 4 answers), then resumed
    crash = write_jsonl(tmp_path / "crash.jsonl", [{"exit_after": 4, "once": str(tmp_path / "once")},
                                                   {"text": f" By 2 (informative) I explain.\n\nSage: {GOOD}"}])
    first = _principle(src, str(crash), "-o", str(tmp_path / "b.jsonl"), "--dropped", str(tmp_path / "b-d.jsonl"),
                       check=False)
    assert first.returncode != 0
    _principle(src, str(crash), "-o", str(tmp_path / "b.jsonl"), "--dropped", str(tmp_path / "b-d.jsonl"))
    assert sorted(r["id"] for r in jsonl(tmp_path / "b.jsonl")) == sorted(r["id"] for r in kept)
    assert [(d["drop_reason"], d["line"]) for d in jsonl(tmp_path / "b-d.jsonl")] == [("duplicate_id", 5)]


# 5 -----------------------------------------------------------------------------------------------------
def test_an_interrupted_stage_never_leaves_a_file_under_its_final_name(tmp_path):
    src = _prompts(tmp_path, 6)
    crash = write_jsonl(tmp_path / "crash.jsonl", [{"crash_after": 4},
                                                   {"text": f" By 2 (informative) I explain.\n\nSage: {GOOD}"}])
    out = tmp_path / "out.jsonl"
    proc = _principle(src, str(crash), "-o", str(out), check=False)
    assert proc.returncode == 1 and not out.exists() and len(jsonl(tmp_path / "out.jsonl.partial")) == 4
    _principle(src, _rules(tmp_path), "-o", str(out))
    assert len(jsonl(out)) == 6 and not (tmp_path / "out.jsonl.partial").exists()
    # make sees an interrupted stage as not done, and its rerun resumes it
    (tmp_path / "Makefile").write_text(
        f"out.jsonl: in.jsonl\n\t{sys.executable} -m selfalign principle in.jsonl --backend scripted --model "
        f"$(RULES) --batch-size 2 -o $@\n")
    out.unlink()
    env = {**os.environ, "SELFALIGN_CACHE_DIR": str(tmp_path / "make-cache"), "PYTHONPATH": str(ROOT)}
    assert subprocess.run(["make", "-s", f"RULES={crash}"], cwd=tmp_path, env=env, capture_output=True).returncode
    assert not out.exists()
    done = subprocess.run(["make", "-s", f"RULES={_rules(tmp_path)}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0 and "resuming: 4 records" in done.stderr and len(jsonl(out)) == 6
    # dedup and export too: stopped part way (SIGTERM while reading a pipe), no final file
    for stage in (["export"], ["dedup", "--threshold", "2", "--jaccard", "2"]):
        target = tmp_path / f"{stage[0]}.jsonl"
        p = _popen([*stage, "-", "-o", str(target)], tmp_path, stdin=subprocess.PIPE)
        p.stdin.write(json.dumps({"prompt": "one", "response": "two", "thoughts": "x"}) + "\n")
        p.stdin.flush()
        deadline = time.monotonic() + 60
        while not (tmp_path / f"{stage[0]}.jsonl.partial").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        o, err = p.communicate(timeout=60)
        assert p.returncode == 143 and not target.exists(), (stage, err, o, time.monotonic() - deadline)


# 6 -----------------------------------------------------------------------------------------------------
def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    src = _prompts(tmp_path, 4)
    rules = _rules(tmp_path)
    out = tmp_path / "out.jsonl"
    # the first run reads a pipe we hold open: it is alive, holding the lock, for as long as the test needs
    first = _popen(["principle", "-", "--backend", "scripted", "--model", rules, "--batch-size", "2", "--keep", "all",
                    "-o", str(out)], tmp_path, stdin=subprocess.PIPE)
    try:
        first.stdin.write("".join(line + "\n" for line in src.read_text().splitlines()[:2]))
        first.stdin.flush()
        _wait_for_lines(tmp_path / "out.jsonl.partial", first, 2)
        second = _principle(src, _rules(tmp_path, name="fast.jsonl"), "-o", str(out), check=False)
        assert second.returncode == 1
        assert f"{out} is being written by another selfalign run (pid {first.pid}" in second.stderr
        first.stdin.write("".join(line + "\n" for line in src.read_text().splitlines()[2:]))
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 0
    ids = [r["id"] for r in jsonl(out)]
    assert len(ids) == len(set(ids)) == 4  # the refused run wrote nothing into it


# 7 -----------------------------------------------------------------------------------------------------
def test_a_corrupt_line_in_the_output_is_set_aside_and_the_run_resumes(tmp_path):
    src = _prompts(tmp_path, 5)
    rules = _rules(tmp_path)
    out = tmp_path / "out.jsonl"
    _principle(src, rules, "-o", str(out))
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + '{"id": "zz", "prom\n' + "".join(lines[2:]))  # line 2 is garbage, record 2 gone
    proc = _principle(src, rules, "-o", str(out))
    assert f"{out}:2: not a JSON record; set aside in {out}.corrupt.jsonl" in proc.stderr
    assert sorted(r["prompt"] for r in jsonl(out)) == sorted(r["prompt"] for r in jsonl(src))
    assert jsonl(tmp_path / "out.jsonl.corrupt.jsonl")[0]["line"] == 2


# 9 -----------------------------------------------------------------------------------------------------
def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))


def test_a_full_disk_is_one_line_saying_what_was_written_and_how_to_resume(tmp_path):
    src = _prompts(tmp_path, 8)
    rules = _rules(tmp_path)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "selfalign", "principle", str(src), "--backend", "scripted",
                           "--model", rules, "--batch-size", "2", "--keep", "all", "--no-cache", "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"writing {out}.partial failed: File too large" in proc.stderr
    assert "run the same command again to resume" in proc.stderr
    _principle(src, rules, "-o", str(out), "--no-cache")
    ids = [r["id"] for r in jsonl(out)]
    assert len(ids) == len(set(ids)) == 8


# 10 ----------------------------------------------------------------------------------------------------
def test_devices_and_pipes_are_written_as_streams(tmp_path):
    src = _prompts(tmp_path, 3)
    rules = _rules(tmp_path)
    full = _principle(src, rules, "-o", "/dev/full", check=False, timeout=120)
    assert full.returncode == 1 and "writing /dev/full failed: No space left on device" in full.stderr
    assert "resume" not in full.stderr and "Traceback" not in full.stderr
    piped = _principle(src, rules, "-o", "/dev/stdout")  # stdout is a pipe here
    assert len(jsonl(piped.stdout)) == 3
    exported = run_cli("export", "-o", "/dev/stdout", stdin=piped.stdout)
    assert len(jsonl(exported.stdout)) == 3


# 11 ----------------------------------------------------------------------------------------------------
def test_a_crash_is_one_line_naming_a_log_with_the_traceback(tmp_path):
    src = _prompts(tmp_path, 6)
    crash = write_jsonl(tmp_path / "crash.jsonl", [{"crash_after": 2}, {"text": " x\n\nSage: y"}])
    proc = _principle(src, str(crash), "-o", str(tmp_path / "out.jsonl"), check=False)
    line = next(x for x in proc.stderr.splitlines() if "the run stopped" in x)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    log = line.split("traceback: ", 1)[1].split(")", 1)[0]
    text = open(log).read()
    assert "Traceback" in text and "scripted engine crash" in text
    assert len(line.split(" (traceback")[0]) <= 320
    debug = run_cli("--debug", "principle", str(src), "--backend", "scripted", "--model", str(crash), "--no-cache",
                    "--batch-size", "2",
                    check=False, env={"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "traceback: above" in debug.stderr


# 12 ----------------------------------------------------------------------------------------------------
def test_sigterm_writes_what_is_finished_and_exits_143(tmp_path):
    src = _prompts(tmp_path, 40)
    rules = _rules(tmp_path, delay=0.25)
    out, report = tmp_path / "out.jsonl", tmp_path / "r.json"
    proc = _popen(["principle", str(src), "--backend", "scripted", "--model", rules, "--batch-size", "2", "--keep", "all",
                   "-o", str(out), "--report", str(report)], tmp_path)
    _wait_for_lines(tmp_path / "out.jsonl.partial", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "kept" in err
    written = jsonl(tmp_path / "out.jsonl.partial")
    assert 0 < len(written) < 40 and json.loads(report.read_text())["kept"] == len(written)


# 15 ----------------------------------------------------------------------------------------------------
def test_a_principle_set_too_large_for_the_context_is_refused_before_any_work(tmp_path):
    src = _prompts(tmp_path, 3)
    rules = _rules(tmp_path, max_context=600)
    out = tmp_path / "out.jsonl"
    proc = _principle(src, rules, "-o", str(out), check=False)
    assert proc.returncode == 2 and "the principle set and exemplars take" in proc.stderr
    assert "600-token context" in proc.stderr
    assert not (tmp_path / "answered.log").exists() and not out.exists()
    assert not (tmp_path / "out.jsonl.partial").exists()


# 16 ----------------------------------------------------------------------------------------------------
def test_rerunning_over_bad_input_reports_each_bad_line_once(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Why is the sky blue?"}\nnot json\n{"prompt": ""}\n[1, 2]\n{"prompt": "Why rain?"}\n')
    rules = _rules(tmp_path)
    out, quarantine, dropped = tmp_path / "out.jsonl", tmp_path / "q.jsonl", tmp_path / "d.jsonl"
    for _ in range(3):
        _principle(src, rules, "-o", str(out), "--quarantine", str(quarantine), "--dropped", str(dropped))
    assert sorted(q["line"] for q in jsonl(quarantine)) == [2, 3, 4]
    for _ in range(2):  # to stdout: nothing to resume, each run's files start afresh
        _principle(src, rules, "--quarantine", str(tmp_path / "q2.jsonl"), "--report", str(tmp_path / "r.json"))
    assert len(jsonl(tmp_path / "q2.jsonl")) == 3, (tmp_path / "q2.jsonl").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["dropped"].get("invalid_input") == 3, (tmp_path / "r.json").read_text()


# 17 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["nope.jsonl", "."])
def test_a_missing_input_creates_no_output(tmp_path, missing):
    out = tmp_path / "out.jsonl"
    for stage in (["export"], ["dedup", "--threshold", "2", "--jaccard", "2"]):
        proc = run_cli(*stage, str(tmp_path / missing), "-o", str(out), check=False)
        assert proc.returncode == 1 and ": cannot open: " in proc.stderr
        assert not list(tmp_path.glob("out.jsonl*"))


# review findings -------------------------------------------------------------------------------------------
def test_a_symlinked_output_stays_a_link_and_dev_stdout_is_the_stream(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Why?", "response": "Because."}])
    (tmp_path / "real.jsonl").write_text("")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "real.jsonl")
    run_cli("export", str(src), "-o", str(tmp_path / "link.jsonl"), "-q")
    assert (tmp_path / "link.jsonl").is_symlink() and len(jsonl(tmp_path / "real.jsonl")) == 1
    shell = f"{sys.executable} -m selfalign export {src} -o /dev/stdout -q > {tmp_path / 'redirected.jsonl'}"
    assert subprocess.run(shell, shell=True, cwd=ROOT).returncode == 0
    assert len(jsonl(tmp_path / "redirected.jsonl")) == 1 and not (tmp_path / "redirected.jsonl.partial").exists()


def test_a_side_file_with_nothing_written_replaces_the_old_one(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Why?"}])  # no response: dropped by export
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "Why?", "response": "Because."}])
    dropped = tmp_path / "d.jsonl"
    run_cli("export", str(bad), "-o", str(tmp_path / "o.jsonl"), "--dropped", str(dropped), "-q")
    assert len(jsonl(dropped)) == 1
    run_cli("export", str(good), "-o", str(tmp_path / "o.jsonl"), "--dropped", str(dropped), "-q")
    assert jsonl(dropped) == [] and len(jsonl(tmp_path / "o.jsonl")) == 1


def test_recipe_user_errors_are_one_line_not_a_bug_report(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'out = "{tmp_path / "o"}"\n[[stage]]\nkind = "load"\npath = "{tmp_path / "p.jsonl"}"\n'
                      f'[[stage]]\nkind = "principle"\nprinciples = "{tmp_path / "missing.md"}"\n')
    for extra in ([], ["--dry-run"]):
        proc = run_cli("run", str(recipe), *extra, check=False)
        assert proc.returncode == 2 and "missing.md" in proc.stderr and "bug" not in proc.stderr
