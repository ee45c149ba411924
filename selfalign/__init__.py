"""selfalign: principle-driven self-alignment data, from a short principle set to SFT JSONL.

The Python API is imported lazily (`import selfalign` stays light: no torch, no pydantic):

    from selfalign import Pipeline, SelfInstruct, Principle, Dedup, Export
    Pipeline([SelfInstruct(num=100), Principle(), Dedup(), Export(format="messages")]).run(out_dir="out/")
"""

from __future__ import annotations

import os
from typing import Any

# OpenMP threads that spin while they wait make torch on a busy CPU many times slower: on 2 cores with other work
# running (load about 5), one of the embedded model's linear layers took 4.4-5.8 ms a call with the default
# policy and 1.1 ms with PASSIVE (benchmarks/threads.py). It must be set before torch starts OpenMP; a value the
# user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    **{name: "selfalign.pipeline" for name in ("Pipeline", "SelfInstruct", "RedTeam", "Principle", "Dedup", "Export",
                                               "Refine", "BackendConfig", "LocalExecutor", "Critique",
                                               "Judge")},
    "load_backend": "selfalign.backends",
    "Load": "selfalign.pipeline",
    "Runner": "selfalign.runner",
    "load_recipe": "selfalign.recipe",
    "RayExecutor": "selfalign.executors.ray",
    "RayOptions": "selfalign.executors.ray",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'selfalign' has no attribute {name!r}")
