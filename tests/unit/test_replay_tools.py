"""The pure parts of replay debugging: timelines, cuts, stepping, diffs, time parsing and the
JSON-lines export/import — driven by histories the real decider records (``Flow``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mesh.errors import ConfigError
from mesh.events import (
    Mapper,
    PayloadChunk,
    PayloadRef,
    WorkflowStarted,
    encode_piece,
    meta,
    payload_digest,
    split_payload,
)
from mesh.replay import (
    Recorded,
    Stepper,
    cut,
    diff,
    diff_states,
    export_history,
    from_millis,
    load_history,
    parse_time,
    timeline,
    timeline_of,
    to_millis,
)
from mesh.replay._diff import MISSING
from mesh.workflows import fold
from tests.unit.test_workflow_harness import Flow, plan, spec


def diamond_flow() -> Flow:
    """a → (b, c) → d, run to completion, with b failing once and retried."""
    flow = Flow(plan(spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c")))
    flow.succeed("a")
    flow.assign("b")
    flow.start("b")
    flow.fail("b")
    flow.advance(3600)
    flow.tick()
    flow.succeed("b")
    flow.succeed("c")
    flow.succeed("d")
    assert flow.workflow_status() == "completed"
    return flow


def recorded(flow: Flow) -> list[Recorded]:
    """The flow's history as if read from partition offsets 100, 101, … one second apart."""
    return [
        Recorded(e, offset=100 + i, timestamp_ms=1_000_000 + 1000 * i)
        for i, e in enumerate(flow.history)
    ]


def test_the_timeline_names_each_event_its_task_and_the_change_it_made() -> None:
    flow = diamond_flow()
    steps = timeline(flow.history)
    assert [s.index for s in steps] == list(range(1, len(flow.history) + 1))
    assert [s.type for s in steps] == [e.type for e in flow.history]
    assert steps[0].change == "workflow: started (4 tasks)"
    scheduled_a = next(s for s in steps if s.type == "task.scheduled" and s.task_id == "a")
    assert scheduled_a.change == "task a: pending → ready (attempt 1)"
    failed_b = next(s for s in steps if s.type == "task.failed" and s.task_id == "b")
    assert failed_b.change.startswith("task b: running → ")
    assert "error" in failed_b.change
    assert steps[-1].change == "workflow: running → completed"
    assert steps[-1].workflow_status == "completed"
    assert all(s.sequence == i for i, s in enumerate(steps, start=1))


def test_a_timeline_keeps_record_offsets() -> None:
    steps = timeline_of(recorded(diamond_flow()))
    assert [s.offset for s in steps[:3]] == [100, 101, 102]


def test_cut_stops_after_n_events_an_offset_a_sequence_or_a_time() -> None:
    history = recorded(diamond_flow())
    assert len(cut(history, until_event=3)) == 3
    assert [r.offset for r in cut(history, until_offset=104)] == [100, 101, 102, 103, 104]
    assert len(cut(history, until_sequence=2)) == 2
    assert len(cut(history, until_ms=1_000_000 + 2500)) == 3  # inclusive, by record timestamp
    assert len(cut(history, until_event=5, until_offset=102)) == 3  # every limit applies
    assert cut(history, until_offset=99) == []


def test_until_event_gives_exactly_the_state_the_manager_had_after_n_events() -> None:
    """At each decision boundary the cut history folds to the state the loop held then."""
    flow = Flow(plan(spec("a"), spec("b", "a")))
    boundaries = [len(flow.history)]
    flow.assign("a")
    boundaries.append(len(flow.history))
    flow.start("a")
    boundaries.append(len(flow.history))
    flow.complete("a")
    boundaries.append(len(flow.history))
    for n, expected in zip(boundaries, flow.states, strict=True):
        chosen = cut(recorded(flow), until_event=n)
        assert len(chosen) == n
        assert fold(r.event for r in chosen) == expected


def test_stepping_goes_forward_back_and_jumps_and_shows_the_state_after_each_event() -> None:
    flow = diamond_flow()
    stepper = Stepper(flow.history, every=3)
    assert (stepper.position, stepper.event.type) == (1, "workflow.started")
    seen = []
    for command in ["n", "", "next", "p", "j 7", "9", "last", "previous", "first"]:
        assert stepper.command(command) is True
        seen.append(stepper.position)
        assert stepper.state() == fold(flow.history[: stepper.position])
    total = len(flow.history)
    assert seen == [2, 3, 4, 3, 7, 9, total, total - 1, 1]
    stepper.command("p")
    assert stepper.position == 1  # clamped at the first event
    assert stepper.command("q") is False
    with pytest.raises(ValueError, match="out of range"):
        stepper.command(f"jump {total + 1}")
    with pytest.raises(ValueError, match="unknown command"):
        stepper.command("sideways")


def test_stepping_backwards_from_far_ahead_matches_a_fold_from_the_start() -> None:
    flow = diamond_flow()
    stepper = Stepper(flow.history, every=2)
    for n in [len(flow.history), 1, 5, 4, 3, len(flow.history) - 1]:
        assert stepper.state_at(n) == fold(flow.history[:n])


def test_diff_lists_every_differing_field_path() -> None:
    live = {"status": "running", "tasks": {"b": {"attempt": 7, "agent": "x"}}, "ids": [1, 2]}
    replayed = {"status": "running", "tasks": {"b": {"attempt": 1}}, "ids": [1, 3], "new": 1}
    found = diff(live, replayed)
    assert [str(d) for d in found] == [
        "ids[1]: snapshot has 2, replay has 3",
        "new: missing in the snapshot, replay has 1",
        "tasks.b.agent: snapshot has 'x', missing in the replay",
        "tasks.b.attempt: snapshot has 7, replay has 1",
    ]
    assert found[2].replayed is MISSING
    assert found[2].as_dict() == {"path": "tasks.b.agent", "snapshot": "x", "replay": "<missing>"}
    assert diff(live, live) == []


def test_diff_of_states_finds_a_tampered_attempt_and_nothing_else() -> None:
    flow = diamond_flow()
    state = flow.s
    tampered = state.model_copy(
        update={"tasks": {**state.tasks, "b": state.tasks["b"].model_copy(update={"attempt": 7})}}
    )
    assert [str(d) for d in diff_states(tampered, state)] == [
        "tasks.b.attempt: snapshot has 7, replay has 2"
    ]


def test_times_are_iso_utc_or_durations_ago() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_time("2026-01-31T10:00:00Z") == datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_time("2026-01-31T10:00:00") == datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_time("15m", now=now) == now - timedelta(minutes=15)
    assert parse_time("2h ago", now=now) == now - timedelta(hours=2)
    assert parse_time("-1d", now=now) == now - timedelta(days=1)
    assert parse_time("now", now=now) == now
    with pytest.raises(ConfigError, match="cannot read time 'yesterday-ish'"):
        parse_time("yesterday-ish")


def test_export_then_import_gives_the_same_history_and_final_state(tmp_path: Path) -> None:
    flow = diamond_flow()
    path = tmp_path / "wf.jsonl"
    assert export_history(recorded(flow), path) == len(flow.history)
    first = json.loads(path.read_text().splitlines()[0])
    assert (first["offset"], first["timestamp_ms"], first["event"]["type"]) == (
        100,
        1_000_000,
        "workflow.started",
    )
    loaded = load_history(path, Mapper())
    assert [r.event for r in loaded] == flow.history
    assert [r.offset for r in loaded] == [100 + i for i in range(len(flow.history))]
    assert fold(r.event for r in loaded) == flow.s


def test_import_accepts_bare_events_and_skips_duplicate_sequences(tmp_path: Path) -> None:
    """A raw dump of the topic (one event per line, a redelivered one among them) replays."""
    flow = diamond_flow()
    lines = [e.model_dump_json() for e in flow.history]
    lines.insert(3, lines[2])
    path = tmp_path / "dump.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    loaded = load_history(path, Mapper())
    assert [r.event for r in loaded] == flow.history
    assert loaded[0].offset is None


def test_import_errors_name_the_file_and_line(tmp_path: Path) -> None:
    flow = diamond_flow()
    good = flow.history[0].model_dump_json()
    cases = {
        "not json": "{nope",
        "not an object": "[1, 2]",
        "not an event": '{"type": "nothing.here", "schema_version": 1}',
    }
    for name, bad in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.jsonl"
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(ConfigError, match=re.escape(f"{path.name}:2: ")):
            load_history(path, Mapper())
    with pytest.raises(ConfigError, match="cannot read"):
        load_history(tmp_path / "missing.jsonl", Mapper())


def test_import_refuses_an_oversized_line(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text('{"x": "' + "a" * 5000 + '"}\n')
    with pytest.raises(ConfigError, match=r"big\.jsonl:1: line longer than"):
        load_history(path, Mapper(max_event_bytes=1024))


def test_a_file_with_two_workflows_needs_a_workflow_id(tmp_path: Path) -> None:
    one, two = diamond_flow(), Flow(plan(spec("x")), workflow_id="wf-2")
    path = tmp_path / "two.jsonl"
    export_history([*recorded(one), *(Recorded(e) for e in two.history)], path)
    with pytest.raises(ConfigError, match="holds 2 workflows"):
        load_history(path, Mapper())
    assert [r.event for r in load_history(path, Mapper(), workflow_id="wf-2")] == two.history


def test_a_printed_record_time_reads_back_as_the_same_millisecond() -> None:
    for millis in (1_733_367_421_123, 1_796_438_836_306, 0, 999):
        assert to_millis(parse_time(from_millis(millis).isoformat())) == millis


def _by_reference(flow: Flow) -> tuple[list[Recorded], list[PayloadChunk]]:
    """The flow's history with its start recorded by reference, and the plan's chunks."""
    history = recorded(flow)
    started = history[0].event
    assert isinstance(started, WorkflowStarted)
    assert started.plan is not None
    data = started.plan.model_dump_json().encode()
    pieces = split_payload(data, 100)
    ref = PayloadRef(
        payload_id="plan-1", size=len(data), sha256=payload_digest(data), chunks=len(pieces)
    )
    chunks = [
        PayloadChunk(
            **meta(started.producer, correlation_id="c"),
            payload_id="plan-1",
            index=i,
            count=len(pieces),
            data=encode_piece(piece),
        )
        for i, piece in enumerate(pieces)
    ]
    on_wire = started.model_copy(update={"plan": None, "plan_ref": ref})
    raw = Mapper().encode(on_wire).value
    history[0] = Recorded(on_wire, history[0].offset, history[0].timestamp_ms, raw)
    return history, chunks


def test_an_export_carries_the_plan_by_reference_and_the_import_uses_it(tmp_path: Path) -> None:
    """The payload chunks written after the history give the import back the plan a start by
    reference names (checked by digest), so the file alone replays to the same state."""
    flow = diamond_flow()
    history, chunks = _by_reference(flow)
    path = tmp_path / "wf.jsonl"
    assert export_history(history, path, chunks) == len(flow.history)
    assert json.loads(path.read_text().splitlines()[0])["event"]["plan"] is None
    loaded = load_history(path, Mapper())
    assert len(loaded) == len(flow.history)
    assert fold(r.event for r in loaded) == flow.s


def test_an_import_without_the_plan_or_with_a_bad_chunk_says_so(tmp_path: Path) -> None:
    flow = diamond_flow()
    history, chunks = _by_reference(flow)
    path = tmp_path / "wf.jsonl"
    export_history(history, path, chunks[:-1])
    with pytest.raises(ConfigError, match="chunks not found"):
        load_history(path, Mapper())
    bad = chunks[0].model_copy(update={"data": encode_piece(b"x" * 100)})
    export_history(history, path, [bad, *chunks[1:]])
    with pytest.raises(ConfigError, match="sha256"):
        load_history(path, Mapper())
