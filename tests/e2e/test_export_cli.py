


from support import jsonl, run_cli, write_jsonl

ROWS = [{"prompt": f"Question number {i}?", "thoughts": "By 2 (informative) I answer.", "principles": ["2"],
         "response": f"Answer number {i}, explained in a full sentence.", "verbose_response": f"A long answer {i}."}
        for i in range(3)]


def test_max_tokens_drops_with_a_reason_using_offline_tiktoken(tmp_path):
    long = {**ROWS[0], "prompt": "word " * 300}
    src = write_jsonl(tmp_path / "a.jsonl", [ROWS[1], long])
    proc = run_cli("export", str(src), "--tokenizer", "tiktoken:o200k_base", "--max-tokens", "100",
                   "--dropped", str(tmp_path / "d.jsonl"), "-q")
    out = jsonl(proc.stdout)
    assert len(out) == 1 and 0 < out[0]["num_tokens"] < 100
    d = jsonl(tmp_path / "d.jsonl")[0]
    assert d["drop_reason"] == "too_many_tokens" and d["record"]["thoughts"] == long["thoughts"]
