"""`make bench-scale`: a Dromedary-scale run, rehearsed on a fast fake server.

The method's scale is ~360k prompts -> ~260k SFT pairs. This runs a whole recipe (load N prompts, principle
with two sampled answers each, dedup, export SFT, judge the pairs, export DPO) with `selfalign run` against an
OpenAI-compatible fake server in a separate process, and measures the pipeline's own process, stage by stage:

  records/s, CPU seconds per 1,000 records (the pipeline's process; the server's CPU apart), peak RSS, bytes
  written, the cache's size; and the SIGKILL test: the principle stage is killed (SIGKILL) once its output
  holds half the prompts, run again, and every prompt id is checked to come out exactly once (kept or dropped).

Each stage runs as its own `selfalign run` process over a recipe cut after that stage (the run reuses the stages
before it, by their keys), so each process's rusage is that stage's: its CPU time and peak memory. Each also
pays the command's start (imports) and the check of the stages it reuses; `--size` small shows that floor.

The prompts (deterministic, `synthesize`): nine in ten are instructions about real sentences (first sentences
of the docstrings of the installed packages, `texts.real_sentences`) in one of four frames, so they are varied;
one in ten is a query of the labelled quality sets (benchmarks/data/quality*), cycled. The server answers a
labelled query with its labelled completion (good or bad); any other with an answer it writes from the prompt's
sentence, and about a third of those spoiled the way the labelled bad ones are (cut at the token limit,
looping, too short, a refusal, no answer after the thoughts, another language), chosen per prompt and sample
seed, so the gates do real work. It is vLLM-like where selfalign asks (a model list with `max_model_len`,
owned by vllm, /tokenize, echo log-probabilities for the judge) and answers in well under a millisecond.

    python benchmarks/scale.py --size 10000 [--size 30000] [--no-kill] [--keep DIR] [--json OUT]
    python benchmarks/scale.py --dedup 5000 [--ray]      # dedup alone, default model, on a sample
    python benchmarks/scale.py serve --port 8000         # the fake server alone

Then the projection for one node of 8 H100s (see `project`): generation time from an assumed vLLM throughput
against the pipeline's measured CPU per record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from quality import QUERY, JSONHandler  # noqa: E402  (QUERY: the principle prompt's last user turn)

LABELLED = [HERE / "data" / "quality", HERE / "data" / "quality-holdout"]
FRAMES = [
    'Write a Python function whose docstring would be: "{s}"',
    'Explain in plain words what this line from a library\'s documentation means: "{s}"',
    'How would I write a unit test for code documented as follows: "{s}"',
    'A colleague\'s code comment says "{s}" What should I check before relying on it?',
]
LABELLED_EVERY = 10  # one prompt in ten is a labelled query
THOUGHTS = [
    " The user asks about documented code behaviour. Following 2 (informative) I should explain it accurately, "
    "and by 3 (helpful) a concrete next step is worth adding.",
    " A programming question. 3 (helpful) means a practical answer, and 2 (informative) says to be precise about "
    "what the code does and does not promise.",
    " This is about reading documentation. By 2 (informative) I explain the sentence, and following 4 (candor) I "
    "say what it leaves unsaid.",
]
LEADS = ["Put simply, the documentation says this:", "In plain words:", "The sentence describes one job:",
         "Here is what it promises:"]
MORE = [
    "In practice the caller hands over the inputs it needs and gets the result back without having to know how "
    "the work is done inside.",
    "A good first test calls it on a small input whose result you can work out by hand, then on an edge case "
    "such as an empty value or a missing key.",
    "Before relying on it, read what it does on errors: whether it raises an exception, returns a default, or "
    "quietly does nothing.",
    "If the behaviour matters to you, pin the library's version, because wording like this can change between "
    "releases without the function's name changing.",
    "Look at the type of what comes back as well: a copy and a view of the same data behave very differently "
    "once you start changing it.",
    "When the documentation is this short, the source code and the project's own tests are the quickest way to "
    "settle what it really does.",
]
SPANISH = ("En resumen, esta función hace exactamente lo que indica su documentación y devuelve el resultado "
           "al llamador sin efectos secundarios inesperados.")
REFUSAL = "I'm sorry, but I can't help with that request."


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def labelled() -> list[dict]:
    items = [json.loads(line) for d in LABELLED for f in sorted(d.glob("*.jsonl"))
             for line in f.open(encoding="utf-8") if line.strip()]
    return sorted(items, key=lambda i: i["id"])


def synthesize(n: int) -> list[dict]:
    """n prompt records, deterministic for the installed packages: see the module's docstring."""
    from texts import real_sentences

    pool = labelled()
    n_lab = n // LABELLED_EVERY
    sentences = real_sentences(n - n_lab)
    out, k = [], 0
    for i in range(n):
        if i % LABELLED_EVERY == LABELLED_EVERY - 1:
            item = pool[(i // LABELLED_EVERY) % len(pool)]
            rec = {"id": f"p{i:07d}", "prompt": item["query"]}
            if item.get("question_type"):
                rec["question_type"] = item["question_type"]
        else:
            rec = {"id": f"p{i:07d}", "prompt": FRAMES[k % len(FRAMES)].format(s=sentences[k])}
            k += 1
        out.append(rec)
    return out


def answer(query: str, seed: Any, by_query: dict[str, dict]) -> tuple[str, str]:
    """(completion, finish_reason) for the question `query` and the request's seed."""
    item = by_query.get(" ".join(query.split()))
    if item is not None:
        return item["completion"], item["finish_reason"]
    m = re.search(r'"(.+)"', query)
    s = (m.group(1) if m else query).strip()
    h = _h(query, seed)
    more = [MORE[(h >> 8) % len(MORE)], MORE[(h >> 16) % len(MORE)]]
    if more[0] == more[1]:
        more.pop()
    thoughts = THOUGHTS[(h >> 24) % len(THOUGHTS)]
    body = f"{LEADS[(h >> 32) % len(LEADS)]} {s} {' '.join(more)}"
    if query.startswith("Write a Python function"):  # the code it asks for
        name = "_".join(re.findall(r"[a-z]+", s.lower())[:3]) or "task"
        body += f'\n\n```python\ndef {name}(value):\n    """{s}"""\n    result = value\n    return result\n```'

    kind = h % 100
    if kind < 8:  # cut at the token limit
        words = body.split()
        return f"{thoughts}\n\nSage: {' '.join(words[:len(words) * 3 // 5])}", "length"
    if kind < 14:  # a loop
        return f"{thoughts}\n\nSage: {s} " + " ".join([more[0]] * 10), "length"
    if kind < 20:
        return f"{thoughts}\n\nSage: It does what it says.", "stop"
    if kind < 25:
        return f"{thoughts}\n\nSage: {REFUSAL}", "stop"
    if kind < 30:  # no answer after the thoughts
        return thoughts, "stop"
    if kind < 34:
        return f"{thoughts}\n\nSage: {SPANISH}", "stop"
    return f"{thoughts}\n\nSage: {body}", "stop"


MODEL = "scale-fake"


def make_handler(by_query: dict[str, dict]) -> type[JSONHandler]:
    class Handler(JSONHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the backend pools its connections

        def do_GET(self):  # noqa: N802
            if self.path.rstrip("/").endswith("/v1/models"):
                return self._send({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm",
                                                               "max_model_len": 8192}]})
            self._send({"error": "not found"}, 404)

        def do_POST(self):  # noqa: N802
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path == "/tokenize":  # vLLM's: one id per ~4 characters
                n = max(1, len(req.get("prompt", "")) // 4)
                return self._send({"tokens": [1] * n, "count": n, "max_model_len": 8192})
            if not self.path.endswith("/v1/completions"):
                return self._send({"error": "not found"}, 404)
            prompt = req.get("prompt") or ""
            if isinstance(prompt, list):
                prompt = prompt[0] if prompt else ""
            if req.get("echo"):  # the judge: log-probability of the last token (the choice), deterministic
                choice = next((c for c in (" A", " B", " Yes", " No") if prompt.endswith(c)), prompt[-1:])
                lp = -(_h(prompt) % 3000) / 1000
                return self._send({"id": "x", "object": "text_completion", "model": MODEL, "created": 0,
                                   "choices": [{"index": 0, "text": prompt, "finish_reason": "length",
                                                "logprobs": {"tokens": [choice], "token_logprobs": [lp]}}],
                                   "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 0,
                                             "total_tokens": len(prompt) // 4}})
            m = QUERY.search(prompt)
            text, finish = answer(m.group(1) if m else prompt[-200:], req.get("seed"), by_query)
            cut = min((i for s in req.get("stop") or [] if (i := text.find(s)) >= 0), default=None)
            if cut is not None:
                text, finish = text[:cut], "stop"
            self._send({"id": "x", "object": "text_completion", "model": MODEL, "created": 0,
                        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                        "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                                  "total_tokens": (len(prompt) + len(text)) // 4}})

    return Handler


def serve(port: int) -> None:
    by_query = {" ".join(i["query"].split()): i for i in labelled()}
    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):  # a killed client's reset connections: expected
            pass

    server = Quiet(("127.0.0.1", port), make_handler(by_query))
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


class Server:
    """The fake server as a child process; `cpu()` is its CPU seconds so far."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", "--port", "0"], stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def cpu(self) -> float:
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- the recipe, one process per stage --------------------------------------------------------------------------

def stages(prompts: Path) -> list[dict]:
    return [
        {"kind": "load", "path": str(prompts)},
        {"kind": "principle", "n": 2, "seed": 1},  # two samples: the pair for the judge
        {"kind": "dedup"},
        {"kind": "export", "name": "sft", "format": "messages"},
        {"kind": "judge"},  # echo log-probabilities (the server is vLLM-like)
        {"kind": "export", "name": "dpo", "format": "dpo"},
    ]


def recipe_text(out: Path, url: str, upto: list[dict]) -> str:
    def val(v: Any) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"out = {val(str(out))}", "", "[backend]", 'name = "openai"', f"base_url = {val(url)}", "seed = 1",
             "concurrency = 16", ""]
    for st in upto:
        lines += ["[[stage]]", *(f"{k} = {val(v)}" for k, v in st.items()), ""]
    lines += ["[report]", "html = false", ""]
    return "\n".join(lines)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def lines_of(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        if p.exists():
            with p.open("rb") as f:
                n += sum(chunk.count(b"\n") for chunk in iter(lambda f=f: f.read(1 << 20), b""))
    return n


def label(st: dict) -> str:
    return st.get("name") or st["kind"]


def stage_files(out: Path, name: str) -> list[Path]:
    """The stage's output files in the run folder: kept, and dropped where it drops."""
    names = (f"{name}.jsonl", f"{name}-dropped.jsonl")
    return [p for x in names for p in (out / x, out / f"{x}.partial") if p.exists()]


class Proc:
    """A `selfalign run` child, its rusage once it ends (wait4)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.t0 = time.perf_counter()
        self.log = log.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.result: dict | None = None

    def done(self) -> bool:
        """Whether it has ended (reaped here, with its rusage: never through Popen.poll, which loses it)."""
        if self.result is None:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self._finish(status, ru)
        return self.result is not None

    def wait(self) -> dict:
        if self.result is None:
            _, status, ru = os.wait4(self.proc.pid, 0)
            self._finish(status, ru)
        return self.result

    def _finish(self, status: int, ru: Any) -> None:
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        self.result = {"rc": self.proc.returncode, "wall_s": time.perf_counter() - self.t0,
                       "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mib": ru.ru_maxrss / 1024,
                       "written_b": ru.ru_oublock * 512}


def run_size(n: int, work: Path, kill: bool) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    t = time.perf_counter()
    recs = synthesize(n)
    prompts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    print(f"[{n}] {n} prompts synthesized in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    out, cache = work / "run", work / "cache"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    from selfalign.io.paths import models_dir

    env = {**os.environ, "PYTHONPATH": str(ROOT), "SELFALIGN_CACHE_DIR": str(cache),
           "SELFALIGN_MODELS_DIR": str(models_dir())}  # a fresh cache per run; the unpacked models shared
    exe = str(Path(sys.executable).with_name("selfalign"))
    server = Server()
    rows, sigkill = [], None
    try:
        plan = stages(prompts)
        for k, st in enumerate(plan):
            rfile = work / f"recipe-{k + 1}.toml"
            rfile.write_text(recipe_text(out, server.url, plan[:k + 1]), encoding="utf-8")
            cmd = [exe, "run", str(rfile), "--quiet"]
            name = label(st)
            inputs = n if k == 0 else lines_of([out / f"{label(plan[k - 1])}.jsonl"]) if st["kind"] != "judge" \
                else lines_of([out / "dedup.jsonl"])
            before = du(out) + du(cache)
            srv0, load0 = server.cpu(), os.getloadavg()
            if st["kind"] == "principle" and kill:
                m, sigkill = principle_killed(cmd, env, work, out, n)
            else:
                m = Proc(cmd, env, work / "run.log").wait()
            if m["rc"] != 0:
                sys.exit(f"[{n}] stage {name} failed ({m['rc']}); see {work / 'run.log'}")
            files = stage_files(out, name)
            row = {"stage": name, "in": inputs, "out": lines_of([out / f"{name}.jsonl"]),
                   "dropped": lines_of([p for p in files if p.name == f"{name}-dropped.jsonl"]), **m,
                   "grown_b": du(out) + du(cache) - before, "cache_b": du(cache), "server_cpu_s": server.cpu() - srv0,
                   "load": [round(x, 2) for x in load0]}
            rows.append(row)
            print(f"[{n}] {fmt_row(row)}", file=sys.stderr, flush=True)
    finally:
        server.close()
    res = {"size": n, "stages": rows, "sigkill": sigkill, "prompts_b": prompts.stat().st_size}
    if sigkill:
        sigkill.update(check_ids(recs, out))
    return res


def principle_killed(cmd: list[str], env: dict, work: Path, out: Path, n: int) -> tuple[dict, dict]:
    """Run the principle stage, SIGKILL it once its output holds half the prompts, run it again: the two
    processes' figures summed, and what the kill cost."""
    files = lambda: stage_files(out, "principle")  # noqa: E731
    p = Proc(cmd, env, work / "run.log")
    while not p.done() and lines_of(files()) < n // 2:
        time.sleep(0.05)  # polled: the condition is the output's line count
    at_kill = lines_of(files())
    killed_after = time.perf_counter() - p.t0
    if p.done():
        raise RuntimeError("the principle stage ended before half its output was written: nothing to kill")
    os.kill(p.proc.pid, signal.SIGKILL)
    first = p.wait()
    settled = lines_of(files())  # what the killed process left (a partial last line is the resume's to drop)
    q = Proc(cmd, env, work / "run.log")
    resumed = None
    while not q.done():
        if resumed is None and lines_of(files()) > settled:
            resumed = time.perf_counter() - q.t0
        time.sleep(0.05)
    second = q.wait()
    total = {"rc": second["rc"], "wall_s": first["wall_s"] + second["wall_s"],
             "cpu_s": first["cpu_s"] + second["cpu_s"], "maxrss_mib": max(first["maxrss_mib"], second["maxrss_mib"]),
             "written_b": first["written_b"] + second["written_b"]}
    return total, {"killed_at_records": at_kill, "killed_after_s": round(killed_after, 1),
                   "left_on_disk": settled, "resume_first_record_s": round(resumed, 2) if resumed else None,
                   "resumed_run_s": round(second["wall_s"], 1), "resumed_cpu_s": round(second["cpu_s"], 1),
                   "killed_cpu_s": round(first["cpu_s"], 1)}


def check_ids(recs: list[dict], out: Path) -> dict:
    """Every prompt id exactly once in principle's output (kept or dropped): lost, duplicated, unknown."""
    from collections import Counter

    seen: Counter = Counter()
    for p in stage_files(out, "principle"):
        for line in p.open(encoding="utf-8"):
            if line.strip():
                seen[json.loads(line)["id"]] += 1
    want = {r["id"] for r in recs}
    return {"lost": len(want - set(seen)), "twice": sum(1 for v in seen.values() if v > 1),
            "unknown": len(set(seen) - want), "ids_checked": len(want)}


def fmt_row(r: dict) -> str:
    per = r["cpu_s"] / max(r["in"], 1) * 1000
    return (f"{r['stage']:<9} in {r['in']:>7} out {r['out']:>7} dropped {r['dropped']:>6}  "
            f"{r['in'] / r['wall_s']:>8.1f} rec/s  {per:>7.1f} CPU-s/1k  peak {r['maxrss_mib']:>6.0f} MiB  "
            f"written {r['written_b'] / 2**20:>7.1f} MiB  cache {r['cache_b'] / 2**20:>6.1f} MiB  "
            f"server {r['server_cpu_s']:.1f} CPU-s  load {r['load'][0]}")


# --- the projection ----------------------------------------------------------------------------------------------

# Assumed generation throughput of one H100 for an ~8B model on vLLM, output tokens/s, summed over a full
# batch. Published figures for Llama-3.1-8B on one H100 run from about 2,500 to 12,500 output tokens/s (vLLM's
# v0.6.0 blog and third-party sweeps; the high end with short prompts and a large batch). The principle prompt
# is ~1,300 tokens of shared prefix (prefix-cached) plus the question, so we take the low end, 2,500, and show
# the high end beside it.
GPU_TOKS = 2_500
GPU_TOKS_HIGH = 12_500
GPUS, NODE_CPUS = 8, 8 * 12  # one node: 8 H100s and (typically) 96+ cores; we assume 96 usable for the pipeline
TARGET = 360_000
ANSWER_TOKENS = 200  # output tokens per sampled answer (max_tokens 256; the labelled completions average ~150)
SAMPLES = 2


def project(res: list[dict], gpu_toks: int = GPU_TOKS) -> dict:
    """Per record CPU of the pipeline (largest size measured, principle's prompts as the unit) vs generation."""
    big = max(res, key=lambda r: r["size"])
    n = big["size"]
    cpu = sum(r["cpu_s"] for r in big["stages"])
    per_prompt = cpu / n
    gen_s = TARGET * SAMPLES * ANSWER_TOKENS / (gpu_toks * GPUS)
    pipe_1core = per_prompt * TARGET
    by_stage = {r["stage"]: r["cpu_s"] / n * TARGET for r in big["stages"]}
    return {"measured_at": n, "pipeline_cpu_s_per_prompt": per_prompt, "generation_s": gen_s,
            "pipeline_cpu_s_at_target": pipe_1core, "pipeline_s_on_one_core": pipe_1core,
            "stage_cpu_s_at_target": by_stage, "ratio_cpu_to_generation": pipe_1core / gen_s}


def print_results(res: list[dict]) -> None:
    print("\nper stage, each a `selfalign run` process (the recipe cut after that stage); CPU of that process only")
    head = (f"{'size':>7} {'stage':<9} {'in':>7} {'out':>7} {'drop':>6} {'rec/s':>8} {'CPU-s/1k':>8} "
            f"{'peak MiB':>8} {'written MiB':>11} {'grown MiB':>9} {'cache MiB':>9} {'server CPU-s':>12} {'load':>5}")
    print(head)
    for r in res:
        for s in r["stages"]:
            print(f"{r['size']:>7} {s['stage']:<9} {s['in']:>7} {s['out']:>7} {s['dropped']:>6} "
                  f"{s['in'] / s['wall_s']:>8.1f} {s['cpu_s'] / max(s['in'], 1) * 1000:>8.1f} "
                  f"{s['maxrss_mib']:>8.0f} {s['written_b'] / 2**20:>11.1f} {s['grown_b'] / 2**20:>9.1f} "
                  f"{s['cache_b'] / 2**20:>9.1f} "
                  f"{s['server_cpu_s']:>12.1f} {s['load'][0]:>5}")
    for r in res:
        k = r.get("sigkill")
        if k:
            print(f"\nSIGKILL at {r['size']}: killed at {k['killed_at_records']} of {r['size']} principle records "
                  f"({k['killed_after_s']} s in), {k['left_on_disk']} on disk after the kill; rerun: first new "
                  f"record after {k['resume_first_record_s']} s, done in {k['resumed_run_s']} s "
                  f"(CPU {k['resumed_cpu_s']} s; the killed run had used {k['killed_cpu_s']} s); ids: "
                  f"{k['ids_checked']} checked, lost {k['lost']}, twice {k['twice']}, unknown {k['unknown']}"
                  + ("  OK" if k["lost"] == k["twice"] == k["unknown"] == 0 else "  FAILED"))
    names = [st["stage"] for st in res[0]["stages"]]
    peaks = {name: [(r["size"], s["maxrss_mib"]) for r in res for s in r["stages"] if s["stage"] == name]
             for name in names}
    print("\npeak memory per stage by size (goal: flat in N, <= 2 GB at 360k; dedup's embeddings aside):")
    for st, xs in peaks.items():
        grow = ""
        if len(xs) > 1 and xs[-1][0] > xs[-2][0]:  # the two largest: a small run is below the steady state
            slope = (xs[-1][1] - xs[-2][1]) / (xs[-1][0] - xs[-2][0])  # MiB per record
            at = xs[-1][1] + slope * (TARGET - xs[-1][0])
            grow = f"; {slope * 1e4:+.1f} MiB per 10k -> {at:,.0f} MiB at 360k (linear)"
        print(f"  {st:<9} " + ", ".join(f"{n}: {m:.0f} MiB" for n, m in xs) + grow)
    for toks in (GPU_TOKS, GPU_TOKS_HIGH):
        p = project(res, toks)
        print(f"\nprojection at {TARGET:,} prompts, one node of {GPUS} H100s at {toks:,} output tok/s per GPU "
              f"(assumed), {SAMPLES} answers x ~{ANSWER_TOKENS} tokens per prompt:")
        print(f"  generation: {p['generation_s'] / 3600:.1f} h")
        print(f"  pipeline CPU (measured at {p['measured_at']:,}, {p['pipeline_cpu_s_per_prompt'] * 1000:.0f} "
              f"CPU-ms per prompt, all stages): {p['pipeline_cpu_s_at_target'] / 3600:.1f} CPU-h; by stage: "
              + ", ".join(f"{k} {v / 3600:.2f}" for k, v in p["stage_cpu_s_at_target"].items()))
        one = p["pipeline_cpu_s_at_target"]
        print(f"  pipeline CPU / generation time = {p['ratio_cpu_to_generation']:.2f} (goal <= 0.1 x the node's "
              f"{NODE_CPUS} cores = {0.1 * NODE_CPUS:.1f}); one pipeline process runs on about one core, so its wall "
              f"time is about {one / 3600:.1f} h: "
              + ("generation is the bottleneck" if one < p["generation_s"] else
                 f"the pipeline is the bottleneck unless split over >= {one / p['generation_s']:.0f} processes "
                 "(--shard)"))


# --- dedup alone ---------------------------------------------------------------------------------------------

def dedup_sample(n: int, ray: bool, work: Path) -> dict:
    """`selfalign dedup` with its default model on n synthesized prompts, locally and (ray) on 2 Ray actors."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"dedup-{n}.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in synthesize(n)), encoding="utf-8")
    from selfalign.io.paths import models_dir

    exe = str(Path(sys.executable).with_name("selfalign"))
    out = {"size": n}
    for how, extra in (("local", []), ("ray", ["--executor", "ray", "--ray-actors", "2"]))[: 2 if ray else 1]:
        cache = work / f"cache-{how}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SELFALIGN_CACHE_DIR": str(cache),
               "SELFALIGN_MODELS_DIR": str(models_dir())}
        load0 = os.getloadavg()
        m = Proc([exe, "dedup", str(src), "-o", str(work / f"kept-{how}.jsonl"), "--dropped",
                  str(work / f"dropped-{how}.jsonl"), "--quiet", *extra], env, work / f"dedup-{how}.log").wait()
        if m["rc"] != 0:
            sys.exit(f"dedup ({how}) failed; see {work / f'dedup-{how}.log'}")
        kept = [json.loads(x)["id"] for x in (work / f"kept-{how}.jsonl").open(encoding="utf-8")]
        out[how] = {**m, "kept": len(kept), "load": [round(x, 2) for x in load0],
                    "kept_ids": hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]}
        print(f"dedup {how} {n}: {json.dumps(out[how])}", file=sys.stderr, flush=True)
    if ray:
        out["same_records"] = out["local"]["kept_ids"] == out["ray"]["kept_ids"]
    return out


MPNET_GPU = 2_800  # sentences/s, all-mpnet-base-v2 on a V100 (sbert.net's pretrained-models table); an H100 is faster
DEDUP_TARGET = 260_000


def print_dedup(d: dict) -> None:
    n, loc = d["size"], d["local"]
    print(f"\ndedup of {n:,} prompts, all-mpnet-base-v2 on CPU, local: wall {loc['wall_s']:.0f} s, CPU "
          f"{loc['cpu_s']:.0f} s ({loc['cpu_s'] / n * 1000:.1f} CPU-ms per text), peak {loc['maxrss_mib']:.0f} MiB, "
          f"kept {loc['kept']:,} (load {loc['load'][0]})")
    print(f"  projected to {DEDUP_TARGET:,} on CPU: {loc['cpu_s'] / n * DEDUP_TARGET / 3600:.1f} CPU-h of embedding "
          "and search (linear; the search past 20k is clustered, a few % more)")
    print(f"  on one GPU at >= {MPNET_GPU:,} texts/s: {DEDUP_TARGET / MPNET_GPU / 60:.1f} min of embedding, plus the "
          "search on the CPU")
    if "ray" in d:
        r = d["ray"]
        print(f"  Ray, 2 actors: wall {r['wall_s']:.0f} s, CPU of the driver {r['cpu_s']:.0f} s (the actors' apart), "
              f"kept {r['kept']:,}; same records as local: {d['same_records']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        ap = argparse.ArgumentParser()
        ap.add_argument("serve")
        ap.add_argument("--port", type=int, default=8000)
        return serve(ap.parse_args().port)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, action="append", help="prompts (repeatable; default 10000)")
    ap.add_argument("--no-kill", action="store_true", help="skip the SIGKILL test")
    ap.add_argument("--dedup", type=int, help="time dedup alone on this many prompts instead")
    ap.add_argument("--ray", action="store_true", help="with --dedup: also on 2 Ray actors, same records?")
    ap.add_argument("--show", nargs="+", help="print the tables again from these --json files (sizes merged)")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one, removed)")
    ap.add_argument("--json", default=str(HERE / "out" / "scale.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.show:
        loaded = [json.loads(Path(f).read_text()) for f in args.show]
        runs = [r for x in loaded if isinstance(x, list) for r in x]
        if runs:
            print_results(sorted(runs, key=lambda r: r["size"]))
        for d in (x for x in loaded if isinstance(x, dict)):
            print_dedup(d)
        return
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="selfalign-scale-"))
    try:
        if args.dedup:
            d = dedup_sample(args.dedup, args.ray, work / "dedup")
            print_dedup(d)
            result: Any = d
        else:
            result = [run_size(n, work / f"n{n}", not args.no_kill) for n in (args.size or [10_000])]
            print_results(result)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
