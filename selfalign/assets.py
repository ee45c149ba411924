"""Principle sets, exemplars, seed pools and red-teaming question types: ours, or the user's files.

Formats read:
- principles: Markdown/plain text with lines `N (short name). One sentence.`, or YAML: a list of
  `{id, name, text}` (or a mapping with a `principles:` list).
- exemplars: YAML or JSONL, a list of `{user, thoughts, answer}` (`prompt`/`query` and `response` accepted).
- critique exemplars: YAML or JSONL, a list of `{user, answer, check, critique, violations, revision}`.
- seeds: JSONL, ours (`{"prompt": ...}`) or the public self-instruct format (`instruction`, `instances`).
- question types: text (`name: description` a line), or the public TGRT seed JSONL
  (`topic`, `question_type`, `question`), whose lines also serve as in-context demonstrations.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any

from pydantic import BaseModel, ValidationError

from selfalign.io.jsonl import InputError, read_json_lines, read_text

DATA = resources.files("selfalign") / "data"


def default_path(*parts: str) -> str:
    return str(DATA.joinpath(*parts))


class Principle(BaseModel):
    id: str
    name: str
    text: str


class Exemplar(BaseModel):
    user: str
    thoughts: str
    answer: str


class CritiqueExemplar(BaseModel):
    """A worked review for `selfalign critique`: a question and answer, the principles shown to check (its own
    `N (name). text` lines, so the exemplar does not depend on the user's set), the critique, the ids it finds
    broken (empty: none) and, only when some are, the revised answer."""

    user: str
    answer: str
    check: list[Principle]
    critique: str
    violations: list[str] = []
    revision: str | None = None


class QuestionType(BaseModel):
    name: str
    description: str = ""
    examples: list[dict[str, str]] = []  # TGRT seed lines: {"topic", "question"}


_PRINCIPLE_LINE = re.compile(r"^\s*(?:[-*]\s*)?(\d+)\s*\(([^)]+)\)\s*[.:]\s*(.+?)\s*$")


def _load_yaml(path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(path, mark.line + 1 if mark else None, f"invalid YAML: {getattr(e, 'problem', e)}") from None


def load_principles(path: str | None = None) -> list[Principle]:
    path = path or default_path("principles", "default.md")
    if path.endswith((".yaml", ".yml")):
        data = _load_yaml(path)
        items = data.get("principles", data) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InputError(path, None, "expected a list of principles ({id, name, text})")
        out = []
        for i, item in enumerate(items, 1):
            try:
                if isinstance(item, dict):
                    item = {"id": str(item.get("id", i)), **{k: v for k, v in item.items() if k != "id"}}
                out.append(Principle.model_validate(item))
            except ValidationError as e:
                raise InputError(path, None, f"principle {i}: {e.errors()[0]['msg']}") from None
    else:
        out = []
        for line in read_text(path).splitlines():
            m = _PRINCIPLE_LINE.match(line)
            if m:
                out.append(Principle(id=m.group(1), name=m.group(2).strip(), text=m.group(3)))
    if not out:
        raise InputError(path, None, "no principles found: expected lines like `1 (ethical). One sentence.`")
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        raise InputError(path, None, f"duplicate principle ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


def _listed(path: str) -> list[tuple[int | None, Any]]:
    """The items of a JSONL file (with their line numbers; a bad line raises) or of a YAML list."""
    if path.endswith(".jsonl"):
        items: list[tuple[int | None, Any]] = []
        for lineno, obj in read_json_lines(path):
            if isinstance(obj, InputError):
                raise obj
            items.append((lineno, obj))
        return items
    data = _load_yaml(path)
    return [(None, x) for x in (data if isinstance(data, list) else [])]


def load_exemplars(path: str | None = None) -> list[Exemplar]:
    path = path or default_path("exemplars", "default.yaml")
    items = _listed(path)
    out = []
    for i, (lineno, item) in enumerate(items, 1):
        if not isinstance(item, dict):
            raise InputError(path, lineno, f"exemplar {i}: expected a mapping with user, thoughts, answer")
        item = {"user": item.get("user", item.get("prompt", item.get("query"))),
                "thoughts": item.get("thoughts"), "answer": item.get("answer", item.get("response"))}
        for key in ("user", "thoughts", "answer"):
            if not isinstance(item[key], str) or not item[key].strip():
                raise InputError(path, lineno, f"exemplar {i} has no {key!r}"
                                 + (" (internal thoughts)" if key == "thoughts" else ""))
        out.append(Exemplar.model_validate(item))
    if not out:
        raise InputError(path, None, "no exemplars found")
    return out


def load_critique_exemplars(path: str | None = None) -> list[CritiqueExemplar]:
    """Worked reviews for the critique stage, YAML or JSONL: a list of `{user, answer, check, critique,
    violations, revision}`; `check` is a list of principle lines (`N (name). One sentence.`) or of
    `{id, name, text}`; `violations` a list of ids among them (empty or absent: none, and then no revision)."""
    path = path or default_path("exemplars", "critique.yaml")
    items = _listed(path)
    out = []
    for i, (lineno, item) in enumerate(items, 1):
        where = f"critique exemplar {i}"
        if not isinstance(item, dict):
            raise InputError(path, lineno, f"{where}: expected a mapping with user, answer, check, critique")
        item = {**item, "user": item.get("user", item.get("prompt", item.get("query"))),
                "answer": item.get("answer", item.get("response"))}
        for key in ("user", "answer", "critique"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise InputError(path, lineno, f"{where} has no {key!r}")
        check: list[Principle] = []
        for c in item.get("check") or []:
            if isinstance(c, str) and (m := _PRINCIPLE_LINE.match(c)):
                check.append(Principle(id=m.group(1), name=m.group(2).strip(), text=m.group(3)))
            elif isinstance(c, dict) and all(isinstance(c.get(k), (str, int)) for k in ("id", "name", "text")):
                check.append(Principle(id=str(c["id"]), name=str(c["name"]), text=str(c["text"])))
            else:
                raise InputError(path, lineno, f"{where}: check item {c!r} is not `N (name). One sentence.`")
        if not check:
            raise InputError(path, lineno, f"{where} has no principles to 'check'")
        raw = item.get("violations") or []
        if isinstance(raw, (str, int)) and str(raw).strip().lower() != "none":
            raw = [x for x in re.split(r"[,\s]+", str(raw)) if x]
        elif not isinstance(raw, list):
            raw = []
        violations = [str(v) for v in raw]
        ids = {p.id for p in check}
        if unknown := [v for v in violations if v not in ids]:
            raise InputError(path, lineno, f"{where}: violations {unknown} are not among the principles it checks")
        revision = item.get("revision")
        revision = revision.strip() if isinstance(revision, str) and revision.strip() else None
        if violations and revision is None:
            raise InputError(path, lineno, f"{where} names violations but has no 'revision'")
        if revision is not None and not violations:
            raise InputError(path, lineno, f"{where} has a 'revision' but no violations")
        out.append(CritiqueExemplar(user=item["user"].strip(), answer=item["answer"].strip(), check=check,
                                    critique=" ".join(item["critique"].split()), violations=violations,
                                    revision=revision))
    if not out:
        raise InputError(path, None, "no critique exemplars found")
    return out


def load_seeds(path: str | None = None) -> list[str]:
    """Seed prompts from our JSONL (`prompt`) or the public self-instruct format (`instruction`)."""
    path = path or default_path("exemplars", "seed_tasks.jsonl")
    out = []
    for lineno, obj in read_json_lines(path):
        if isinstance(obj, InputError):
            raise obj
        if isinstance(obj.get("prompt"), str):
            text = obj["prompt"]
        elif isinstance(obj.get("instruction"), str):
            text = obj["instruction"]
        else:
            raise InputError(path, lineno, "seed has neither 'prompt' nor 'instruction' (self-instruct format)")
        if text.strip():
            out.append(text.strip())
    if not out:
        raise InputError(path, None, "no seed prompts found")
    return out


def load_question_types(path: str | None = None) -> list[QuestionType]:
    path = path or default_path("exemplars", "question_types.txt")
    if path.endswith(".jsonl"):
        types: dict[str, QuestionType] = {}
        for lineno, obj in read_json_lines(path):
            if isinstance(obj, InputError):
                raise obj
            if not isinstance(obj.get("question_type"), str):
                raise InputError(path, lineno, "TGRT seed line has no 'question_type'")
            qt = types.setdefault(obj["question_type"], QuestionType(name=obj["question_type"]))
            if isinstance(obj.get("question"), str):
                qt.examples.append({"topic": str(obj.get("topic", "")), "question": obj["question"]})
        out = list(types.values())
    else:
        out = []
        for line in read_text(path).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, desc = line.partition(":")
                out.append(QuestionType(name=name.strip(), description=desc.strip()))
    if not out:
        raise InputError(path, None, "no question types found")
    return out


def assets_hash(*objs: Any) -> str:
    h = hashlib.sha256()
    for o in objs:
        items = o if isinstance(o, list) else [o]
        for x in items:
            h.update((x.model_dump_json() if isinstance(x, BaseModel) else str(x)).encode())
    return h.hexdigest()[:16]


def file_hash(path: str) -> str:
    """The sha256 of a file's bytes (16 hex digits), read in blocks: what a pipeline keys an asset or an input
    file on, so an edited file is a new key whatever its mtime. "missing" for a file that cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()[:16]


__all__ = ["Principle", "Exemplar", "CritiqueExemplar", "QuestionType", "load_principles", "load_exemplars",
           "load_critique_exemplars", "load_seeds", "load_question_types", "assets_hash", "default_path",
           "file_hash"]
