"""`--executor ray`: every input id comes back exactly once (kept, or dropped with a reason), the cache and
resume keep their promises, dedup's embeddings come from the pool, and a machine without Ray is told what
to install.

Ray comes with the dev extra (`make test`). Each CLI run is its own process, as a user's would be. The
tests that show the user's path start a local Ray instance themselves (~4 s each on 2 cores); the others
join one instance shared by this module.
"""

import collections
import os
import subprocess
import sys
import time

import pytest

from support import ROOT, jsonl, run_cli, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")


def _principle_setup(tmp_path, n=40):
    prompts = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"Question number {i} about tides?"} for i in range(n)])
    log = tmp_path / "answered.log"
    rules = write_jsonl(tmp_path / "rules.jsonl", [
        {"log": str(log)},
        {"match": "number 7 ", "text": " By 2 (informative).\n\nSage: Too short."},           # too_short
        {"match": "number 13 ", "text": " I answer at once with no thoughts"},                # missing_answer
        {"match": "number 21 ", "text": " By 2 (informative).\n\nSage: Sorry, I can't help with tides."},  # refusal
        {"match": "number 3", "text": " By 8 (knowledge recitation) I recall facts.\n\nSage: " + GOOD},  # 3, 30-39
        {"text": f" By 2 (informative) I explain.\n\nSage: {GOOD}"}])
    return prompts, rules, log


def _ids(path):
    """Ids written so far: the finished file, else its side file (an unfinished stage's output)."""
    if not path.exists():
        path = path.with_name(path.name + ".partial")
    return [r["id"] for r in jsonl(path)] if path.exists() else []


def _log_counts(log):
    return collections.Counter(log.read_text().splitlines()) if log.exists() else collections.Counter()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One running Ray instance (like a `ray start --head`), joined with --ray-address by several tests."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # Ray 2.5x+ secures a new instance with a token
    head = subprocess.Popen(
        [sys.executable, "-c", "import logging, sys, ray; ray.init(num_cpus=2, include_dashboard=False, "
         "logging_level=logging.ERROR); print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    address = head.stdout.readline().strip()
    assert address, "the shared Ray instance did not start"
    yield {"args": ["--executor", "ray", "--ray-address", address], "env": {"RAY_AUTH_MODE": "token"}}
    head.stdin.close()  # the head process leaves: ray.shutdown() at its exit stops the instance
    head.wait(timeout=60)


def test_principle_on_a_local_ray_instance_gives_every_id_once_and_resumes(tmp_path):
    """The issue's must-show: a local instance, two actors; a first run on half the input, then the whole
    input into the same -o; every id once, kept as in a local run, each prompt answered exactly once."""
    prompts, rules, log = _principle_setup(tmp_path)
    be = ["--backend", "scripted", "--model", str(rules), "--no-cache"]  # no cache: resume alone must skip
    local = run_cli("principle", str(prompts), *be, "-q", "--dropped", str(tmp_path / "local-d.jsonl"))
    local_kept = {r["id"]: r for r in jsonl(local.stdout)}
    local_dropped = {d["id"]: d["drop_reason"] for d in jsonl(tmp_path / "local-d.jsonl")}
    assert len(local_kept) == 37 and sorted(local_dropped.values()) == ["missing_answer", "too_short", "unwarranted_refusal"]
    log.unlink()

    out, dropped = tmp_path / "out.jsonl", tmp_path / "dropped.jsonl"
    half = write_jsonl(tmp_path / "half.jsonl", jsonl(prompts)[:20])
    ray = ["--executor", "ray", "--ray-actors", "2", "-o", str(out), "--dropped", str(dropped)]
    t = time.perf_counter()
    first = run_cli("principle", str(half), *be, *ray, "--report", str(tmp_path / "r1.json"))
    took = time.perf_counter() - t
    assert first.stdout == ""  # the records went to -o; nothing of Ray's reached stdout
    assert len(_ids(out)) + len(_ids(dropped)) == 20
    second = run_cli("principle", str(prompts), *be, *ray, "--report", str(tmp_path / "r2.json"))
    assert "resuming: 20 records" in second.stderr and second.stdout == ""

    kept, gone = _ids(out), _ids(dropped)
    assert len(kept) + len(gone) == len(set(kept) | set(gone)) == 40  # every id exactly once, kept or dropped
    assert set(kept) == set(local_kept) and {d["id"]: d["drop_reason"] for d in jsonl(dropped)} == local_dropped
    assert all(d["detail"] for d in jsonl(dropped))
    assert {r["id"]: r for r in jsonl(out)} == local_kept  # the same records, field for field
    counts = _log_counts(log)
    assert len(counts) == 40 and set(counts.values()) == {1}  # each prompt answered once over both runs

    import json
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r2["read"] == 20 and r2["already_done"] == 20 and r2["kept"] + r2["dropped_total"] == 20
    assert r2["executor"] == "ray local instance, 2 actors"
    cited = collections.Counter(p for r in jsonl(out) for p in r["principles"])
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert collections.Counter(r1["principles_cited"]) + collections.Counter(r2["principles_cited"]) == cited
    assert set(cited) == {"2", "8"}

    third = run_cli("principle", str(prompts), *be, *ray)  # all done: nothing is answered or written again
    assert "resuming: 40 records" in third.stderr
    assert len(_ids(out)) + len(_ids(dropped)) == 40 and sum(_log_counts(log).values()) == 40
    print(f"first ray run (20 prompts, local start, 2 actors): {took:.1f} s")


def test_actors_share_the_completion_cache_and_stdout_stays_jsonl(tmp_path, cluster):
    prompts, rules, log = _principle_setup(tmp_path, n=24)
    env = {**cluster["env"], "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    args = ["principle", str(prompts), "--backend", "scripted", "--model", str(rules), *cluster["args"],
            "--ray-actors", "2", "--batch-size", "3", "--dropped", str(tmp_path / "d.jsonl")]
    first = run_cli(*args, env=env)
    assert sum(_log_counts(log).values()) == 24
    second = run_cli(*args[:-2], "--dropped", str(tmp_path / "d2.jsonl"), env=env)
    assert sum(_log_counts(log).values()) == 24  # every completion came from the cache, written by two actors
    rows = jsonl(first.stdout)  # every stdout line is a record
    assert len(rows) == 21 and sorted(first.stdout.splitlines()) == sorted(second.stdout.splitlines())
    assert "ray cluster, 2 actors" in first.stderr


def test_refine_on_ray_gives_every_id_once(tmp_path, cluster):
    aligned = [{"prompt": f"Question number {i} about tides?", "thoughts": "By 2.", "response": GOOD}
               for i in range(12)]
    src = write_jsonl(tmp_path / "aligned.jsonl", aligned)
    rules = write_jsonl(tmp_path / "rules.jsonl", [{"match": "number 5 ", "text": "Too short."},
                                                  {"text": f" {GOOD} It is a steady rhythm sailors have used."}])
    be = ["--backend", "scripted", "--model", str(rules), "--no-cache"]
    local = jsonl(run_cli("refine", str(src), *be, "-q").stdout)
    proc = run_cli("refine", str(src), *be, *cluster["args"], "--ray-actors", "2", "--dropped",
                   str(tmp_path / "d.jsonl"), env=cluster["env"])
    kept, gone = jsonl(proc.stdout), jsonl(tmp_path / "d.jsonl")
    assert len(kept) + len(gone) == len({r["id"] for r in kept} | {d["id"] for d in gone}) == 12
    assert [d["drop_reason"] for d in gone] == ["too_short"]
    assert sorted(kept, key=lambda r: r["id"]) == sorted(local, key=lambda r: r["id"])
    assert all(r["verbose_response"].startswith(GOOD) and r["response"] == GOOD for r in kept)


def test_critique_on_ray_counts_revisions_like_a_local_run(tmp_path, cluster):
    """The counters a stage keeps in its report (critique: revised, no_violation) come back from the actors."""
    import json

    wrong = "The current price of gold is exactly 2,031 dollars an ounce, and it will rise tomorrow."
    revision = ("I can't tell you today's gold price: I have no access to live market data, and the price changes "
                "through the day. A financial news site or your bank will show the current price per ounce.")
    aligned = [{"prompt": f"Question number {i} about gold?", "thoughts": "By 7 (candor) I answer.",
                "response": wrong if i % 3 == 0 else GOOD, "principles": ["7"]} for i in range(12)]
    src = write_jsonl(tmp_path / "aligned.jsonl", aligned)
    rules = write_jsonl(tmp_path / "rules.jsonl", [
        {"match": f"Answer: {wrong}", "text": " The answer invents a price. The answer breaks principle 7.\n"
         f"Violations: 7\nRevision: {revision}"},
        {"text": " The answer is accurate. The answer breaks none of the principles.\nViolations: none"}])
    be = ["--backend", "scripted", "--model", str(rules), "--no-cache", "--sample", "0",
          "--keep", "off_topic,restates_question", "-q"]
    local = run_cli("critique", str(src), *be, "--report", str(tmp_path / "local.json"))
    proc = run_cli("critique", str(src), *be, *cluster["args"], "--ray-actors", "2", "--batch-size", "4",
                   "--report", str(tmp_path / "ray.json"), env=cluster["env"])
    assert sorted(jsonl(proc.stdout), key=lambda r: r["id"]) == sorted(jsonl(local.stdout), key=lambda r: r["id"])
    mine, theirs = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "ray"))
    assert (mine["revised"], mine["no_violation"]) == (4, 8)
    assert (theirs["revised"], theirs["no_violation"]) == (4, 8)
    spent = ("requests", "prompt_tokens", "completion_tokens")  # the tokens too, summed over the actors' chunks
    assert [theirs["tokens"][k] for k in spent] == [mine["tokens"][k] for k in spent] and mine["tokens"]["requests"]


def test_generate_on_ray_splits_calls_over_actors_and_gives_num_records(tmp_path, cluster):
    topics = ["rivers", "bread", "gardens", "planets", "bridges", "violins", "glaciers", "markets", "orchards",
              "lighthouses", "volcanoes", "libraries", "kites", "canals", "deserts", "bees", "clocks", "ferries"]
    rules = write_jsonl(tmp_path / "rules.jsonl", [{"log": str(tmp_path / "log")}] + [
        {"text": f" Explain three facts about {a}.\n8. Describe a day among {b} for a child.\n"
                 f"9. Compare {c} with {a} in one short paragraph."}
        for a, b, c in zip(topics, topics[6:] + topics[:6], topics[12:] + topics[:12], strict=True)])
    proc = run_cli("generate", "--num", "12", "--no-embeddings", "--no-cache", "--max-requests", "60", "--backend",
                   "scripted", "--model", str(rules), *cluster["args"], "--ray-actors", "2",
                   "--report", str(tmp_path / "r.json"), env=cluster["env"])
    rows = jsonl(proc.stdout)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert all(r["source"] == "self-instruct" and r["provenance"][-1]["backend"] == "scripted" for r in rows)
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kept"] == 12 and report["requests"] == len((tmp_path / "log").read_text().splitlines())
    assert report["tokens"]["requests"] == report["requests"] and report["tokens"]["completion_tokens"] > 0


def test_a_backend_dying_on_an_actor_ends_clearly_and_the_output_resumes(tmp_path, cluster):
    prompts, _, _ = _principle_setup(tmp_path, n=12)
    crash = write_jsonl(tmp_path / "crash.jsonl", [{"crash_after": 8}, {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    out = tmp_path / "out.jsonl"
    args = ["principle", str(prompts), "--backend", "scripted", "--batch-size", "4", "--no-cache", "-o", str(out),
            *cluster["args"]]
    proc = run_cli(*args, "--model", str(crash), env=cluster["env"], check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "scripted engine crash" in errors[0] and "again to resume" in errors[0]
    assert 0 < len(_ids(out)) <= 8  # only whole batches answered before the crash
    fine = write_jsonl(tmp_path / "fine.jsonl", [{"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    run_cli(*args, "--model", str(fine), env=cluster["env"])
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 12

    bad = run_cli("principle", str(prompts), "--backend", "scripted", *cluster["args"], env=cluster["env"],
                  check=False)  # no --model: the backend cannot start on the actor
    assert bad.returncode != 0 and bad.stdout == ""
    assert "the scripted backend did not start in a Ray actor: ValueError: the scripted backend needs --model" in bad.stderr


def test_sigkill_mid_run_then_resume_gives_each_id_once(tmp_path, cluster):
    prompts = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"Question number {i} about tides?"} for i in range(60)])
    rules = write_jsonl(tmp_path / "rules.jsonl", [{"delay": 0.05}, {"log": str(tmp_path / "log")},
                                                  {"match": "number 7 ", "text": " By 2.\n\nSage: Too short."},
                                                  {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    out, dropped = tmp_path / "out.jsonl", tmp_path / "d.jsonl"
    cmd = [sys.executable, "-m", "selfalign", "principle", str(prompts), "--backend", "scripted", "--model", str(rules),
           "--batch-size", "4", "-o", str(out), "--dropped", str(dropped), "-q", *cluster["args"], "--ray-actors", "2"]
    env = {**os.environ, **cluster["env"], "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 300  # a bound, not a timing: starting Ray on a loaded machine can take minutes
    while proc.poll() is None and len(_ids(out)) < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    written = len(_ids(out)) + len(_ids(dropped))
    assert 0 < written < 60, "the kill should land mid-run"
    again = subprocess.run(cmd[:-1] + ["2"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    kept, gone = _ids(out), _ids(dropped)
    assert len(kept) + len(gone) == len(set(kept) | set(gone)) == 60 and len(gone) == 1
    counts = _log_counts(tmp_path / "log")
    # answered twice: at most the chunk each actor was answering when the kill came (the rest is cached)
    assert len(counts) == 60 and sum(counts.values()) - 60 <= 2 * 4, counts.most_common(3)


def test_an_actor_process_that_dies_is_restarted_and_no_id_is_written_twice(tmp_path, cluster):
    """The actor's whole process exits mid-chunk (as under the OOM killer): Ray restarts it and retries the
    chunk; the driver writes each id once. A process that dies every time ends the run in one clear line
    after a bounded number of restarts, instead of retrying forever."""
    prompts = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"Question number {i} about tides?"} for i in range(24)])
    log = tmp_path / "log"
    once = write_jsonl(tmp_path / "once.jsonl", [{"exit_after": 6, "once": str(tmp_path / "died")}, {"log": str(log)},
                                                 {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    out = tmp_path / "out.jsonl"
    args = ["principle", str(prompts), "--backend", "scripted", "--batch-size", "4", "-o", str(out),
            "--dropped", str(tmp_path / "d.jsonl"), *cluster["args"], "--ray-actors", "2"]
    env = {**cluster["env"], "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    run_cli(*args, "--model", str(once), env=env)
    assert (tmp_path / "died").exists()  # an actor did die
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 24 and not _ids(tmp_path / "d.jsonl")
    counts = _log_counts(log)
    assert len(counts) == 24 and sum(counts.values()) - 24 <= 4  # at most the chunk in flight, answered again

    always = write_jsonl(tmp_path / "always.jsonl", [{"exit_after": 0}, {"text": f" By 2.\n\nSage: {GOOD}"}])
    fresh = ["principle", str(prompts), "--backend", "scripted", "--batch-size", "4", "--no-cache", *cluster["args"]]
    proc = run_cli(*fresh, "--model", str(always), "-o", str(tmp_path / "never.jsonl"), env=env, check=False,
                   timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "process died 3 times" in errors[0], proc.stderr[-2000:]
    assert proc.stdout == ""  # Ray's held-back messages about the dead workers went to stderr too
    assert all(len(line) < 600 for line in proc.stderr.splitlines())  # each cut to its first sentence (+ log path)


def test_dedup_embeds_on_the_actor_pool_and_drops_what_a_local_run_drops(tmp_path, cluster):
    """dedup --executor ray: the embeddings come from two actors (their cache shared on the node), the
    search stays on the driver; kept and dropped records are those of a local run."""
    from test_dedup_models import DUPES

    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": t} for t in DUPES])
    evalset = write_jsonl(tmp_path / "eval.jsonl", [{"id": "ev1", "question": "Explain what a black hole is, please."}])
    common = ["dedup", str(src), "--threshold", "0.8", "--against", str(evalset)]
    env = {**cluster["env"], "SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    local = run_cli(*common, "--no-cache", "--dropped", str(tmp_path / "local-d.jsonl"), "-q", env=env)
    ray = ["--dropped", str(tmp_path / "ray-d.jsonl"), "--report", str(tmp_path / "r.json"), *cluster["args"],
           "--ray-actors", "2"]
    first = run_cli(*common, *ray, env=env)
    assert first.stdout == local.stdout and len(jsonl(first.stdout)) < len(DUPES)

    def verdicts(path):
        return [(d["id"], d["drop_reason"], d["duplicate_of"], d["similarity"]) for d in jsonl(path)]

    here, there = verdicts(tmp_path / "local-d.jsonl"), verdicts(tmp_path / "ray-d.jsonl")
    assert [v[:3] for v in there] == [v[:3] for v in here] and {v[1] for v in here} == {"semantic_duplicate", "contaminated"}
    assert all(abs(a[3] - b[3]) < 1e-3 for a, b in zip(here, there, strict=True))
    import json
    assert json.loads((tmp_path / "r.json").read_text())["executor"].endswith("2 actors")
    assert "0 from cache, 13 computed" in first.stderr  # 12 records + 1 reference text, embedded by the actors
    again = run_cli(*common, *ray, env=env)
    assert again.stdout == first.stdout and "13 from cache, 0 computed" in again.stderr


def test_a_pipeline_on_the_ray_executor_gives_the_records_of_a_local_one(tmp_path, cluster, monkeypatch):
    """The Python API swaps executors: the same stage configs, the principle stage rebuilt in each actor from
    its class and config; the files are those of a local run, record for record."""
    from selfalign import BackendConfig, Export, Load, Pipeline, Principle
    from selfalign.executors.ray import RayExecutor, RayOptions

    prompts, rules, _ = _principle_setup(tmp_path, n=12)
    stages = [Load(path=str(prompts)), Principle(batch_size=3), Export()]
    backend = BackendConfig(name="scripted", model=str(rules), cache=False)
    Pipeline(stages).run(tmp_path / "local", backend=backend)
    monkeypatch.setenv("RAY_AUTH_MODE", cluster["env"]["RAY_AUTH_MODE"])
    ex = RayExecutor(RayOptions(address=cluster["args"][-1], actors=2))
    reports = Pipeline(stages).run(tmp_path / "ray", backend=backend, executor=ex)
    assert reports["principle"].extra["executor"] == "ray cluster, 2 actors" and reports["principle"].read == 12
    for name in ("principle.jsonl", "principle-dropped.jsonl", "export.jsonl"):
        here, there = (sorted(map(str, jsonl(tmp_path / d / name))) for d in ("local", "ray"))
        assert there == here and here, name
    assert not ex.started  # the executor left Ray at the end of the run


def test_resources_a_local_instance_cannot_give_are_an_error_not_a_hang(tmp_path, script):
    rules = script([{"text": "x"}])
    proc = run_cli("principle", "--backend", "scripted", "--model", rules, "--executor", "ray",
                   "--ray-gpus-per-actor", "1", stdin='{"prompt": "q"}\n', check=False, timeout=120)
    assert proc.returncode == 2 and "0 GPUs; an actor asks for 0.5 CPUs and 1 GPUs" in proc.stderr
    proc = run_cli("principle", "--backend", "scripted", "--model", rules, "--executor", "ray",
                   "--ray-address", "127.0.0.1:9", stdin='{"prompt": "q"}\n', check=False, timeout=120)
    assert proc.returncode == 2 and "cannot join the Ray cluster at 127.0.0.1:9" in proc.stderr


@pytest.mark.slow
def test_principle_on_ray_with_the_embedded_model(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "How do vaccines protect people from disease?"},
                                                   {"prompt": "What are good habits for saving money?"}])
    proc = run_cli("principle", str(src), "--executor", "ray", "--ray-actors", "1", "--seed", "1",
                   "--max-tokens", "24", "--keep", "truncated,too_short", "--no-cache", "--dropped", str(tmp_path / "d.jsonl"))
    kept, gone = jsonl(proc.stdout), jsonl(tmp_path / "d.jsonl") if (tmp_path / "d.jsonl").exists() else []
    from selfalign.records import stable_id
    expected = sorted(stable_id(r["prompt"]) for r in jsonl(src))
    assert sorted([r["id"] for r in kept] + [d["id"] for d in gone]) == expected  # each once, kept or dropped
    assert all(d["drop_reason"] and d["stage"] == "principle" for d in gone)
    for rec in kept:
        prov = rec["provenance"][-1]
        assert prov["backend"] == "transformers" and prov["model"].endswith("smollm2-135m-instruct")
        assert prov["sampling"]["seed"] == 1 and prov["sampling"]["max_tokens"] == 24


def test_ray_is_not_imported_until_asked_for():
    code = ("import sys; from typer.testing import CliRunner; from selfalign.cli import app; "
            "[CliRunner().invoke(app, [c, '--help']) for c in ('generate', 'principle', 'refine', 'dedup')]; "
            "print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout.strip() == "False"


def test_the_judge_on_ray_reads_log_probabilities_from_the_actors_like_a_local_run(tmp_path, cluster):
    pairs = [{"prompt": f"Question number {i} about tides?", "response": "BAD answer text.",
              "revision": "GOOD answer text." if i % 3 else "Another BAD text."} for i in range(8)]
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    rules = write_jsonl(tmp_path / "rules.jsonl", [{"match": "Answer A: GOOD", "choices": {" A": -0.1, " B": -2.0}},
                                                  {"match": "Answer B: GOOD", "choices": {" A": -1.0, " B": -0.4}},
                                                  {"choices": {" A": -0.2, " B": -1.7}}])
    be = ["--backend", "scripted", "--model", str(rules), "--no-cache"]
    local = jsonl(run_cli("judge", str(src), *be, "-q").stdout)
    remote = jsonl(run_cli("judge", str(src), *be, *cluster["args"], "--ray-actors", "2", "-q",
                           env=cluster["env"]).stdout)
    assert [r["judge"]["method"] for r in remote] == ["logprobs"] * 8  # not a vote: the actors give log-probs
    assert [r["judge"]["score"] for r in remote] == [r["judge"]["score"] for r in local]
    assert {r["judge"]["chosen"] for r in remote} == {"revision", "tie"}
