"""JSONL in (file or stdin) with file:line errors, JSONL out (stdout or file)."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import jsonlines  # the writer
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class InputError(Exception):
    """A problem with one line of one input file: printed as `file:line: problem`."""

    def __init__(self, path: str, lineno: int | None, problem: str, raw: Any = None):
        self.path, self.lineno, self.problem, self.raw = path, lineno, problem, raw
        where = f"{path}:{lineno}" if lineno else path
        super().__init__(f"{where}: {problem}")


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "record"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")  # noqa: SIM115


def read_json_lines(path: str) -> Iterator[tuple[int, dict[str, Any] | InputError]]:
    """Yield (line number, object) for each line; a bad line (empty ones too) yields an InputError instead.

    Bad lines never stop the reading: the caller decides to skip or fail.
    """
    name = "<stdin>" if path == "-" else path
    try:
        fp = _open_binary(path)
    except OSError as e:
        raise InputError(name, None, f"cannot open: {e.strerror}") from None
    with contextlib.ExitStack() as stack:
        if fp is not sys.stdin.buffer:
            stack.enter_context(fp)
        lineno = 0
        # one line at a time, held by nothing once it is parsed (a 200 MB line is not kept beside its record)
        for raw in fp:
            lineno += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, InputError(name, lineno, f"is not valid utf-8: {e}", raw)
                continue
            if text.startswith(("\ufeff", "\x1e")):  # a byte order mark, an RFC 7464 record separator
                text = text[1:]
            problem, obj = _parse(text)
            if problem is None and _SURROGATE.search(raw):
                problem = _unencodable(obj)
            if problem is not None:
                yield lineno, InputError(name, lineno, problem, text)
                continue
            raw = text = b""  # noqa: PLW2901
            box, obj = [obj], None  # handed over, not kept in this frame while the caller works on it
            yield lineno, box.pop()


def _parse(text: str) -> tuple[str | None, Any]:
    """(None, the object) for a line holding a JSON object, else (the problem, None). Never raises."""
    if not text.strip():
        return "empty line", None
    try:
        obj = json.loads(text)
    except ValueError as e:
        return f"contains invalid json: {e}", None
    except (RecursionError, MemoryError, OverflowError) as e:  # nested too deeply, ...
        return _unreadable(e), None
    if obj is None:
        return "contains null value", None
    if not isinstance(obj, dict):
        return "is not a JSON object", None
    if problem := _too_deep(obj):
        return problem, None
    return None, obj


MAX_DEPTH = 200  # nesting a record may have: deeper ones could not be written back (json's recursion limit)


def _unreadable(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "is nested too deeply to read"
    return f"cannot be read ({type(e).__name__}: {e})"[:300]


def _too_deep(obj: Any) -> str | None:
    """Why a parsed line is too deeply nested to be handled (written back, validated), or None. Iterative."""
    todo = [(obj, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            return f"is nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return None


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # a JSON escape of a UTF-16 surrogate: fine only in pairs


def _unencodable(obj: Any) -> str | None:
    """Why a parsed line cannot be written as UTF-8 (a lone surrogate such as \\ud800), or None."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        return f"holds a lone surrogate (\\u{ord(e.object[e.start]):04x}), which UTF-8 cannot encode"
    return None


def read_records(path: str, model: type[M]) -> Iterator[tuple[int, M | InputError]]:
    """Read and validate records; invalid ones come back as InputError naming file and line."""
    name = "<stdin>" if path == "-" else path
    for lineno, obj in read_json_lines(path):
        if isinstance(obj, InputError):
            yield lineno, obj
            continue
        try:
            rec = model.model_validate(obj)
            obj = None  # the record holds what it needs
        except ValidationError as e:
            yield lineno, InputError(name, lineno, _validation_message(e), obj)
            continue
        except (RecursionError, MemoryError, OverflowError, ValueError, TypeError) as e:
            yield lineno, InputError(name, lineno, _unreadable(e), obj)
            continue
        yield lineno, rec


class OutputError(Exception):
    """Writing an output failed (a full disk, a closed device): one line says what and where."""

    def __init__(self, path: str, err: OSError, count: int):
        self.path, self.count = path, count
        super().__init__(f"writing {path} failed: {err.strerror or err}")


class Unwritable(ValueError):
    """A record that cannot be written as UTF-8 JSON (a lone surrogate); nothing of it was written."""


class Output:
    """JSONL writer to stdout, a stream (a device, a pipe) or a file.

    By default every record is flushed, so a consumer down the pipe gets it at once. A fast stage
    (export) passes `flush_each=False` and is flushed every 50 ms instead of on every line. A failed write
    raises OutputError once; closing after it does not try again.
    """

    FLUSH_EVERY = 0.05

    def __init__(self, path: str | None = None, append: bool = False, flush_each: bool = True,
                 side: bool = False):
        """`side`: `path` is a side file this run made (storage.Target.write_path): opened without following
        a symlink there."""
        from selfalign.io.storage import is_stream, open_side

        self.path = path or "-"
        self.flush_each = flush_each
        self.failed = self.closed = False
        if path in (None, "-"):
            self._fp: IO[str] = sys.stdout
            self._own = False
        else:
            if is_stream(path):
                append = False  # a device or a pipe is written, never appended to (it cannot seek)
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            if side and not is_stream(path):
                self._fp = open_side(path, "a" if append else "w")
            else:
                self._fp = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
            self._own = True
        self._writer = jsonlines.Writer(self._fp, compact=True, flush=False,
                                        dumps=lambda o: json.dumps(o, ensure_ascii=False))
        self.count = 0
        self._flushed = time.monotonic()

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        obj = record.model_dump(mode="json", exclude_none=True) if isinstance(record, BaseModel) else record
        try:
            self._writer.write(obj)
            now = time.monotonic()
            if self.flush_each or now - self._flushed >= self.FLUSH_EVERY:
                self._fp.flush()
                self._flushed = now
        except BrokenPipeError:
            raise
        except UnicodeEncodeError as e:  # a lone surrogate from a model or a server: the line was not written
            raise Unwritable(f"a lone surrogate (\\u{ord(e.object[e.start]):04x})") from None
        except (RecursionError, ValueError, TypeError) as e:  # nested too deeply, a NaN key, ...: nothing written
            raise Unwritable(_unreadable(e).replace("to read", "to write")) from None
        except OSError as e:
            self.failed = True
            raise OutputError(self.path, e, self.count) from None
        self.count += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.failed:
                self._fp.flush()
        except BrokenPipeError:
            pass
        except OSError as e:
            self.failed = True
            raise OutputError(self.path, e, self.count) from None
        finally:
            if self._own:
                with contextlib.suppress(OSError):  # a failed flush is not tried again on close
                    self._fp.close()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def done_ids(path: str | None) -> set[str]:
    """Keys already written to an output file (see storage.scan): ids, after repairing a torn last line."""
    from selfalign.io.storage import scan

    if not path or path == "-":
        return set()
    return scan(path)


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(str(path), None, f"not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise InputError(str(path), None, f"cannot read: {e.strerror}") from None

