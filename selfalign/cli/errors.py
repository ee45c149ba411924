"""A config's bad value as the CLI says it: one line naming the option, as click says its own."""

from __future__ import annotations


def option_error(e: ValueError) -> str | None:
    """A stage or backend config's ValidationError (selfalign.steps) as one line naming each option; None for
    any other error, which is not the user's to fix."""
    from pydantic import ValidationError

    from selfalign.backends import flag
    from selfalign.steps import STAGES

    if not isinstance(e, ValidationError) or e.title not in {*(c.__name__ for c in STAGES.values()), "BackendConfig"}:
        return None
    parts = []
    for err in e.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        opt = {"name": "--backend", "timeout": "--request-timeout"}.get(name) or flag(name)
        parts.append(f"Invalid value for '{opt}': {err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)
