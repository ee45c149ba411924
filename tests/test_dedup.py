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


def test_against_removes_a_planted_test_set_item(tmp_path):
    evalset = write_jsonl(tmp_path / "eval.jsonl", [
        {"id": "gsm-17", "question": "A farmer has 17 sheep and all but 9 run away. How many sheep are left?"},
        {"question": "What is the capital city of Australia?"}])
    train = [{"prompt": "Explain how rainbows form."},
             {"prompt": "A farmer has 17 sheep, and all but nine run away. How many sheep are left?"},
             {"prompt": "what is the capital city of australia"},
             {"prompt": "Give me a recipe for pancakes."}]
    src = write_jsonl(tmp_path / "train.jsonl", train)
    proc = run_cli("dedup", str(src), "--against", str(evalset), "--dropped", str(tmp_path / "d.jsonl"),
                   "--report", str(tmp_path / "r.json"), "-q", env={"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")})
    assert [r["prompt"] for r in jsonl(proc.stdout)] == [train[0]["prompt"], train[3]["prompt"]]
    d = {x["record"]["prompt"]: x for x in jsonl(tmp_path / "d.jsonl")}
    assert d[train[1]["prompt"]]["drop_reason"] == "contaminated" and d[train[1]["prompt"]]["duplicate_of"] == "gsm-17"
    assert d[train[2]["prompt"]]["duplicate_of"] == f"{evalset}:2"
    assert __import__("json").loads((tmp_path / "r.json").read_text())["dropped"] == {"contaminated": 2}


def test_embeddings_are_cached_by_text_so_a_grown_file_embeds_only_what_is_new(tmp_path):
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    rows = [{"prompt": f"Tell me something interesting about the number {i}."} for i in range(6)]
    first = write_jsonl(tmp_path / "a.jsonl", rows[:4])
    out1 = run_cli("dedup", str(first), env=env)
    assert "0 from cache, 4 computed" in out1.stderr
    grown = write_jsonl(tmp_path / "b.jsonl", rows)
    out2 = run_cli("dedup", str(grown), env=env)
    assert "4 from cache, 2 computed" in out2.stderr
    assert jsonl(out2.stdout)[:len(jsonl(out1.stdout))] == jsonl(out1.stdout)
