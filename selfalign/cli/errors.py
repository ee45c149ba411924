"""A config's bad value as the CLI says it: one line naming the option, as click says its own."""

from __future__ import annotations

import re
from typing import Any


def option(model: Any, field: str) -> str:
    """The option that sets `field` of `model` away from its default (`--no-x` for a bool that is on)."""
    from selfalign.cli.options import flag_to_change

    return flag_to_change(model, field) if field in model.model_fields else "--" + field.replace("_", "-")


def _say_options(model: Any, text: str) -> str:
    """`judge=true` -> `--judge`, `format=dpo` -> `--format dpo`: a library message in the CLI's words."""
    def boolean(m: re.Match[str]) -> str:  # a flag is given for true, or for false where it is --no-X
        flag = option(model, m[1])
        return flag if (m[2] == "true") != flag.startswith("--no-") else f"without {flag}"

    text = re.sub(r"\b([a-z_]+)=(true|false)\b", boolean, text)
    return re.sub(r"\b([a-z_]+)=(\S+?)(?=[,;)\s]|$)", lambda m: f"{option(model, m[1])} {m[2]}", text)


def option_error(e: ValueError) -> str | None:
    """A stage or backend config's ValidationError (selfalign.steps) as one line naming each option; None for
    any other error, which is not the user's to fix."""
    from pydantic import ValidationError

    from selfalign.steps import long_flag
    from selfalign.stages import STAGES
    from selfalign.steps import BackendConfig

    models = {c.__name__: c for c in (*STAGES.values(), BackendConfig)}
    if not isinstance(e, ValidationError) or e.title not in models:
        return None
    model = models[e.title]
    parts = []
    for err in e.errors():
        if not err["loc"]:  # a field that does not apply beside another (a stage's model_validator)
            field, _, why = err["msg"].removeprefix("Value error, ").partition(": ")
            parts.append(f"{option(model, field)}: {_say_options(model, why)}")
            continue
        field = str(err["loc"][0])
        flag = long_flag(model, field) if field in model.model_fields else option(model, field)
        if err["type"] == "value_error":  # a validator's own message names what is wrong
            parts.append(f"Invalid value for '{flag}': {err['msg'].removeprefix('Value error, ')}")
        else:
            parts.append(f"Invalid value for '{flag}': {err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)
