"""What an OpenAI-compatible server's reply holds, read strictly: a body that is not what the API promises is
Malformed (which the backend retries), never a half-read completion."""

from __future__ import annotations

import json
from typing import Any

from selfalign.backends.base import Completion, SamplingParams, cut_at_stop


class Malformed(ValueError):
    """A 200 whose body is not what the API promises."""


def failed(error: str) -> Completion:
    return Completion(text="", finish_reason="error", error=error)


def body_object(body: str) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise Malformed("malformed response: not JSON") from None
    if not isinstance(data, dict):
        raise Malformed(f"malformed response: a JSON {type(data).__name__}, not an object")
    return data


def field_list(data: dict, name: str, empty_ok: bool = False) -> list:
    """`data[name]`, a list (non-empty unless `empty_ok`), or Malformed saying how it falls short."""
    value = data.get(name)
    if not isinstance(value, list) or not (value or empty_ok):
        why = ("missing" if name not in data else "null" if value is None else "empty" if value == []
               else f"a {type(value).__name__}, not a list")
        raise Malformed(f"malformed response: {name} is {why}")
    return value


def completion(body: str, params: SamplingParams) -> Completion:
    """The Completion in a 200's body, or Malformed saying what is wrong with it."""
    data = body_object(body)
    choice = field_list(data, "choices")[0]
    if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
        raise Malformed("malformed response: the choice has no text")
    try:
        choice["text"].encode("utf-8")
    except UnicodeEncodeError:
        raise Malformed("malformed response: the text holds a lone surrogate") from None
    text, _ = cut_at_stop(choice["text"], params.stop)
    prompt_tokens, completion_tokens = usage(data)
    return Completion(text=text, finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                      prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def usage(data: dict) -> tuple[int, int]:
    """The reply's own `usage`: (prompt_tokens, completion_tokens); 0 for a count the server left out."""
    u = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return count(u.get("prompt_tokens")), count(u.get("completion_tokens"))


def count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
