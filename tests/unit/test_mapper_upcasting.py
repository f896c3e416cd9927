"""Upcasting: old versions on the wire are lifted to the newest model before validation.

Uses test-only ``test.greeting`` events in their own registry, so the mesh's catalog is untouched:
v1 had ``name``; v2 renamed it to ``who`` and added a required ``language``; v3 added ``loud``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field

from mesh.errors import InvalidEvent, UnknownEventType
from mesh.events import (
    HEADER_SCHEMA_VERSION,
    EventRegistry,
    Mapper,
    WorkflowEvent,
    meta,
)
from tests.unit.test_events_samples import PRODUCER, WHEN


class GreetingV1(WorkflowEvent):
    """Version 1: who to greet is called ``name``."""

    type: Literal["test.greeting"] = "test.greeting"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "workflow id"

    name: str = Field(description="Who to greet.")


class GreetingV2(WorkflowEvent):
    """Version 2: ``name`` became ``who``; ``language`` is new and required."""

    type: Literal["test.greeting"] = "test.greeting"
    schema_version: Literal[2] = 2

    who: str = Field(description="Who to greet.")
    language: str = Field(description="Language of the greeting.")


class GreetingV3(WorkflowEvent):
    """Version 3: adds ``loud``."""

    type: Literal["test.greeting"] = "test.greeting"
    schema_version: Literal[3] = 3

    who: str = Field(description="Who to greet.")
    language: str = Field(description="Language of the greeting.")
    loud: bool = Field(description="Shout it.")


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["who"] = data.pop("name")
    data["language"] = "en"  # every v1 greeting was English
    return data


def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "loud": False}


def greeting_v1() -> GreetingV1:
    return GreetingV1(
        **meta(PRODUCER, correlation_id="req-1", occurred_at=WHEN), workflow_id="wf", name="Ada"
    )


def test_an_old_version_decodes_as_the_newest_model() -> None:
    """A v1 record (written while v1 was current) is read as v2 through the upcaster."""
    original = greeting_v1()
    key, value, headers = Mapper(EventRegistry([GreetingV1])).encode(original)

    registry = EventRegistry([GreetingV1, GreetingV2])
    registry.add_upcaster("test.greeting", 1, v1_to_v2)
    event = Mapper(registry).decode(value, headers)

    assert isinstance(event, GreetingV2)
    assert (event.who, event.language, event.schema_version) == ("Ada", "en", 2)
    assert (event.event_id, event.occurred_at) == (original.event_id, original.occurred_at)
    assert key == b"wf"


def test_upcasters_chain_and_old_models_need_not_stay_registered() -> None:
    """v1 → v2 → v3 with only the newest model registered (the decorator form of the API)."""
    value = Mapper(EventRegistry([GreetingV1])).encode(greeting_v1()).value
    registry = EventRegistry([GreetingV3])
    registry.upcaster("test.greeting", 1)(v1_to_v2)
    registry.upcaster("test.greeting", 2)(v2_to_v3)

    event = Mapper(registry).decode(value)

    assert isinstance(event, GreetingV3)
    assert (event.who, event.language, event.loud) == ("Ada", "en", False)
    assert registry.versions("test.greeting") == [1, 2, 3]
    assert registry.problems() == []


def test_the_current_version_is_not_upcast() -> None:
    registry = EventRegistry([GreetingV1, GreetingV2])
    registry.add_upcaster("test.greeting", 1, v1_to_v2)
    mapper = Mapper(registry)
    current = GreetingV2(
        **meta(PRODUCER, correlation_id="r"), workflow_id="wf", who="Bo", language="sv"
    )
    assert mapper.decode(mapper.encode(current).value) == current


def test_a_missing_upcaster_makes_the_old_version_unknown() -> None:
    value = Mapper(EventRegistry([GreetingV1])).encode(greeting_v1()).value
    registry = EventRegistry([GreetingV1, GreetingV2])  # no upcaster registered
    with pytest.raises(UnknownEventType, match="no upcaster from v1"):
        Mapper(registry).decode(value)
    assert registry.problems() == ["test.greeting v1 has a model but no upcaster chain to v2"]
    assert registry.versions("test.greeting") == [2]


def test_a_failing_upcaster_is_an_invalid_event_not_a_crash() -> None:
    value = Mapper(EventRegistry([GreetingV1])).encode(greeting_v1()).value
    registry = EventRegistry([GreetingV2])
    registry.add_upcaster("test.greeting", 1, lambda data: {**data, "who": data["nobody"]})
    with pytest.raises(InvalidEvent, match=r"upcasting test\.greeting v1 to v2 failed: KeyError"):
        Mapper(registry).decode(value)


def test_an_upcaster_that_forgets_a_field_fails_validation_with_the_path() -> None:
    value = Mapper(EventRegistry([GreetingV1])).encode(greeting_v1()).value
    registry = EventRegistry([GreetingV2])
    registry.add_upcaster("test.greeting", 1, lambda data: {**data, "who": data.pop("name")})
    with pytest.raises(InvalidEvent) as caught:
        Mapper(registry).decode(value)
    assert "invalid test.greeting v1 (upcast to v2) event: language: Field required" in str(
        caught.value
    )


def test_the_header_version_must_match_the_body_before_upcasting() -> None:
    _, value, headers = Mapper(EventRegistry([GreetingV1])).encode(greeting_v1())
    registry = EventRegistry([GreetingV2])
    registry.add_upcaster("test.greeting", 1, v1_to_v2)
    lying = [(n, b"2" if n == HEADER_SCHEMA_VERSION else v) for n, v in headers]
    with pytest.raises(InvalidEvent, match="mesh-schema-version is '2'"):
        Mapper(registry).decode(value, lying)


def test_upcasters_cannot_be_registered_twice_or_from_version_zero() -> None:
    registry = EventRegistry([GreetingV2])
    registry.add_upcaster("test.greeting", 1, v1_to_v2)
    with pytest.raises(ValueError, match="already exists"):
        registry.add_upcaster("test.greeting", 1, v1_to_v2)
    with pytest.raises(ValueError, match=">= 1"):
        registry.add_upcaster("test.greeting", 0, v1_to_v2)


def test_an_orphan_upcaster_is_reported() -> None:
    registry = EventRegistry()
    registry.add_upcaster("test.nothing", 1, v1_to_v2)
    assert registry.problems() == ["upcaster for test.nothing v1 but no model of that type"]


def test_upcasters_get_a_copy_of_the_data() -> None:
    """An upcaster mutating its argument must not leak into the caller's data."""
    registry = EventRegistry([GreetingV2])
    registry.add_upcaster("test.greeting", 1, v1_to_v2)
    data = json.loads(greeting_v1().model_dump_json())
    lifted = registry.upcast("test.greeting", 1, data)
    assert "name" in data
    assert lifted["who"] == "Ada"
    assert lifted["schema_version"] == 2
