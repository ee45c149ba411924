import json



def test_every_count_in_the_report_is_a_record_in_dropped_or_the_output(tmp_path):
    """Counts come from the stream in one place: a drop the report counts (surplus after --num included)
    is a line in --dropped, for generate and for the stages after it."""
    from collections import Counter

    from support import jsonl, run_cli, write_jsonl

    rules = write_jsonl(tmp_path / "rules.jsonl", [{"text": " Explain how tides work.\n7. Describe how bees make honey."
                                                            "\n8. Name three rivers in Europe.\n9. Why do cats purr?"}])
    be = ["--backend", "scripted", "--model", str(rules)]
    out, dropped, report = tmp_path / "p.jsonl", tmp_path / "d.jsonl", tmp_path / "r.json"
    run_cli("generate", "--num", "2", "--no-embeddings", *be, "-o", str(out), "--dropped", str(dropped),
            "--report", str(report), "-q")
    rep = json.loads(report.read_text())
    by_reason = Counter(d["drop_reason"] for d in jsonl(dropped))
    assert rep["dropped"].get("surplus_after_num", 0) >= 1
    assert rep["dropped"] == dict(by_reason) and rep["kept"] == len(jsonl(out)) == 2
    assert rep["read"] == rep["kept"] + sum(by_reason.values())
