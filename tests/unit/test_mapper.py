"""The mapper: the one boundary between events and Kafka records."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mesh.errors import EventError, EventTooLarge, InvalidEvent, UnknownEventType
from mesh.events import (
    DEFAULT_MAX_EVENT_BYTES,
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    MESH_HEADERS,
    REGISTRY,
    Event,
    ExecutionPlan,
    Mapper,
    PlanCreated,
    TaskCompleted,
    TaskRequest,
    TaskSpec,
    meta,
    uuid7,
)
from tests.unit.test_events_samples import (
    ALL_EVENTS,
    EVENT_IDS,
    PRODUCER,
    WHEN,
    sample_event,
)

MAPPER = Mapper()


def completed(**overrides: Any) -> TaskCompleted:
    fields: dict[str, Any] = {
        **meta(PRODUCER, correlation_id="req-1", occurred_at=WHEN),
        "workflow_id": "wf-1",
        "task_id": "t1",
        "attempt": 1,
        "agent_id": "agent-1",
        "output": {"answer": 42},
    }
    return TaskCompleted(**{**fields, **overrides})


def body(event: Event, **changes: Any) -> bytes:
    """The JSON value of ``event`` with some fields changed (None removes a field)."""
    data = json.loads(event.model_dump_json())
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return json.dumps(data).encode()


def reason(exc: pytest.ExceptionInfo[EventError]) -> str:
    """The error's text, checked to be one short line (it goes into a dead-letter header)."""
    text = str(exc.value)
    assert "\n" not in text
    assert len(text) <= 500
    return text


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=EVENT_IDS)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_every_event_type_round_trips(cls: type[Event], full: bool) -> None:
    """encode then decode gives back an equal event, with the key and all four headers."""
    event = sample_event(cls, full=full)
    key, value, headers = MAPPER.encode(event)
    assert key == event.key.encode()
    assert dict(headers) == {
        HEADER_TYPE: cls.event_type().encode(),
        HEADER_SCHEMA_VERSION: str(cls.event_version()).encode(),
        HEADER_CORRELATION_ID: event.correlation_id.encode(),
        HEADER_EVENT_ID: str(event.event_id).encode(),
    }
    assert [name for name, _ in headers] == list(MESH_HEADERS)
    decoded = MAPPER.decode(value, headers)
    assert type(decoded) is cls
    assert decoded == event
    assert MAPPER.decode(value) == event  # headers are optional


def test_decode_accepts_headers_as_a_mapping_of_text() -> None:
    """FastStream hands headers over as a dict of strings; that works too."""
    event = completed()
    _, value, headers = MAPPER.encode(event)
    as_text = {name: raw.decode() for name, raw in headers}
    assert MAPPER.decode(value, {**as_text, "traceparent": "00-abc"}) == event


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=75, deadline=None)
@given(
    output=st.dictionaries(st.text(max_size=20), json_values, max_size=5),
    agent=st.text(st.characters(exclude_categories=("Z", "C")), min_size=1, max_size=50),
    minutes=st.integers(min_value=-14 * 60 + 1, max_value=14 * 60 - 1),
    attempt=st.integers(min_value=1, max_value=2**31),
)
def test_arbitrary_json_output_text_and_offsets_round_trip(
    output: dict[str, Any], agent: str, minutes: int, attempt: int
) -> None:
    """Any JSON output, any non-blank agent id and any UTC offset survive the wire unchanged."""
    when = WHEN.astimezone(timezone(timedelta(minutes=minutes)))
    event = completed(output=output, agent_id=agent, occurred_at=when, attempt=attempt)
    _, value, headers = MAPPER.encode(event)
    assert MAPPER.decode(value, headers) == event


def test_non_finite_numbers_are_refused_both_ways() -> None:
    """JSON has no NaN or Infinity: accepting them would break the round trip (hypothesis)."""
    with pytest.raises(ValidationError, match="finite"):
        completed(output={"x": float("inf")})
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        MAPPER.decode(body(completed()).replace(b'"answer": 42', b'"answer": NaN'))


@settings(max_examples=50, deadline=None)
@given(description=st.text(min_size=1, max_size=2_000), priority=st.sampled_from(["low", "high"]))
def test_requests_with_any_unicode_description_round_trip(description: str, priority: str) -> None:
    request = TaskRequest(
        **meta(PRODUCER, correlation_id="r-1"),
        request_id="r-1",
        task_type="feature",
        description=description,
        priority=priority,  # type: ignore[arg-type]
    )
    _, value, headers = MAPPER.encode(request)
    assert MAPPER.decode(value, headers) == request


# --- size limit -----------------------------------------------------------------------------


def test_encoding_over_the_limit_names_size_and_limit() -> None:
    event = completed(output={"blob": "x" * 5_000})
    with pytest.raises(EventTooLarge) as caught:
        Mapper(max_event_bytes=2_000).encode(event)
    size = len(event.model_dump_json().encode())
    assert f"{size} bytes" in reason(caught)
    assert "limit of 2000 bytes" in reason(caught)
    assert caught.value.fields == {"size": size, "limit": 2_000}


def test_decoding_over_the_limit_is_rejected_before_parsing() -> None:
    """Even garbage is rejected as too large first: no parser runs on an oversize record."""
    with pytest.raises(EventTooLarge, match="1000001 bytes"):
        MAPPER.decode(b"\xff" * (DEFAULT_MAX_EVENT_BYTES + 1))
    _, value, headers = MAPPER.encode(completed(output={"blob": "x" * 5_000}))
    with pytest.raises(EventTooLarge, match="limit of 4096 bytes"):
        Mapper(max_event_bytes=4_096).decode(value, headers)


def test_an_event_exactly_at_the_limit_passes() -> None:
    event = completed()
    size = len(MAPPER.encode(event).value)
    exact = Mapper(max_event_bytes=size)
    assert exact.decode(exact.encode(event).value) == event


# --- headers against body -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        (HEADER_TYPE, b"task.failed", "header mesh-type is 'task.failed'"),
        (HEADER_SCHEMA_VERSION, b"2", "header mesh-schema-version is '2'"),
        (HEADER_CORRELATION_ID, b"other", "header mesh-correlation-id is 'other'"),
        (HEADER_EVENT_ID, str(uuid7()).encode(), "header mesh-event-id is"),
        (HEADER_EVENT_ID, b"not-a-uuid", "header mesh-event-id is 'not-a-uuid'"),
    ],
    ids=["type", "version", "correlation", "other-event-id", "bad-event-id"],
)
@pytest.mark.parametrize("shape", [list, tuple], ids=["list", "aiokafka-tuple"])
def test_headers_that_disagree_with_the_body_are_rejected(
    header: str, value: bytes, expected: str, shape: type[list[Any]] | type[tuple[Any, ...]]
) -> None:
    """Also as aiokafka hands them over (a tuple of the four, in the order encode writes)."""
    _, body_bytes, headers = MAPPER.encode(completed())
    tampered = shape((n, value if n == header else v) for n, v in headers)
    with pytest.raises(InvalidEvent) as caught:
        MAPPER.decode(body_bytes, tampered)
    assert expected in reason(caught)


def test_headers_as_aiokafka_gives_them_decode_alike() -> None:
    """A tuple of the four mesh headers as encode writes them, in that order or another, with
    text values or a header that is not UTF-8: the same event or the same error as a list."""
    event = completed()
    _, value, headers = MAPPER.encode(event)
    assert MAPPER.decode(value, tuple(headers)) == event
    assert MAPPER.decode(value, tuple(reversed(headers))) == event
    assert MAPPER.decode(value, tuple((n, v.decode()) for n, v in headers)) == event
    broken = tuple((n, b"\xff" if n == HEADER_CORRELATION_ID else v) for n, v in headers)
    with pytest.raises(InvalidEvent, match="header mesh-correlation-id is not UTF-8 text"):
        MAPPER.decode(value, broken)


def test_conflicting_duplicate_headers_and_non_utf8_headers_are_rejected() -> None:
    event = completed()
    _, value, headers = MAPPER.encode(event)
    with pytest.raises(InvalidEvent, match="appears twice"):
        MAPPER.decode(value, [*headers, (HEADER_TYPE, b"task.failed")])
    assert MAPPER.decode(value, [*headers, *headers]) == event  # identical repeats are harmless
    with pytest.raises(InvalidEvent, match="not UTF-8"):
        MAPPER.decode(value, [(HEADER_CORRELATION_ID, b"\xff\xfe")])


# --- unknown types and versions -------------------------------------------------------------


def test_unknown_type_in_the_header_is_rejected_without_parsing_the_body() -> None:
    with pytest.raises(UnknownEventType) as caught:
        MAPPER.decode(b"not json at all", [(HEADER_TYPE, b"task.exploded")])
    assert "unknown event type 'task.exploded'" in reason(caught)


def test_unknown_type_in_the_body_is_rejected_with_a_hint() -> None:
    with pytest.raises(UnknownEventType) as caught:
        MAPPER.decode(body(completed(), type="task.complete"))
    assert "did you mean 'task.completed'?" in reason(caught)


def test_a_newer_version_than_this_build_reads_is_unknown() -> None:
    with pytest.raises(UnknownEventType) as caught:
        MAPPER.decode(body(completed(), schema_version=2))
    assert "task.completed v2 is newer than this build reads (up to v1)" in reason(caught)


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True, None])
def test_malformed_versions_are_invalid(version: object) -> None:
    data = json.loads(completed().model_dump_json())
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    with pytest.raises(InvalidEvent, match="schema_version"):
        MAPPER.decode(json.dumps(data).encode())


def test_encoding_an_unregistered_class_is_refused() -> None:
    with pytest.raises(UnknownEventType, match="not registered"):
        Mapper(REGISTRY.__class__()).encode(completed())


# --- garbage --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"\x00\xff\xfe garbage", "not UTF-8 text: byte 0xff at offset 1"),
        (b"", "not valid JSON"),
        (b'{"type": "task.completed"', "not valid JSON"),
        (b"[" * 5_000, "over 64 levels deep"),
        (b"[" * 50 + b"]" * 49, "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not a JSON array"),
        (b'"task.completed"', "not a JSON string"),
        (b"{}", "no 'type' field"),
        (b'{"type": 7, "schema_version": 1}', "'type' must be a string"),
    ],
)
def test_garbage_is_invalid_with_a_readable_reason(value: bytes, expected: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        MAPPER.decode(value)
    assert expected in reason(caught)


# --- bounds: what a record can do to a consumer ---------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_nesting_over_the_depth_limit_is_refused_before_parsing() -> None:
    """A value nested deeper than the limit is refused with the limit in the reason, whether
    the depth is in the whole value or in one field, and at any depth (100,000 levels would
    overflow a recursive parser's stack)."""
    limit = MAPPER.max_depth
    deep_field = body(completed(), output=nested(limit))  # the event itself adds a level
    for value in (b"[" * 100_000 + b"]" * 100_000, deep_field):
        with pytest.raises(InvalidEvent) as caught:
            MAPPER.decode(value)
        assert reason(caught) == f"the value nests objects and arrays over {limit} levels deep"
    event = completed(output=nested(limit - 1))
    assert MAPPER.decode(MAPPER.encode(event).value) == event


def test_brackets_inside_strings_never_count_as_nesting() -> None:
    event = completed(output={"text": "[" * 500 + "{" * 500 + '"\\' + "]" * 3})
    assert MAPPER.decode(MAPPER.encode(event).value) == event
    shallow = Mapper(max_depth=2)
    with pytest.raises(InvalidEvent, match="over 2 levels deep"):
        shallow.decode(body(completed(output={"a": ["[]"]})))


def test_the_depth_limit_is_configurable_and_must_be_positive() -> None:
    deep = MAPPER.encode(completed(output=nested(101))).value
    assert Mapper(max_depth=200).decode(deep)
    with pytest.raises(InvalidEvent, match="over 64 levels deep"):
        MAPPER.decode(deep)
    with pytest.raises(ValueError, match="max_depth must be positive"):
        Mapper(max_depth=0)


def test_a_value_that_is_not_utf8_is_refused_with_where() -> None:
    value = body(completed(), agent_id="agent-1").replace(b"agent-1", b"agent-\xff")
    with pytest.raises(InvalidEvent) as caught:
        MAPPER.decode(value)
    offset = value.index(b"\xff")
    assert reason(caught) == (
        f"the value is not UTF-8 text: byte 0xff at offset {offset} (invalid start byte)"
    )


class Record:
    """A consumed record as a consumer sees it."""

    def __init__(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.key, self.value, self.headers = key, value, headers


def test_a_consumed_record_must_have_a_key() -> None:
    key, value, headers = MAPPER.encode(completed())
    assert MAPPER.decode_record(Record(key, value, headers)) == MAPPER.decode(value, headers)
    with pytest.raises(InvalidEvent, match="the record has no key; mesh records are keyed"):
        MAPPER.decode_record(Record(None, value, headers))


def test_a_tombstone_is_not_an_event() -> None:
    with pytest.raises(InvalidEvent, match="tombstone"):
        MAPPER.decode(None)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"attempt": 0}, "invalid task.completed v1 event: attempt: Input should be greater"),
        ({"attempt": "1"}, "attempt: Input should be a valid integer"),
        ({"occurred_at": "2030-01-01T00:00:00"}, "occurred_at: Input should have timezone info"),
        ({"event_id": "1e1c8b1e-5b8a-4d4b-9f5e-8a1b2c3d4e5f"}, "event_id: UUID version 7 expected"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"workflow_id": None, "task_id": None}, "workflow_id: Field required (and 1 more)"),
    ],
)
def test_validation_failures_name_the_field(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        MAPPER.decode(body(completed(), **changes))
    assert expected in reason(caught)


def test_nested_validation_failures_give_the_full_path() -> None:
    plan = ExecutionPlan(plan_id="p", workflow_type="dag", tasks=[TaskSpec(task_id="a", name="A")])
    event = PlanCreated(
        **meta(PRODUCER, correlation_id="r"), workflow_id="w", request_id="r", plan=plan
    )
    data = json.loads(event.model_dump_json())
    data["plan"]["tasks"][0]["retry"]["max_attempts"] = 0
    with pytest.raises(InvalidEvent) as caught:
        MAPPER.decode(json.dumps(data).encode())
    assert "plan.tasks[0].retry.max_attempts: Input should be greater than or equal to 1" in reason(
        caught
    )


def test_mapper_rejects_a_nonsense_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        Mapper(max_event_bytes=0)
