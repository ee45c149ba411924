import pytest

from selfalign.embed import Embedder
from selfalign.records import Dropped, Record
from selfalign.report import Report
from selfalign.stages.dedup import DedupConfig, dedup

from conftest import jsonl, run_cli, write_jsonl


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def recs(*texts):
    return [Record.model_validate({"id": f"r{i}", "prompt": t}) for i, t in enumerate(texts)]


def test_normalised_exact_duplicates_all_go_distinct_records_all_stay():
    rs = recs("What is the capital of France?", "what is the capital of france", "WHAT IS  the capital, of France?!",
              "How do airplanes fly?", "Write a poem about the sea.", "how do airplanes fly")
    report = Report("dedup")
    out = list(dedup(rs, DedupConfig(threshold=2.0), report, None))
    assert [r.id for r in out if not isinstance(r, Dropped)] == ["r0", "r3", "r4"]
    dropped = [r for r in out if isinstance(r, Dropped)]
    assert [(d.id, d.duplicate_of) for d in dropped] == [("r1", "r0"), ("r2", "r0"), ("r5", "r3")]
    assert report.dropped["exact_duplicate"] == 3


def test_semantic_duplicates_keep_the_first_occurrence(embedder):
    rs = recs("How can I improve my sleep quality?", "Write a limerick about a frog.",
              "What can I do to improve the quality of my sleep?", "Explain how vaccines train the immune system.",
              "Give me ways to sleep better and improve my sleep quality.")
    out = list(dedup(rs, DedupConfig(threshold=0.8, block=2), Report("dedup"), embedder))
    kept = [r.id for r in out if not isinstance(r, Dropped)]
    assert kept == ["r0", "r1", "r3"]
    assert all(d.duplicate_of == "r0" and d.similarity >= 0.8 for d in out if isinstance(d, Dropped))


def test_cli_dedup_reads_stdin_and_writes_dropped_with_reason(tmp_path):
    rows = [{"prompt": "Tell me a joke about cats."}, {"prompt": "tell me a joke about cats!"},
            {"prompt": "Explain quantum tunnelling simply."}]
    proc = run_cli("dedup", "-", "--dropped", str(tmp_path / "d.jsonl"), "-q",
                   stdin="".join(__import__("json").dumps(r) + "\n" for r in rows))
    assert [r["prompt"] for r in jsonl(proc.stdout)] == [rows[0]["prompt"], rows[2]["prompt"]]
    d = jsonl(tmp_path / "d.jsonl")
    assert d[0]["drop_reason"] == "exact_duplicate" and d[0]["record"]["prompt"] == rows[1]["prompt"]
    _ = write_jsonl
