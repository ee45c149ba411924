"""A bug shows as one line; its traceback goes to a log file the line names (or to stderr with --debug)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

DEBUG = os.environ.get("SELFALIGN_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write(exc: BaseException) -> str:
    """Write the traceback of `exc` to a new log file (or to stderr under --debug); returns where it went."""
    text = "".join(traceback.format_exception(exc))
    if DEBUG:
        sys.stderr.write(text)
        return "above"
    from selfalign.io.paths import cache_dir

    header = f"selfalign {sys.argv[1] if len(sys.argv) > 1 else ''}\n{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n\n"
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (cache_dir() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(header + text, encoding="utf-8")
            return str(path)
        except OSError:
            continue
    sys.stderr.write(text)  # nowhere to write it: show it rather than lose it
    return "above"
