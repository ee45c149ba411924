"""The commands' options, made from the fields that declare them: a stage's (`selfalign.stages`), the backend's
(`BackendConfig`). A field's name is its option (`max_tokens` -> `--max-tokens`, or the flags in its
`json_schema_extra`), its description the help, its default the default; a bool is `--x/--no-x`, a list a
repeatable option, a Literal a choice. A command is a function whose parameters name `Group`s: each group adds
its options to the command and hands the function one value made of them (the stage's fields as a dict, the
`Engine`, ...). The options are made when click builds the command, not when `selfalign.cli` is imported, so
`import selfalign.cli` loads neither the stages nor pydantic."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer

Options = dict[str, tuple[Any, Any]]  # parameter name -> (its type with its typer.Option, its default)


def opt(kind: Any, *flags: str, help: str, **extra: Any) -> Any:
    return Annotated[kind, typer.Option(*flags, help=help, **extra)]


def _bare(annotation: Any) -> tuple[Any, bool]:
    """`Annotated[int, ...] | None` -> (int, True): the type a value has, and whether None is allowed."""
    optional = False
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional, annotation = len(args) < len(get_args(annotation)), args[0]
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, optional


def flag_to_change(model: Any, name: str) -> str:
    """The flag that gives a field another value than its default: `--no-x` for a bool that is on."""
    from selfalign.steps import long_flag

    info = model.model_fields[name]
    flag = long_flag(model, name)
    return "--no-" + flag[2:] if _bare(info.annotation)[0] is bool and info.default is True else flag


def choices(name: str, values: tuple[Any, ...]) -> type[Enum]:
    """A Literal's values as the str Enum typer shows as choices."""
    return Enum(name.title().replace("_", ""), {str(v): str(v) for v in values}, type=str)  # type: ignore[return-value]


def field_options(model: Any, skip: tuple[str, ...] = ()) -> Options:
    """One option per field of `model` (a pydantic model class), but those in `skip`."""
    from selfalign.steps import long_flag

    options: Options = {}
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind, optional = _bare(info.annotation)
        default = info.get_default(call_default_factory=True)
        extra = info.json_schema_extra or {}
        flags = [long_flag(model, name), *(f for f in extra.get("flags", []) if not f.startswith("--"))]
        help = info.description or ""
        if kind is bool:
            flags[0] = f"{flags[0]}/--no-{flags[0][2:]}"
        elif get_origin(kind) is Literal:
            kind = choices(name, get_args(kind))
            default = None if default is None else kind(default)
        elif get_origin(kind) in (list, frozenset, set):
            kind, default = list[str], None  # repeatable; none given: the field's default
        if optional or default is None:
            kind = kind | None
        options[name] = (opt(kind, *flags, help=help, metavar=extra.get("metavar")), default)
    return options


def field_values(values: dict[str, Any]) -> dict[str, Any]:
    """The options' values as the fields take them: a choice's value; an option not given (None) is left out,
    so the field keeps its default (a repeatable one: its empty list)."""
    return {k: getattr(v, "value", v) for k, v in values.items() if v is not None}


@dataclass
class Group:
    """Options a command shares with others (or takes from a model's fields): `options()` makes them when click
    builds the command, and the command's parameter `name` gets `make(**their values)`."""

    name: str
    options: Callable[[], Options]
    make: Callable[..., Any]


class Command:
    """A command whose parameters are its own plus its groups' options (see the module docstring)."""

    def __init__(self, function: Callable[..., Any], groups: list[Group]):
        self.function, self.groups = function, groups
        self.__annotations__: dict[str, Any] = {}  # typing.get_type_hints reads it (typer): the signature says all
        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(self, attr, getattr(function, attr))

    @cached_property
    def _options(self) -> list[Options]:
        return [g.options() for g in self.groups]

    @property
    def __signature__(self) -> inspect.Signature:
        sig = inspect.signature(self.function, eval_str=True)
        names = {g.name for g in self.groups}
        own = [p for p in sig.parameters.values() if p.name not in names]
        added = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
                 for options in self._options for k, (kind, default) in options.items()]
        return sig.replace(parameters=own + added)

    def __call__(self, **values: Any) -> Any:
        for group, options in zip(self.groups, self._options, strict=True):
            values[group.name] = group.make(**{k: values.pop(k) for k in options})
        return self.function(**values)


def with_groups(*groups: Group) -> Callable[[Callable[..., Any]], Command]:
    """Add `groups` to a command (each fills the command's parameter of its name)."""
    return lambda function: Command(function, list(groups))


def stage_fields(*kinds: str, skip: tuple[str, ...] = ("name",)) -> Group:
    """The fields of the stages of `kinds` (the first's where two have one) as options; the command's parameter
    `fields` gets their values, as the stage takes them."""

    def options() -> Options:
        from selfalign.stages import STAGES

        made: Options = {}
        for kind in kinds:
            made = {**field_options(STAGES[kind], skip), **made}
        return made

    return Group("fields", options, lambda **values: field_values(values))
