"""Fixtures and hooks only; the helpers tests import live in tests/support."""

import pytest

from support import write_jsonl


@pytest.fixture
def script(tmp_path):
    """Write a scripted-backend rules file and return its path."""
    def make(rules: list[dict]) -> str:
        return str(write_jsonl(tmp_path / "script.jsonl", rules))
    return make
