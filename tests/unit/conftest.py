"""The unit tier's promise, enforced: a test here that starts a process, loads a model or starts Ray fails."""

import subprocess

import pytest


class TierViolation(AssertionError):
    pass


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise TierViolation(f"a unit test must not {what}: move it to tests/e2e or tests/models")
    return refuse


@pytest.fixture(autouse=True)
def _unit_tier(monkeypatch):
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    from selfalign.text import embeddings
    from selfalign.backends import transformers

    monkeypatch.setattr(embeddings.Embedder, "__init__", _refuse("load an embedding model"))
    # the harm classifier reads an embedding of every query: here every query scores harmless (0.0), and a
    # test of the harm decisions sets its own scores (tests/unit/test_harm.py)
    from selfalign.gates.meaning import MeaningGates

    monkeypatch.setattr(MeaningGates, "harm_scores", lambda self, queries: [0.0] * len(queries))
    monkeypatch.setattr(transformers.TransformersBackend, "__init__", _refuse("load the embedded model"))
    try:
        import ray
    except ImportError:
        return
    monkeypatch.setattr(ray, "init", _refuse("start Ray"))
