"""pydantic's validation errors in the mesh's words: one line that names the field and says
what is wrong with it as a person writing the file would put it.

``Extra inputs are not permitted`` becomes ``unknown field 'comand'; did you mean 'command'?``
(the names offered are the fields of the model at that place), ``Value error, task 'D' depends
on unknown task 'Z'`` loses its prefix, ``Input should be a valid integer`` becomes ``expected
a whole number, got 'x'``. Pure: pydantic and the standard library only.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_parsing": "an ISO 8601 time",
    "datetime_type": "an ISO 8601 time",
}
"""pydantic error type → what was expected, in words."""


def validation_message(
    error: ValidationError,
    model: type[BaseModel] | None = None,
    *,
    renames: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """The first problem of ``error`` as ``where: what`` (``what`` alone for the whole model).

    ``model`` is the class validated (for did-you-mean on unknown fields); ``renames`` maps a
    field name to the name the file uses (``task_type`` → ``type``); ``aliases`` are extra names
    accepted in the file (``id`` for ``task_id``), offered as suggestions too.
    """
    details = error.errors(include_url=False)
    first = _misspelt(details) or details[0]
    loc = tuple(first["loc"])
    names = dict(renames or {})
    # An unknown or missing field is a fault of the mapping that holds it: name that place.
    named = loc[:-1] if first["type"] in ("extra_forbidden", "missing") else loc
    where = _path(named, names)
    what = _what(first, loc, model, names, aliases or {})
    return f"{where}: {what}" if where else what


def _misspelt(details: Sequence[ErrorDetails]) -> ErrorDetails | None:
    """An unknown field that is a misspelling of a missing one beside it (``workflow_typ`` for
    ``workflow_type``): the cause, where the missing field is only the effect."""
    missing = {tuple(d["loc"]) for d in details if d["type"] == "missing"}
    for detail in details:
        loc = tuple(detail["loc"])
        if detail["type"] != "extra_forbidden" or not loc:
            continue
        names = [str(m[-1]) for m in missing if m[:-1] == loc[:-1]]
        if difflib.get_close_matches(str(loc[-1]), names, 1, 0.6):
            return detail
    return None


def _path(loc: Sequence[int | str], renames: Mapping[str, str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = renames.get(part, part)
            text += f".{name}" if text else name
    return text


def _what(
    first: ErrorDetails,
    loc: tuple[int | str, ...],
    model: type[BaseModel] | None,
    renames: Mapping[str, str],
    aliases: Mapping[str, str],
) -> str:
    kind = first["type"]
    given = first.get("input")
    message = first["msg"]
    if kind == "extra_forbidden" and loc:
        return _unknown_field(str(loc[-1]), model, loc[:-1], renames, aliases)
    if kind == "missing" and loc:
        return f"{renames.get(str(loc[-1]), str(loc[-1]))!r} is missing"
    if kind in ("value_error", "assertion_error"):
        return message.split(", ", 1)[1] if ", " in message else message
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_shown(given)}"
    if message.startswith("Input should be "):
        return f"must be {message.removeprefix('Input should be ')}, got {_shown(given)}"
    if message[1:2].isupper():  # a name (MESH_SASL_PASSWORD, JSON): keep it as written
        return message
    return f"{message[:1].lower()}{message[1:]}"


def _unknown_field(
    name: str,
    model: type[BaseModel] | None,
    parent: tuple[int | str, ...],
    renames: Mapping[str, str],
    aliases: Mapping[str, str],
) -> str:
    known = _fields_at(model, parent)
    if not known:
        return f"unknown field {name!r}"
    offered = {renames.get(field, field) for field in known} | set(aliases)
    close = difflib.get_close_matches(name, sorted(offered), 1, 0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(offered))}"
    return f"unknown field {name!r}; {hint}"


def _fields_at(model: type[BaseModel] | None, path: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at ``path`` inside ``model`` (empty if unknown)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The model class inside ``X``, ``X | None``, ``Sequence[X]``, ``Annotated[…]`` …"""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None:
        return None
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _model_in(arguments[0])
    if origin in (typing.Union, types.UnionType) or isinstance(origin, type):
        for argument in arguments:
            if (found := _model_in(argument)) is not None:
                return found
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


__all__ = ["validation_message"]
