import json
import subprocess
import sys

import pytest

from support import ROOT, jsonl, run_cli, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from selfalign.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); "
            "assert r.exit_code == 0 and 'principle' in r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'vllm', 'sentence_transformers', 'ray') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # (each command's help: test_cli_options.py)


def test_import_selfalign_stays_light():
    code = "import sys, selfalign, selfalign.cli; print(any(m in sys.modules for m in ('torch', 'pydantic')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_piped_workflow_with_scripted_backend(tmp_path, script):
    rules = script([
        {"match": "what it does not know", "text": f" {GOOD} It is a steady rhythm that sailors have used for centuries."},
        {"match": "\n6.", "text": " Explain why the sea has tides.\n7. Describe how bees make honey."},
        {"match": "tides", "text": f" The user asks about science. By 8 (knowledge recitation) I recall facts.\n\nSage: {GOOD}"},
        {"match": "honey", "text": " Following 2 (informative).\n\nSage: Bees make honey."},
    ])
    be = ["--backend", "scripted", "--model", rules]
    prompts = run_cli("generate", "--num", "2", "--no-embeddings", *be, "-q").stdout
    assert len(jsonl(prompts)) == 2
    aligned = run_cli("principle", *be, "--dropped", str(tmp_path / "drop.jsonl"),
                      "--report", str(tmp_path / "r.json"), stdin=prompts)
    rows = jsonl(aligned.stdout)
    assert len(rows) == 1 and rows[0]["response"] == GOOD and rows[0]["principles"] == ["8"]
    assert rows[0]["provenance"][-1]["stage"] == "principle"
    assert "kept" in aligned.stderr and "too_short" in aligned.stderr  # the summary goes to stderr
    dropped = jsonl(tmp_path / "drop.jsonl")
    assert [d["drop_reason"] for d in dropped] == ["too_short"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kept"] == 1 and report["dropped"] == {"too_short": 1} and report["principles_cited"] == {"8": 1}
    sft = run_cli("export", "--format", "messages", "-q", stdin=run_cli("dedup", "-q", stdin=aligned.stdout).stdout)
    msgs = jsonl(sft.stdout)[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"] and msgs[1]["content"] == GOOD
    verbose = run_cli("refine", str(tmp_path / "none.jsonl"), *be, "-q", check=False)
    assert verbose.returncode == 1 and "none.jsonl: cannot open" in verbose.stderr
    src = write_jsonl(tmp_path / "aligned.jsonl", rows)
    refined = jsonl(run_cli("refine", str(src), *be, "-q").stdout)
    assert refined[0]["response"] == GOOD and refined[0]["verbose_response"].startswith(GOOD)


def test_bad_input_line_is_named_and_good_records_survive(tmp_path, script):
    rules = script([{"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "Why are there tides?"}\n{"prompt": \n{"prompt": "What is a neap tide?"}\n')
    proc = run_cli("principle", str(src), "--backend", "scripted", "--model", rules,
                   "--dropped", str(tmp_path / "d.jsonl"))
    assert len(jsonl(proc.stdout)) == 2
    assert f"{src}:2: contains invalid json" in proc.stderr
    assert jsonl(tmp_path / "d.jsonl")[0]["drop_reason"] == "invalid_input"
    fail = run_cli("principle", str(src), "--backend", "scripted", "--model", rules, "--on-error", "fail", check=False)
    assert fail.returncode == 1 and f"{src}:2:" in fail.stderr


def test_bad_principle_file_stops_before_any_work(tmp_path, script):
    empty = tmp_path / "p.md"
    empty.write_text("nothing\n")
    proc = run_cli("principle", "--principles", str(empty), "--backend", "scripted", "--model",
                   script([{"text": "x"}]), stdin='{"prompt": "q"}\n', check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{empty}: no principles found" in proc.stderr


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "selfalign", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "generate" in proc.stdout


def test_each_kind_of_bad_line_gets_one_clear_line_and_no_good_record_is_lost(tmp_path, script):
    rules = script([{"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    src = tmp_path / "in.jsonl"
    big = json.dumps({"prompt": "big " * 2_600_000})  # a 10 MB line: valid, so it is read (and judged)
    src.write_bytes(b"\n".join([
        b'{"prompt": "Why are there tides?"}',   # 1 good
        b'{"prompt": ',                           # 2 malformed JSON
        b'{"prompt": ["a list"]}',                # 3 wrong type
        b'{"text": "no prompt field"}',           # 4 missing field
        b'',                                      # 5 empty line
        b'{"prompt": "caf\xe9"}',                 # 6 not UTF-8 (latin-1 byte)
        big.encode(),                             # 7 10 MB
        b'{"prompt": "What is a neap tide?"}',    # 8 good
    ]) + b"\n")
    proc = run_cli("principle", str(src), "--backend", "scripted", "--model", rules, "--no-cache",
                   "--quarantine", str(tmp_path / "q.jsonl"), "--dropped", str(tmp_path / "d.jsonl"))
    kept = [r["prompt"] for r in jsonl(proc.stdout)]
    assert kept == ["Why are there tides?", "What is a neap tide?"]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("skipped")]
    expect = {2: "contains invalid json", 3: "prompt: Input should be a valid string", 4: "prompt: Field required",
              5: "empty line", 6: "is not valid utf-8"}
    assert len(lines) == len(expect)
    for (n, problem), line in zip(expect.items(), lines, strict=True):
        assert f"{src}:{n}: {problem}" in line
    q = jsonl(tmp_path / "q.jsonl")
    assert [x["line"] for x in q] == [2, 3, 4, 5, 6] and all(x["file"] == str(src) for x in q)
    d = jsonl(tmp_path / "d.jsonl")
    assert [x["drop_reason"] for x in d] == ["prompt_too_long"]  # the 10 MB prompt: judged, not cut


@pytest.mark.parametrize("n", [2, 3])
def test_shards_cover_the_input_exactly_once(tmp_path, script, n):
    rules = script([{"match": "number 3 ", "text": " By 2 (informative).\n\nSage: Short."},
                    {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"Question number {i} ?"} for i in range(30)])
    be = ["--backend", "scripted", "--model", rules, "--no-cache", "-q"]
    whole = {r["id"] for r in jsonl(run_cli("principle", str(src), *be).stdout)}
    parts = []
    for i in range(n):
        out = run_cli("principle", str(src), *be, "--shard", f"{i}/{n}", "--dropped", str(tmp_path / f"d{i}.jsonl"))
        parts.append([r["id"] for r in jsonl(out.stdout)] + [d["id"] for d in jsonl(tmp_path / f"d{i}.jsonl")]
                     if (tmp_path / f"d{i}.jsonl").exists() else [r["id"] for r in jsonl(out.stdout)])
    every = [i for p in parts for i in p]
    assert len(every) == len(set(every)) == 30  # no overlap, nothing missing (kept or dropped)
    kept = {r for p in parts for r in p} - {d["id"] for i in range(n) if (tmp_path / f"d{i}.jsonl").exists()
                                            for d in jsonl(tmp_path / f"d{i}.jsonl")}
    assert kept == whole and all(parts)
