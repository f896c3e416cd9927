"""The backward-compatibility checker, as a pure function over two JSON Schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mesh.events import PlanCreated, TaskCompleted
from mesh.schemagen import Incompatibility, check_compatibility, event_schema


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(required),
        **extra,
    }


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
OPTIONAL_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


def problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [str(found) for found in check_compatibility(old, new)]


def test_identical_schemas_are_compatible() -> None:
    schema = event_schema(PlanCreated)
    assert check_compatibility(schema, copy.deepcopy(schema)) == []


def test_documentation_changes_are_compatible() -> None:
    old = obj({"a": {**STRING, "description": "old words", "title": "A"}}, ("a",))
    new = obj({"a": {**STRING, "description": "new words", "examples": ["x"]}}, ("a",))
    assert problems(old, new) == []


def test_adding_an_optional_property_is_compatible() -> None:
    assert (
        problems(obj({"a": STRING}, ("a",)), obj({"a": STRING, "b": OPTIONAL_STRING}, ("a",))) == []
    )


def test_removing_a_property_breaks() -> None:
    assert problems(obj({"a": STRING, "b": STRING}), obj({"a": STRING})) == [
        "property 'b' was removed"
    ]


def test_adding_a_required_property_breaks() -> None:
    assert problems(obj({"a": STRING}, ("a",)), obj({"a": STRING, "b": STRING}, ("a", "b"))) == [
        "new required property 'b'"
    ]


def test_making_an_optional_property_required_breaks() -> None:
    assert problems(obj({"a": OPTIONAL_STRING}), obj({"a": OPTIONAL_STRING}, ("a",))) == [
        "property 'a' is now required (it was optional)"
    ]


def test_making_a_required_property_optional_is_compatible() -> None:
    assert problems(obj({"a": STRING}, ("a",)), obj({"a": OPTIONAL_STRING})) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (STRING, INTEGER, "a: type changed from string to integer"),
        (INTEGER, {"type": "number"}, None),  # widening int -> number is fine
        ({"type": "number"}, INTEGER, "a: type changed from number to integer"),
        (STRING, OPTIONAL_STRING, None),  # Optional widens
        (OPTIONAL_STRING, STRING, "a: type changed: null is no longer accepted (now string)"),
        ({}, STRING, "a: type changed from any to string"),
        (STRING, {}, None),
    ],
)
def test_type_changes(old: dict[str, Any], new: dict[str, Any], expected: str | None) -> None:
    found = problems(obj({"a": old}), obj({"a": new}))
    assert found == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"enum": ["x", "y"]}, {"enum": ["x"]}, "a: value(s) 'y' no longer allowed"),
        ({"enum": ["x"]}, {"enum": ["x", "y"]}, None),
        ({"const": 1}, {"const": 2}, "a: value(s) 1 no longer allowed"),
        (STRING, {"type": "string", "enum": ["x"]}, "a: values restricted to 'x'"),
        ({**STRING, "maxLength": 10}, {**STRING, "maxLength": 5}, "a: maxLength tightened"),
        ({**STRING, "maxLength": 5}, {**STRING, "maxLength": 10}, None),
        (INTEGER, {**INTEGER, "minimum": 1}, "a: minimum tightened from none to 1"),
        (STRING, {**STRING, "pattern": "^x$"}, "a: pattern changed from None to '^x$'"),
    ],
)
def test_narrowed_values_break(
    old: dict[str, Any], new: dict[str, Any], expected: str | None
) -> None:
    found = problems(obj({"a": old}), obj({"a": new}))
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(expected)


def test_changes_inside_definitions_are_found_through_refs() -> None:
    """pydantic puts nested models in $defs; a change there is reported at the using path."""

    def schema(inner: dict[str, Any]) -> dict[str, Any]:
        return {
            **obj({"plan": {"$ref": "#/$defs/Plan", "description": "the plan"}}, ("plan",)),
            "$defs": {
                "Plan": obj({"tasks": {"type": "array", "items": {"$ref": "#/$defs/Task"}}}),
                "Task": inner,
            },
        }

    old = schema(obj({"id": STRING, "retries": INTEGER}, ("id",)))
    new = schema(obj({"id": STRING, "owner": STRING}, ("id", "owner")))
    assert problems(old, new) == [
        "plan.tasks[]: new required property 'owner'",
        "plan.tasks[]: property 'retries' was removed",
    ]


def test_optional_nested_models_are_compared_through_anyof() -> None:
    def schema(inner: dict[str, Any]) -> dict[str, Any]:
        ref = {"anyOf": [{"$ref": "#/$defs/Err"}, {"type": "null"}], "default": None}
        return {**obj({"error": ref}), "$defs": {"Err": inner}}

    old = schema(obj({"kind": STRING, "message": STRING}, ("kind",)))
    new = schema(obj({"kind": INTEGER, "message": STRING}, ("kind",)))
    assert problems(old, new) == ["error.kind: type changed from string to integer"]


def test_maps_and_array_items_are_compared() -> None:
    old = obj(
        {
            "m": {"type": "object", "additionalProperties": STRING},
            "l": {"type": "array", "items": STRING},
        }
    )
    new = obj(
        {
            "m": {"type": "object", "additionalProperties": INTEGER},
            "l": {"type": "array", "items": INTEGER},
        }
    )
    assert problems(old, new) == [
        "l[]: type changed from string to integer",
        "m.*: type changed from string to integer",
    ]


def test_forbidding_extra_properties_breaks() -> None:
    old = {"type": "object", "properties": {"a": STRING}}
    assert problems(old, obj({"a": STRING})) == ["additional properties are no longer allowed"]


def test_recursive_definitions_terminate() -> None:
    node = {"$ref": "#/$defs/Node"}
    tree = obj({"children": {"type": "array", "items": node}})
    schema = {**obj({"root": node}), "$defs": {"Node": tree}}
    assert check_compatibility(schema, copy.deepcopy(schema)) == []


def test_a_real_model_losing_a_field_is_caught() -> None:
    """End to end on pydantic's own output: drop `output` and require `cost`."""
    old = event_schema(TaskCompleted)
    new = copy.deepcopy(old)
    del new["properties"]["output"]
    new["required"].append("cost")
    assert check_compatibility(old, new) == [
        Incompatibility("", "property 'cost' is now required (it was optional)"),
        Incompatibility("", "property 'output' was removed"),
    ]
