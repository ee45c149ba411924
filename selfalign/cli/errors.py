"""A config's bad value as the CLI says it: one line naming the option, as click says its own."""

from __future__ import annotations

import re

# a field whose CLI option has another name
OPTION = {"name": "--backend", "timeout": "--request-timeout", "cache": "--no-cache", "apology_bias": "--no-apology-bias",
          "embeddings": "--no-embeddings", "second_look": "--no-second-look"}


def option(field: str) -> str:
    from selfalign.backends import flag

    return OPTION.get(field) or flag(field)


def _say_options(text: str) -> str:
    """`judge=true` -> `--judge`, `format=dpo` -> `--format dpo`: a library message in the CLI's words."""
    def boolean(m: re.Match[str]) -> str:  # a flag is given for true, or for false where it is --no-X
        flag = option(m[1])
        return flag if (m[2] == "true") != flag.startswith("--no-") else f"without {flag}"

    text = re.sub(r"\b([a-z_]+)=(true|false)\b", boolean, text)
    return re.sub(r"\b([a-z_]+)=(\S+?)(?=[,;)\s]|$)", lambda m: f"{option(m[1])} {m[2]}", text)


def option_error(e: ValueError) -> str | None:
    """A stage or backend config's ValidationError (selfalign.steps) as one line naming each option; None for
    any other error, which is not the user's to fix."""
    from pydantic import ValidationError

    from selfalign.stages import STAGES

    if not isinstance(e, ValidationError) or e.title not in {*(c.__name__ for c in STAGES.values()), "BackendConfig"}:
        return None
    parts = []
    for err in e.errors():
        if not err["loc"]:  # a field that does not apply beside another (a stage's model_validator)
            field, _, why = err["msg"].removeprefix("Value error, ").partition(": ")
            parts.append(f"{option(field)}: {_say_options(why)}")
            continue
        parts.append(f"Invalid value for '{option(str(err['loc'][0]))}': {err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)
