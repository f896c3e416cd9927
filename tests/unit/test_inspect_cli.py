"""``mesh tail``, ``mesh dlq`` and ``mesh groups`` without a broker: help with an example, times,
records shown safely, and one readable line for every mistake."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mesh.errors import ConfigError
from mesh.events import Mapper
from mesh.inspect import escape, keyed_by_workflow, parse_position, see
from mesh.settings import Settings
from mesh.times import format_time, from_millis, parse_time, to_millis
from tests.helpers import assert_one_line_error, run_mesh

NOBODY = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MESH_REQUEST_TIMEOUT_MS": "2000"}
NOW = 1_796_440_000_000


@pytest.mark.parametrize(
    "command",
    [
        ("tail",),
        ("dlq",),
        ("dlq", "list"),
        ("dlq", "show"),
        ("dlq", "redrive"),
        ("groups",),
        ("groups", "reset"),
    ],
)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    run = run_mesh(*command, "--help")
    assert run.code == 0, run.stderr
    assert "Example: mesh " in run.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("tail", "workflow.events", "--json"),
        ("dlq", "list", "--json"),
        ("dlq", "show", "3", "--json"),
        ("dlq", "redrive", "--dry-run", "--json"),
        ("groups", "--json"),
        ("groups", "reset", "workflows", "--to-time", "-1h", "--json"),
    ],
)
def test_unreachable_broker_is_one_line(command: tuple[str, ...]) -> None:
    line = assert_one_line_error(run_mesh(*command, env=NOBODY))
    assert "no Kafka broker answered" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("tail", "x", "--filter", "attempt +"), "bad filter"),
        (("tail", "x", "--filter", "open('f')"), "function calls are not allowed"),
        (("tail", "x", "--filter", "atempt > 1"), "unknown field 'atempt'"),
        (("tail", "x", "--from-time", "yesterday-ish"), "cannot read time"),
        (("tail", "x", "--from-beginning", "--from-time", "-1h"), "choose one start"),
        (("tail", "x", "--max", "0"), "--max"),
        (("dlq", "redrive", "--filter", "redriven = 1"), "bad filter"),
        (("dlq", "show", "a:b"), "PARTITION:OFFSET"),
        (("groups", "reset", "workflows"), "--to-time"),
        (("groups", "reset", "workflows", "--to-time", "soon"), "cannot read time"),
    ],
)
def test_mistakes_are_one_line_before_any_connection(args: tuple[str, ...], expected: str) -> None:
    line = assert_one_line_error(run_mesh(*args, env=NOBODY))
    assert expected in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05T02:30:00Z", 1_796_437_800_000),
        ("2026-12-05T03:30:00+01:00", 1_796_437_800_000),
        ("2026-12-05 02:30:00", 1_796_437_800_000),  # no offset = UTC
        ("2026-12-05", 1_796_428_800_000),
        ("1796437800000", 1_796_437_800_000),
        ("-10m", NOW - 600_000),
        ("-1.5h", NOW - 5_400_000),
        ("2d ago", NOW - 172_800_000),
        ("-500ms", NOW - 500),
        ("10m", NOW - 600_000),  # the same forms as replay --since: a bare duration is ago
        ("1d", NOW - 86_400_000),
        ("now", NOW),
    ],
)
def test_times(text: str, expected: int) -> None:
    assert to_millis(parse_time(text, now=from_millis(NOW))) == expected


def test_bad_time_and_format() -> None:
    with pytest.raises(ConfigError, match="cannot read time"):
        parse_time("last tuesday")
    assert format_time(1_796_437_800_123) == "2026-12-05T02:30:00.123Z"


def test_positions() -> None:
    assert parse_position("41") == (None, 41)
    assert parse_position("2:41") == (2, 41)
    with pytest.raises(ConfigError):
        parse_position("-1")


@dataclass
class FakeRecord:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "t.tasks.results"
    partition: int = 1
    offset: int = 7
    timestamp: int = NOW
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def test_foreign_bytes_are_kept_bounded_and_escaped() -> None:
    huge = b"\x00\x1b[2J" + b"A" * 10_000
    seen = see(FakeRecord(huge, headers=[("h", b"\xff")]), Mapper())
    assert seen.event is None
    assert seen.raw is not None
    assert len(seen.raw) == 4_096
    assert seen.value_size == len(huge)
    assert seen.decode_error
    shown = seen.as_json()
    assert shown["raw"].startswith("\\x00\\x1b[2J")
    assert shown["raw"].endswith(f"…(+{len(huge) - 4_096} bytes)")
    assert shown["headers"] == {"h": "\ufffd"}
    assert seen.fields()["raw"] is True
    assert escape(b"caf\xc3\xa9 \xff\n", 100) == "café \\xff\\n"


def test_tombstone_is_not_a_crash() -> None:
    seen = see(FakeRecord(None), Mapper())
    assert seen.event is None
    assert seen.raw is None
    assert "tombstone" in (seen.decode_error or "")


def test_workflow_keyed_topics_are_read_on_one_partition() -> None:
    """--workflow narrows to one partition only where the catalog says the key is the workflow."""
    settings = Settings(topic_prefix="p.")
    assert keyed_by_workflow(settings, "p.workflow.events")
    assert keyed_by_workflow(settings, "p.tasks.results")
    assert not keyed_by_workflow(settings, "p.tasks.assigned")  # keyed by agent
    assert not keyed_by_workflow(settings, "p.dlq")  # keyed by whatever the original was
    assert not keyed_by_workflow(settings, "workflow.events")  # not this mesh's topic
