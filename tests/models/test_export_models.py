
import pytest

from selfalign.stages.export import Export, ExportInput, export

from support import run_cli, write_jsonl

ROWS = [{"prompt": f"Question number {i}?", "thoughts": "By 2 (informative) I answer.", "principles": ["2"],
         "response": f"Answer number {i}, explained in a full sentence.", "verbose_response": f"A long answer {i}."}
        for i in range(3)]


def test_messages_output_loads_in_datasets_and_trl(tmp_path):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("trl")
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    from selfalign.io.paths import model_dir

    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    out = tmp_path / "sft.jsonl"
    run_cli("export", str(src), "--format", "messages", "--system", "Be helpful.", "-o", str(out), "-q")
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == 3 and is_conversational(ds[0])
    tok = AutoTokenizer.from_pretrained(model_dir())
    rendered = apply_chat_template(ds[0], tok)
    assert "Question number 0?" in rendered["text"] and "Answer number 0" in rendered["text"]


def test_trl_sft_trainer_tokenizes_the_export_and_takes_a_step(tmp_path):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfalign.io.paths import model_dir

    src = write_jsonl(tmp_path / "a.jsonl", ROWS)
    out = tmp_path / "sft.jsonl"
    run_cli("export", str(src), "--format", "messages", "--system", "Be helpful.", "-o", str(out), "-q")
    ds = datasets.load_dataset("json", data_files=str(out), split="train")  # as written, id column included
    tok = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModelForCausalLM.from_pretrained(model_dir())
    cfg = trl.SFTConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=3,
                        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, max_length=256)
    trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    first = trainer.train_dataset[0]
    text = tok.decode(first["input_ids"])
    assert "Question number" in text and "Answer number" in text and "informative" not in text
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0


# -- preference pairs (dpo) --------------------------------------------------------------------------------
REVISED = "I can't see live prices, so check a financial news site for today's figure and its recent history."
PAIRS = [
    {**ROWS[0], "critique": "Invented figure. It breaks principle 7.", "violations": ["7"], "revision": REVISED,
     "checked_principles": ["2", "7"]},
    {**ROWS[1], "critique": "Fine. It breaks none of the principles.", "violations": [], "revision": None},
    {**ROWS[2], "critique": "Vague.", "violations": ["3"], "revision": "A better answer 2, with the steps spelled out.",
     "judge": {"principle": "3", "score": -2.5, "margin": 2.5, "chosen": "response", "method": "logprobs",
               "pair": ["response", "revision"], "confidence": 0.92}},  # as the judge stage writes it
    {**ROWS[0], "id": "judged-low", "violations": ["7"], "revision": REVISED,
     "judge": {"principle": "all", "margin": 0.25, "chosen": "revision"}},
    {**ROWS[0], "id": "judged-no-margin", "violations": ["7"], "revision": REVISED, "judge": {"principle": 7}},
    {**ROWS[0], "id": "bad-judge", "revision": REVISED, "judge": {"margin": 1.0, "chosen": "neither"}},
    {**ROWS[0], "id": "same", "revision": ROWS[0]["response"].upper()},
    {**ROWS[0], "id": "tie", "revision": REVISED, "judge": {"score": 0.0, "margin": 0.0, "chosen": "tie"}},
    {"prompt": "Two samples?", "id": "sampled", "responses": ["First sampled answer.", "Second sampled answer."],
     "judge": {"principle": "all", "margin": 1.5, "chosen": "responses[1]", "pair": ["responses[0]", "responses[1]"]}},
    {"prompt": "Two samples, unjudged?", "id": "sampled-unjudged", "responses": ["One answer.", "Another answer."]},
]


def dpo(rows, **cfg):

    out = list(export([ExportInput.model_validate(r) for r in rows], Export(format="dpo", **cfg)))
    return [o for o in out if isinstance(o, dict)], [o for o in out if not isinstance(o, dict)]


def test_trl_dpo_trainer_reads_the_export_and_takes_a_step(tmp_path):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfalign.io.paths import model_dir

    kept, _ = dpo(PAIRS, system="Be helpful.", min_margin=0)  # no minimum: margins both known and unknown
    out = write_jsonl(tmp_path / "dpo.jsonl", kept)  # as written, side fields (id, margin, principle) included
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert {"prompt", "chosen", "rejected", "margin", "principle"} <= set(ds.column_names) and ds.num_rows == 5
    tok = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModelForCausalLM.from_pretrained(model_dir())
    cfg = trl.DPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                        use_cpu=True, save_strategy="no", logging_steps=1, max_length=256)
    trainer = trl.DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    first = trainer.train_dataset[0]
    ids = first.get("prompt_ids", first.get("input_ids"))
    assert "Question number" in tok.decode(ids)
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
