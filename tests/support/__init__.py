"""Helpers the tests import (`from support import ...`): run the CLI as a user would, read and write JSONL.

A plain package beside the tests, not conftest.py: conftest is pytest's, for fixtures and hooks."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None, check: bool = True,
            cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m selfalign ARGS` in its own process: for what needs one (signals, kills, imports, Ray)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "selfalign", *args], input=stdin, capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"selfalign {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def jsonl(text_or_path) -> list[dict]:
    text = Path(text_or_path).read_text() if isinstance(text_or_path, Path) else text_or_path
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(*args: str, stdin: str | None = None):
    """`selfalign ARGS` in this process (typer's CliRunner), wide enough that a message stays on one line."""
    from typer.testing import CliRunner

    from selfalign.cli import app

    return CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "200"})


def one_error_line(result) -> str:
    """The whole of stderr: one line, starting with `error:`."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
