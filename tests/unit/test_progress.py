"""Progress in a log: a plain line every few seconds while a stage runs, even inside a long batch."""

import threading

from selfalign import Load, Pipeline, Principle
from selfalign.backends.scripted import ScriptedBackend
from selfalign.report.counts import Report
from selfalign.report.progress import StageProgress, progress_line

from support import write_jsonl


def test_a_line_says_stage_done_of_total_rate_and_time_left():
    line = progress_line("principle", 12, 32, 5, 7, elapsed=30.0)
    assert line == "principle: 12/32 records (5 kept, 7 dropped), 0.40 records/s, about 50s left"
    assert progress_line("principle", 0, 32, 0, 0, elapsed=42.0) == \
        "principle: 0/32 records (0 kept, 0 dropped), 42s in, first batch still running"
    assert progress_line("principle", 5, None, 5, 0, elapsed=10.0) == \
        "principle: 5 records (5 kept, 0 dropped), 0.50 records/s"  # stdin: no end, no estimate
    assert progress_line("generate", 3, 8, 3, 9, elapsed=60.0, counts_kept=True) == \
        "generate: 3/8 kept, 0.05 kept/s, about 1m40s left"


def test_a_resumed_stage_counts_what_is_left_and_a_phase_shows_before_any_record():
    rep = Report("dedup")
    rep.extra["already_done"] = 10
    lines: list[str] = []
    shown = StageProgress(rep, lines.append, lambda: 30, every=3600)
    shown.phase("embedding", 256, 1000)
    assert shown.line().startswith("dedup (embedding): 256/1,000 records")
    rep.read, rep.kept = 4, 4
    assert shown.line().startswith("dedup: 4/20 records (4 kept, 0 dropped)")


def test_lines_keep_coming_while_one_batch_is_still_in_the_model(tmp_path, monkeypatch):
    """The backend holds its first batch until the display has spoken twice: the lines come from the clock,
    not from finished records."""
    said: list[str] = []
    two_lines = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        if sum("first batch still running" in s for s in said) >= 2:
            two_lines.set()

    class Held(ScriptedBackend):
        def generate(self, prompts, params):
            assert two_lines.wait(60), f"no progress lines while the batch ran: {said}"
            return super().generate(prompts, params)

    rules = [{"text": " By 2 (informative) I explain.\n\nSage: " + "Tides come from the Moon's gravity. " * 6}]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Why are there tides, case {i}?"} for i in range(3)])
    monkeypatch.setenv("SELFALIGN_PROGRESS_SECONDS", "0.05")
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))
    Pipeline([Load(path=str(prompts)), Principle(keep=["all"])]).run(tmp_path / "out", backend=Held(rules=rules), say=say)
    assert "principle: started, 3 records to read" in said
    assert any(s.startswith("principle: 0/3 records") for s in said)


def test_a_stage_hands_over_the_backends_chunk_unless_a_batch_size_is_given():
    from selfalign.stages.common import chunks

    class Backend:
        chunk_size = 8

    assert [len(b) for b in chunks(range(20), None, Backend())] == [8, 8, 4]
    assert [len(b) for b in chunks(range(10), None, Backend(), share=2)] == [4, 4, 2]  # the judge: two prompts each
    assert [len(b) for b in chunks(range(10), 4, Backend())] == [4, 4, 2]  # a given batch size is kept as it is
    assert list(chunks([], None, Backend())) == []


def test_torch_gets_the_cores_the_load_leaves_free_at_least_one():
    from selfalign.threads import free_cores

    assert free_cores(2, 0.1) == 2  # idle
    assert free_cores(2, 1.0) == 1  # one busy process beside it
    assert free_cores(2, 4.6) == 1  # never none
    assert free_cores(8, 2.4) == 6 and free_cores(8, -1) == 8


def test_torch_gets_a_small_onednn_kernel_cache_unless_the_user_set_one(monkeypatch):
    import sys
    import types

    import selfalign.threads as threads

    fake = types.SimpleNamespace(get_num_threads=lambda: 1, set_num_threads=lambda n: None)
    monkeypatch.setitem(sys.modules, "torch", fake)
    for given, expected in ((None, str(threads.ONEDNN_KERNELS)), ("512", "512")):
        monkeypatch.setattr(threads, "_decided", None)
        monkeypatch.setenv("SELFALIGN_THREADS", "1")
        if given is None:
            monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", given)
        threads.use_free_cores()
        import os
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == expected
