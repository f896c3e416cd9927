"""``dead_letter``: a record a component gives up on becomes a DeadLetter keyed as the original,
with its origin and the error in the event and in headers."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from mesh.errors import InvalidEvent
from mesh.events import (
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_TYPE,
    DeadLetter,
    Mapper,
    uuid7,
)
from mesh.kafka.dlq import DLQ_HEADERS, dead_letter


@dataclass
class Record:
    topic: str = "mesh.tasks.ready"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"wf-7"
    value: bytes | None = b"\x00garbage\xff"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


def test_the_dead_letter_names_origin_error_and_component() -> None:
    original_id = uuid7()
    record = Record(
        headers=[
            (HEADER_CORRELATION_ID, b"req-9"),
            (HEADER_EVENT_ID, str(original_id).encode()),
            ("trace", b"\xffnot utf-8"),
        ]
    )
    key, value, headers = dead_letter(record, InvalidEvent("the value is not JSON"), "dispatcher")

    letter = Mapper().decode(value, headers)
    assert isinstance(letter, DeadLetter)
    assert key == b"wf-7"
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        "mesh.tasks.ready",
        2,
        41,
    )
    assert letter.original_key == "wf-7"
    assert base64.b64decode(letter.original_value_base64 or "") == record.value
    assert letter.error_class == "InvalidEvent"
    assert letter.error_message == "the value is not JSON"
    assert letter.component == "dispatcher"
    assert letter.correlation_id == "req-9"
    assert letter.causation_id == original_id
    assert letter.original_headers["trace"] == "\ufffdnot utf-8"

    named = dict(headers)
    assert named[HEADER_TYPE] == b"dlq.dead_letter"
    assert [name for name, _ in headers if name in DLQ_HEADERS] == list(DLQ_HEADERS)
    assert named["mesh-dlq-original-topic"] == b"mesh.tasks.ready"
    assert named["mesh-dlq-original-partition"] == b"2"
    assert named["mesh-dlq-original-offset"] == b"41"
    assert named["mesh-dlq-error-class"] == b"InvalidEvent"
    assert named["mesh-dlq-error-message"] == b"the value is not JSON"
    assert named["mesh-dlq-component"] == b"dispatcher"


def test_a_record_without_key_or_headers_is_keyed_by_where_it_was() -> None:
    record = Record(key=None, headers=[])
    key, value, _ = dead_letter(record, ValueError("bad"), "workflow-manager")
    letter = Mapper().decode(value)
    assert key == b"mesh.tasks.ready/2/41"
    assert letter.correlation_id == "mesh.tasks.ready/2/41"
    assert letter.causation_id is None


def test_a_value_too_large_to_carry_is_left_out_and_noted() -> None:
    record = Record(value=b"x" * 20_000)
    _, value, _ = dead_letter(record, ValueError("too big"), "dispatcher", max_event_bytes=10_000)
    letter = Mapper(max_event_bytes=10_000).decode(value)
    assert isinstance(letter, DeadLetter)
    assert letter.original_value_base64 is None
    assert "omitted" in letter.note
    assert len(value) <= 10_000


def test_multi_line_and_huge_messages_are_one_bounded_line() -> None:
    error = RuntimeError("first line\nsecond line " + "y" * 50_000)
    _, value, headers = dead_letter(Record(), error, "dispatcher")
    letter = Mapper().decode(value)
    assert isinstance(letter, DeadLetter)
    assert "\n" not in letter.error_message
    assert len(letter.error_message) <= 10_000
    assert len(dict(headers)["mesh-dlq-error-message"]) <= 4 * 1_000


def test_odd_component_and_error_names_are_made_valid() -> None:
    class weird_Error(Exception):
        pass

    _, value, _ = dead_letter(Record(), weird_Error("x"), "my component!")
    letter = Mapper().decode(value)
    assert isinstance(letter, DeadLetter)
    assert letter.component == "my_component_"
    assert letter.error_class == "weird_Error"
