"""A cache never loses a run: corrupt, truncated, read-only, full or locked cache files are said once and
the run goes on without them; `cache info` and `cache clear` say what is wrong and clear it."""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


from support import ROOT, jsonl, run_cli, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")
CORRUPT = "is not a readable SQLite database"


def _setup(folder: Path, n: int) -> tuple[Path, Path, Path]:
    """Prompts, a scripted-backend rules file that keeps every answer, and the log of prompts generated."""
    prompts = write_jsonl(folder / "in.jsonl", [{"prompt": f"Question number {i} about tides?"} for i in range(n)])
    log = folder / "generated.log"
    rules = write_jsonl(folder / "rules.jsonl", [{"log": str(log)}, {"text": f" By 2 (informative).\n\nSage: {GOOD}"}])
    return prompts, rules, log


def _principle(prompts: Path, rules: Path, cache: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli("principle", str(prompts), "--backend", "scripted", "--model", str(rules), "--batch-size", "2",
                   env={"SELFALIGN_CACHE_DIR": str(cache)}, check=check)


def _warnings(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(3000))


def _truncated(path: Path, prompts: Path, rules: Path) -> None:
    """A real completion cache, cut to half its size."""
    _principle(prompts, rules, path.parent)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


# ---- corrupt or truncated files --------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_completion_cache_is_said_once_and_the_run_finishes_without_it(tmp_path, damage):
    prompts, rules, log = _setup(tmp_path, n=40)
    cache = tmp_path / "cache"
    db = cache / "completions.sqlite"
    _garbage(db) if damage == "garbage" else _truncated(db, prompts, rules)
    log.unlink(missing_ok=True)
    proc = _principle(prompts, rules, cache, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(jsonl(proc.stdout)) == 40 and len(log.read_text().splitlines()) == 40
    said = _warnings(proc.stderr, CORRUPT)
    assert len(said) == 1, proc.stderr  # once, though 20 batches went by
    assert str(db) in said[0] and "`selfalign cache clear` removes it" in said[0]


def test_cache_info_and_clear_on_a_corrupt_cache_say_what_is_wrong_and_clear_removes_it(tmp_path):
    cache = tmp_path / "cache"
    db = cache / "completions.sqlite"
    _garbage(db)
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").write_bytes(b"junk")
    env = {"SELFALIGN_CACHE_DIR": str(cache)}

    info = run_cli("cache", "info", env=env, check=False)
    assert "Traceback" not in info.stderr
    said = [line for line in info.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and str(db) in said[0] and CORRUPT in said[0] and "selfalign cache clear" in said[0], said

    clear = run_cli("cache", "clear", env=env, check=False)
    assert clear.returncode == 0 and "Traceback" not in clear.stderr, clear.stderr
    assert f"removed {db}" in clear.stderr.replace("\n", "")
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert "0 completions" in run_cli("cache", "info", env=env).stdout


# ---- read-only files and folders, as a normal user meets them --------------------------------------
def _as_user() -> list[str] | None:
    """How to run a command as a user who cannot write root's files: nothing to add for a normal user;
    `setpriv` to nobody for root (who writes any file); None if that is not possible here."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    probe = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import selfalign"], cwd=ROOT, capture_output=True)
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if probe.returncode == 0 else None


@pytest.fixture
def shared():
    """A folder that the unprivileged user of `_as_user` can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="selfalign-cache-test-"))
    folder.chmod(0o755)
    yield folder
    for p in folder.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(folder)


def _run_as(user: list[str], prompts: Path, rules: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*user, sys.executable, "-m", "selfalign", "principle", str(prompts), "--backend",
                           "scripted", "--model", str(rules), "--batch-size", "2"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "SELFALIGN_CACHE_DIR": str(cache)}, timeout=600)


def _count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    finally:
        con.close()  # the last connection to close folds the -wal file into the database and removes it


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_cache_serves_its_hits_and_never_fails_the_run(shared, what):
    user = _as_user()
    if user is None:
        pytest.skip("running as root without setpriv: no user here is refused a write")
    prompts, rules, log = _setup(shared, n=12)
    cache = shared / "cache"
    db = cache / "completions.sqlite"
    first = write_jsonl(shared / "first.jsonl", jsonl(prompts)[:6])
    _principle(first, rules, cache)  # 6 completions paid for and stored
    assert _count(db) == 6 and not Path(f"{db}-wal").exists()
    log.write_text("")
    log.chmod(0o666)
    if what == "file":
        db.chmod(0o444)
        cache.chmod(0o777)  # SQLite may add its -shm beside the file
    else:
        cache.chmod(0o555)

    proc = _run_as(user, prompts, rules, cache)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(jsonl(proc.stdout)) == 12
    said = _warnings(proc.stderr, str(db))
    assert len(said) == 1, proc.stderr
    if what == "file":
        assert "is read-only; running without storing completions" in said[0]
        assert len(log.read_text().splitlines()) == 6  # the 6 stored ones were served from the cache
    else:
        assert "folder is not writable" in said[0] and "running without it" in said[0]
        assert len(log.read_text().splitlines()) == 12
    db.chmod(0o644)
    assert _count(db) == 6
