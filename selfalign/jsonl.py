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

import jsonlines
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
        where = [0]
        raw_line = [b""]

        def lines() -> Iterator[bytes]:
            for where[0], raw in enumerate(fp, 1):  # noqa: B007 - the line number of the last line read
                raw_line[0] = raw
                yield raw

        reader = jsonlines.Reader(lines())
        while True:
            try:
                obj = reader.read(type=dict)
            except EOFError:
                return
            except (RecursionError, MemoryError, OverflowError, UnicodeError) as e:  # nested too deeply, ...
                yield where[0], InputError(name, where[0], _unreadable(e), raw_line[0])
                continue
            except jsonlines.InvalidLineError as e:
                problem = str(e).rsplit(" (line ", 1)[0].removeprefix("line ")
                if problem == "does not match requested type":
                    problem = "is not a JSON object"
                elif not (e.line.strip() if isinstance(e.line, (str, bytes)) else True):
                    problem = "empty line"
                yield e.lineno, InputError(name, e.lineno, problem, e.line)
                continue
            if (problem := _too_deep(obj)) or (_SURROGATE.search(raw_line[0]) and (problem := _unencodable(obj))):
                yield where[0], InputError(name, where[0], problem, raw_line[0])
                continue
            yield where[0], obj


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
        from selfalign.storage import is_stream, open_side

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
    from selfalign.storage import scan

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

