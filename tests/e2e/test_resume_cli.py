"""Nothing lost, nothing repeated: the completion cache, resume with -o, SIGKILL and Ctrl-C."""

import collections
import os
import random
import signal
import subprocess
import sys
import time


from support import ROOT, jsonl, run_cli, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")


def _setup(tmp_path, n=40, delay=0.05):
    prompts = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"Question number {i} about tides?"} for i in range(n)])
    log = tmp_path / "generated.log"
    rules = write_jsonl(tmp_path / "rules.jsonl", [
        {"delay": delay}, {"log": str(log)},
        {"match": "number 7 ", "text": " By 2 (informative).\n\nSage: Too short."},  # a dropped one
        {"text": f" By 2 (informative) I explain.\n\nSage: {GOOD}"}])
    return prompts, rules, log


def _cmd(prompts, rules, out, dropped):
    return [sys.executable, "-m", "selfalign", "principle", str(prompts), "--backend", "scripted", "--model",
            str(rules), "--batch-size", "4", "-o", str(out), "--dropped", str(dropped), "-q"]


def test_sigkill_at_random_moments_then_resume_gives_each_id_once(tmp_path):
    prompts, rules, log = _setup(tmp_path, n=80, delay=0.08)
    env = {**os.environ, "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    ref_env = {**os.environ, "SELFALIGN_CACHE_DIR": str(tmp_path / "ref-cache")}
    subprocess.run(_cmd(prompts, rules, tmp_path / "ref.jsonl", tmp_path / "ref-d.jsonl"), env=ref_env, check=True,
                   cwd=ROOT)
    ref_kept = [r["id"] for r in jsonl(tmp_path / "ref.jsonl")]
    ref_dropped = [r["id"] for r in jsonl(tmp_path / "ref-d.jsonl")]
    log.unlink()

    out, dropped = tmp_path / "out.jsonl", tmp_path / "d.jsonl"
    rng = random.Random(0)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen(_cmd(prompts, rules, out, dropped), env=env, cwd=ROOT)
        time.sleep(rng.uniform(0.4, 1.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 10
    subprocess.run(_cmd(prompts, rules, out, dropped), env=env, check=True, cwd=ROOT)

    kept = [r["id"] for r in jsonl(out)]
    gone = [r["id"] for r in jsonl(dropped)]
    assert len(kept) == len(set(kept)) and len(gone) == len(set(gone)) and not set(kept) & set(gone)
    assert sorted(kept) == sorted(ref_kept) and sorted(gone) == sorted(ref_dropped)
    counts = collections.Counter(log.read_text().splitlines())
    assert len(counts) == 80  # every prompt generated at least once
    regenerated = sum(c - 1 for c in counts.values())
    assert regenerated <= kills * 4, f"{regenerated} regenerations for {kills} kills of batch 4"


def test_rerun_pays_nothing_and_resume_skips_what_is_written(tmp_path):
    prompts, rules, log = _setup(tmp_path, n=8, delay=0)
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("principle", str(prompts), "--backend", "scripted", "--model", str(rules), env=env)
    assert len(log.read_text().splitlines()) == 8
    second = run_cli("principle", str(prompts), "--backend", "scripted", "--model", str(rules), env=env)
    assert second.stdout == first.stdout and len(log.read_text().splitlines()) == 8  # all from the cache
    run_cli("principle", str(prompts), "--backend", "scripted", "--model", str(rules), "--no-cache", "-q", env=env)
    assert len(log.read_text().splitlines()) == 16
    info = run_cli("cache", "info", env=env).stdout
    assert "8 completions" in info
    run_cli("cache", "clear", env=env)
    assert "0 completions" in run_cli("cache", "info", env=env).stdout


def test_ctrl_c_writes_what_is_finished_and_exits_130(tmp_path):
    prompts, rules, _ = _setup(tmp_path, n=40, delay=0.25)  # 16 prompts a chunk: a chunk takes 4 s
    out = tmp_path / "out.jsonl"
    # a process started in the background by a non-interactive shell inherits SIGINT ignored (and Python then
    # keeps it so): give the child the default, as a terminal's foreground job has
    proc = subprocess.Popen(_cmd(prompts, rules, out, tmp_path / "d.jsonl")[:-1], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / "out.jsonl.partial"  # written under a side name until the stage finishes
    deadline = time.monotonic() + 120  # wait for a condition (the first chunk written), not for a time
    while (proc.poll() is None and not (partial.exists() and partial.read_text().count("\n"))
           and time.monotonic() < deadline):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the first chunk was seen"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in err and "kept" in err and "run the same command again to resume" in err
    assert not out.exists()  # an unfinished output never has the final name
    rows = jsonl(partial)  # every line is whole
    assert 0 < len(rows) < 40


def test_backend_dying_mid_run_ends_clearly_and_the_output_resumes(tmp_path):
    prompts, _, _ = _setup(tmp_path, n=12, delay=0)
    crash = write_jsonl(tmp_path / "crash.jsonl", [{"crash_after": 8},
                                                   {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    out = tmp_path / "out.jsonl"
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("principle", str(prompts), "--backend", "scripted", "--model", str(crash), "--batch-size", "4",
                   "-o", str(out), env=env, check=False)
    assert proc.returncode == 1
    assert "the run stopped: RuntimeError: scripted engine crash" in proc.stderr and "again to resume" in proc.stderr
    assert not out.exists() and len(jsonl(tmp_path / "out.jsonl.partial")) == 8  # two whole batches, side name
    fine = write_jsonl(tmp_path / "fine.jsonl", [{"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    again = run_cli("principle", str(prompts), "--backend", "scripted", "--model", str(fine), "--batch-size", "4",
                    "-o", str(out), env=env)
    assert "resuming: 8 records" in again.stderr
    ids = [r["id"] for r in jsonl(out)]
    assert len(ids) == len(set(ids)) == 12  # each prompt exactly once


OPEN_AT_ONCE = r'''
import sys, time
from selfalign.io.cache import CompletionCache
from selfalign.text.embeddings import EmbeddingCache
t0, folder, n = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    time.sleep(max(0.0, t0 + 0.1 * i - time.time()))
    try:
        c = (CompletionCache if i % 2 else EmbeddingCache)(f"{folder}/{i}.sqlite", *([] if i % 2 else ["m"]))
        if c.problem:
            print(i, c.problem, flush=True)
    except Exception as e:
        print(i, repr(e), flush=True)
'''


def test_many_processes_opening_a_new_cache_at_once_all_get_it(tmp_path):
    """Ray actors start together and open the same new cache file: none of them may fail with "database is
    locked" (CI saw it once in ~200 opens before the setup was retried; this runs 480 opens of 60 files)."""
    t0 = time.time() + 3  # every process has imported selfalign by then; each file is opened on one tick
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(t0), str(tmp_path), "60"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    failures = [line for p in procs for line in p.communicate(timeout=120)[0].splitlines()]
    assert failures == []
    assert len(list(tmp_path.glob("*.sqlite"))) == 60
