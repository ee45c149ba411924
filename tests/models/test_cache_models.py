"""A cache never loses a run: corrupt, truncated, read-only, full or locked cache files are said once and
the run goes on without them; `cache info` and `cache clear` say what is wrong and clear it."""

import os
from pathlib import Path



from support import run_cli, write_jsonl

CORRUPT = "is not a readable SQLite database"


def _warnings(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(3000))


def test_a_corrupt_embedding_cache_is_said_once_dedup_runs_without_it_and_clear_removes_it(tmp_path):
    rows = [{"prompt": f"Tell me something interesting about the number {i}."} for i in range(6)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    env = {"SELFALIGN_CACHE_DIR": str(tmp_path / "cache")}
    reference = run_cli("dedup", str(src), "-q", env={"SELFALIGN_CACHE_DIR": str(tmp_path / "fresh")}).stdout
    db = tmp_path / "cache" / "embeddings.sqlite"
    _garbage(db)
    proc = run_cli("dedup", str(src), env=env, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout == reference
    said = _warnings(proc.stderr, CORRUPT)
    assert len(said) == 1 and str(db) in said[0] and "`selfalign cache clear` removes it" in said[0]
    clear = run_cli("cache", "clear", env=env, check=False)
    assert clear.returncode == 0 and f"removed {db}" in clear.stderr.replace("\n", ""), clear.stderr
    again = run_cli("dedup", str(src), env=env)
    assert not _warnings(again.stderr, "warning") and "0 from cache, 6 computed" in again.stderr
