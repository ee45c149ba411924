import json

import pytest

from selfalign.records import AlignedRecord
from selfalign.counts import Report
from selfalign.stages.export import ExportConfig, export

from conftest import jsonl, run_cli, write_jsonl

ROWS = [{"prompt": f"Question number {i}?", "thoughts": "By 2 (informative) I answer.", "principles": ["2"],
         "response": f"Answer number {i}, explained in a full sentence.", "verbose_response": f"A long answer {i}."}
        for i in range(3)]


def test_three_formats_without_thoughts_or_principles():
    recs = [AlignedRecord.model_validate(r) for r in ROWS]
    for fmt, key in (("messages", "messages"), ("sharegpt", "conversations"), ("alpaca", "instruction")):
        out = list(export(recs, ExportConfig(format=fmt, system="Be helpful."), Report("export")))
        assert len(out) == 3 and key in out[0]
        text = json.dumps(out)
        assert "thoughts" not in text and "informative" not in text and "principles" not in text
    m = list(export(recs[:1], ExportConfig(system="Be helpful."), Report("e")))[0]["messages"]
    assert [x["role"] for x in m] == ["system", "user", "assistant"]
    assert m[2]["content"] == ROWS[0]["response"]
    v = list(export(recs[:1], ExportConfig(answer="verbose_response"), Report("e")))[0]["messages"]
    assert [x["role"] for x in v] == ["user", "assistant"] and v[1]["content"] == "A long answer 0."


def test_max_tokens_drops_with_a_reason_using_offline_tiktoken(tmp_path):
    long = {**ROWS[0], "prompt": "word " * 300}
    src = write_jsonl(tmp_path / "a.jsonl", [ROWS[1], long])
    proc = run_cli("export", str(src), "--tokenizer", "tiktoken:o200k_base", "--max-tokens", "100",
                   "--dropped", str(tmp_path / "d.jsonl"), "-q")
    out = jsonl(proc.stdout)
    assert len(out) == 1 and 0 < out[0]["num_tokens"] < 100
    d = jsonl(tmp_path / "d.jsonl")[0]
    assert d["drop_reason"] == "too_many_tokens" and d["record"]["thoughts"] == long["thoughts"]


def test_messages_output_loads_in_datasets_and_trl(tmp_path):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("trl")
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    from selfalign.paths import model_dir

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

    from selfalign.paths import model_dir

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
