"""One TRL DPOTrainer step on a `selfalign export --format dpo` file: proof that the export is what TRL reads.

    python examples/train_dpo.py out/demo/dpo.jsonl [--model PATH] [--steps N]

The default model is the embedded SmolLM2-135M-Instruct; give a real one (and more steps) to train for real.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", help="a dpo export (prompt / chosen / rejected, conversational)")
    ap.add_argument("--model", help="a model folder (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--steps", type=int, default=1)
    args = ap.parse_args()
    path = Path(args.pairs)
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        sys.exit(f"{path}: no preference pairs to train on (see its -dropped.jsonl for why)")

    import datasets
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfalign.io.paths import model_dir

    name = args.model or str(model_dir())
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name)
    with tempfile.TemporaryDirectory() as out:
        cfg = trl.DPOConfig(output_dir=out, max_steps=args.steps, per_device_train_batch_size=min(2, ds.num_rows),
                            report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, max_length=512)
        result = trl.DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok).train()
    print(f"{path}: {ds.num_rows} pairs, {result.global_step} DPOTrainer step(s), loss {result.training_loss:.4f}")


if __name__ == "__main__":
    main()
