import pytest

from selfalign.text.embeddings import Embedder
from selfalign.records import Dropped, Record
from selfalign.report.counts import Report
from selfalign.stages.dedup import Dedup, dedup

from support import jsonl, run_cli, write_jsonl


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def recs(*texts):
    return [Record.model_validate({"id": f"r{i}", "prompt": t}) for i, t in enumerate(texts)]


def test_normalised_exact_duplicates_all_go_distinct_records_all_stay():
    rs = recs("What is the capital of France?", "what is the capital of france", "WHAT IS  the capital, of France?!",
              "How do airplanes fly?", "Write a poem about the sea.", "how do airplanes fly")
    report = Report("dedup")
    out = list(report.tally(dedup(rs, Dedup(threshold=2.0, jaccard=2.0), report, None)))
    assert [r.id for r in out if not isinstance(r, Dropped)] == ["r0", "r3", "r4"]
    dropped = [r for r in out if isinstance(r, Dropped)]
    assert [(d.id, d.duplicate_of) for d in dropped] == [("r1", "r0"), ("r2", "r0"), ("r5", "r3")]
    assert report.dropped["exact_duplicate"] == 3


def test_semantic_duplicates_keep_the_first_occurrence(embedder):
    rs = recs("How can I improve my sleep quality?", "Write a limerick about a frog.",
              "What can I do to improve the quality of my sleep?", "Explain how vaccines train the immune system.",
              "Give me ways to sleep better and improve my sleep quality.")
    out = list(dedup(rs, Dedup(threshold=0.8).model_copy(update={"block": 2}), Report("dedup"), embedder))
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


DUPES = ["How can I improve my sleep quality?", "Write a limerick about a frog.",
         "What can I do to improve the quality of my sleep?", "Explain how vaccines train the immune system.",
         "Give me ways to sleep better and improve my sleep quality.", "How do vaccines teach the immune system?",
         "Write a short limerick about a frog.", "Name three uses of baking soda.", "What is a black hole?",
         "Explain what a black hole is.", "Translate 'good morning' into French.", "List three uses of baking soda."]


def test_cluster_search_keeps_the_same_records_as_all_pairs(embedder):
    rs = recs(*DUPES)
    a = list(dedup(rs, Dedup(threshold=0.8, search="all-pairs"), Report("dedup"), embedder))
    report = Report("dedup")
    b = list(dedup(rs, Dedup(threshold=0.8, search="cluster", cluster_size=3).model_copy(update={"probes": 3}), report, embedder))
    assert report.extra["search"].startswith("4 clusters")
    assert [(r.id, getattr(r, "duplicate_of", None)) for r in a] == [(r.id, getattr(r, "duplicate_of", None)) for r in b]
    assert 0 < sum(isinstance(r, Dropped) for r in a) < len(DUPES) - 3


def test_exact_copies_follow_the_record_they_copy(embedder):
    rs = recs("How can I improve my sleep quality?", "What can I do to improve the quality of my sleep?",
              "what can i do to improve the quality of my sleep", "Name three prime numbers.",
              "Tell me about the French revolution.", "tell me about the french revolution!")
    against = [("eval-1", "Tell me about the French Revolution, please.")]
    out = {r.id: r for r in dedup(rs, Dedup(threshold=0.8), Report("dedup"), embedder, against)}
    assert out["r1"].drop_reason == "semantic_duplicate" and out["r1"].duplicate_of == "r0"
    # r2 is an exact copy of r1, which went: it points at the record that was kept
    assert out["r2"].drop_reason == "exact_duplicate" and out["r2"].duplicate_of == "r0"
    assert out["r4"].drop_reason == "contaminated" and out["r5"].drop_reason == "contaminated"
    assert out["r5"].duplicate_of == "eval-1"
    assert not isinstance(out["r3"], Dropped) and not isinstance(out["r0"], Dropped)


def test_cli_cluster_search_is_reported(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": t} for t in DUPES])
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    a = run_cli("dedup", str(src), "--threshold", "0.8", "-q", env=env)
    b = run_cli("dedup", str(src), "--threshold", "0.8", "--search", "cluster", "--cluster-size", "4",
                "--report", str(tmp_path / "r.json"), "-q", env=env)
    assert jsonl(a.stdout) == jsonl(b.stdout) and len(jsonl(a.stdout)) < len(DUPES)
    assert "clusters" in __import__("json").loads((tmp_path / "r.json").read_text())["search"]


def test_normalisation_keeps_punctuation_that_carries_meaning():
    from selfalign.records import normalize_text, stable_id

    assert normalize_text("What is C++?") == normalize_text("what is  c++") != normalize_text("What is C#?")
    assert normalize_text("Python 3.5") != normalize_text("Python 35") and normalize_text(".NET") != normalize_text("NET")
    assert stable_id("What is C++?") != stable_id("What is C#?")
    out = list(dedup(recs("What is C++?", "What is C#?", "what is c++"), Dedup(threshold=2.0, jaccard=2.0),
                     Report("dedup"), None))
    assert [o.id for o in out if isinstance(o, Dropped)] == ["r2"]


def test_the_lexical_pass_catches_a_word_inserted_deleted_or_swapped_without_embeddings():
    rs = recs("How do I bake sourdough bread at home with a cast iron pot?",
              "How do I bake sourdough bread at home with a cast iron pot please?",
              "How do I bake sourdough bread at home with cast iron pot?",
              "How can I bake sourdough bread at home with a cast iron pot?",
              "Write a short poem about autumn leaves falling in the park.")
    report = Report("dedup")
    out = {o.id: o for o in dedup(rs, Dedup(threshold=2.0), report, None)}
    assert [k for k, o in out.items() if not isinstance(o, Dropped)] == ["r0", "r4"]
    for rid in ("r1", "r2", "r3"):
        d = out[rid]
        assert d.drop_reason == "lexical_duplicate" and d.match == "lexical" and d.duplicate_of == "r0"
        assert 0.7 <= d.similarity <= 1 and "Jaccard" in d.detail


@pytest.mark.parametrize("a,b", [("What is 12 times 13?", "What is 12 times 14?"),
                                 ("Can penguins fly in the wild?", "Can penguins not fly in the wild?"),
                                 ("How do I convert 30 degrees Fahrenheit to Celsius?",
                                  "How do I convert 30 degrees Celsius to Fahrenheit?"),
                                 ("What is the best way to learn C++ quickly?", "What is the best way to learn C# quickly?"),
                                 ("What is the capital city of France?", "What is the capital city of Spain?")])
def test_look_alikes_that_mean_different_things_are_both_kept(embedder, a, b):
    report = Report("dedup")
    out = list(dedup(recs(a, b), Dedup(threshold=0.7, jaccard=0.5), report, embedder))
    assert not any(isinstance(o, Dropped) for o in out), out
    assert report.extra["pairs_kept_apart_by_second_look"] >= 1
    out = list(dedup(recs(a, b), Dedup(threshold=0.7, jaccard=0.5, second_look=False), Report("d"), embedder))
    assert isinstance(out[1], Dropped)  # without the second look they merge: the test can fail


def test_against_uses_the_lexical_pass_too():
    rs = recs("Natalia sold clips to 48 of her friends in April and then half as many in May. How many in all?",
              "Write a haiku about the first snow of the year.")
    ref = [("gsm-1", "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                     "How many clips did Natalia sell altogether in April and May?")]
    out = {o.id: o for o in dedup(rs, Dedup(threshold=2.0, jaccard=0.5), Report("dedup"), None, against=ref)}
    assert out["r0"].drop_reason == "contaminated" and out["r0"].match == "lexical" and out["r0"].duplicate_of == "gsm-1"
    assert not isinstance(out["r1"], Dropped)


def test_the_edit_type_benchmark_runs_on_a_sample_and_keeps_look_alikes_apart(tmp_path):
    import json
    import subprocess
    import sys

    from support import ROOT

    out = tmp_path / "edits.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dedup_edits.py"), "--sample", "30",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())["defaults"]
    assert res["combined:insert_1"] >= 0.95 and res["combined:case_space_punct"] == 1.0
    assert res["combined:lookalike_wrongly_dropped"] <= 0.05
    assert res["lexical:insert_1"] > res["lexical:paraphrase"]  # the lexical pass sees edits, not rewordings
    assert "recall per edit type" in proc.stdout


def test_texts_without_words_are_only_duplicates_when_exact():
    out = list(dedup(recs("😀", "🎉🎉", "→ ?", "😀"), Dedup(threshold=2.0), Report("dedup"), None))
    assert [o.id for o in out if isinstance(o, Dropped)] == ["r3"]


def _split_zip(tmp_path, files: dict[str, str], parts: int = 3):
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    data = buf.getvalue()
    step = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        p = tmp_path / "parts" / f"model.zip.{i + 1:03d}"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data[i * step:(i + 1) * step])
        paths.append(p)
    return paths, hashlib.sha256(data).hexdigest()


def test_bundled_mpnet_is_joined_checked_and_unpacked_once(tmp_path, monkeypatch):
    from selfalign.text.embeddings import mpnet_dir

    monkeypatch.setenv("SELFALIGN_MODELS_DIR", str(tmp_path / "models"))
    parts, sha = _split_zip(tmp_path, {"all-mpnet-base-v2/modules.json": "[]", "all-mpnet-base-v2/config.json": "{}",
                                       "desktop.ini": ""})
    with pytest.raises(RuntimeError, match="sha256"):
        mpnet_dir(parts, sha256="0" * 64)
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()
    assert list((tmp_path / "models").iterdir()) == []  # no half-unpacked folder left behind
    out = mpnet_dir(parts, sha256=sha)
    assert (out / "modules.json").read_text() == "[]" and (out / "config.json").exists()
    assert mpnet_dir([tmp_path / "gone"], sha256=sha) == out  # unpacked once: the parts are not read again


def test_default_dedup_catches_paraphrases_and_keeps_lookalikes_apart(tmp_path):
    """At the defaults (all-mpnet-base-v2, its measured cosine): a reworded request goes, prompts that differ in
    direction, a symbol or one content word stay. With all-MiniLM-L6-v2 at its 0.90 the paraphrase survives."""
    rows = ["How do I keep my houseplants alive while I am away on vacation?", "Convert 30 miles to kilometres.",
            "What is F#?", "Why is the sky blue during the day?",
            "What is the best way to make sure my indoor plants survive while I travel for a couple of weeks?",
            "Convert 30 kilometres to miles.", "What is C#?", "Why is the sky red at sunset?"]
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"p{i}", "prompt": t} for i, t in enumerate(rows)])
    out = run_cli("dedup", str(src), "--dropped", str(tmp_path / "d.jsonl"), "-q")
    assert [r["id"] for r in jsonl(out.stdout)] == ["p0", "p1", "p2", "p3", "p5", "p6", "p7"]
    (d,) = jsonl(tmp_path / "d.jsonl")
    assert (d["id"], d["duplicate_of"], d["match"]) == ("p4", "p0", "semantic") and 0.75 <= d["similarity"] < 0.9
    small = run_cli("dedup", str(src), "--embedding-model", "all-minilm-l6-v2", "-q")
    assert len(jsonl(small.stdout)) == len(rows)


def test_the_task_pool_benchmark_keeps_distinct_tasks_and_drops_rewordings(tmp_path):
    """benchmarks/dedup_pools.py at the defaults: tasks on one subject asking for another output stay (38 of 201
    went before the second look compared what they ask for), rewordings still go."""
    import json
    import subprocess
    import sys

    from support import ROOT

    out = tmp_path / "pools.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dedup_pools.py"), "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())["defaults"]
    assert res["written:all"]["false_drops"] <= 8 and res["written:all"]["recall"] >= 0.9
    assert res["bundled seeds:all"]["false_drops"] == 0
    assert "per pair type" in proc.stdout
