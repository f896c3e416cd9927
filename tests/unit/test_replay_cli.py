"""``mesh replay --from-file`` (no broker), ``--step`` driven through stdin, and the one-line
errors of replay, status, watch and list — all as real ``mesh`` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.replay import Recorded, export_history
from mesh.workflows import fold
from tests.helpers import assert_one_line_error, run_mesh
from tests.unit.test_replay_tools import diamond_flow, recorded
from tests.unit.test_workflow_harness import Flow

NOBODY = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MESH_REQUEST_TIMEOUT_MS": "2000"}


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Flow, Path]:
    flow = diamond_flow()
    path = tmp_path / "wf.jsonl"
    export_history(recorded(flow), path)
    return flow, path


def test_from_file_replays_with_no_broker(exported: tuple[Flow, Path]) -> None:
    flow, path = exported
    run = run_mesh("replay", "--from-file", str(path), "--json", env=NOBODY)
    assert run.code == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["workflow_id"], document["status"]) == ("wf-1", "completed")
    assert document["event_count"] == len(flow.history)
    assert document["equal"] is None  # no live snapshot in a file
    assert [s["type"] for s in document["timeline"]] == [e.type for e in flow.history]
    assert document["timeline"][0]["offset"] == 100
    assert {t["task_id"]: t["status"] for t in document["tasks"]} == dict.fromkeys(
        "abcd", "succeeded"
    )


def test_from_file_until_event_stops_after_exactly_n_events(exported: tuple[Flow, Path]) -> None:
    flow, path = exported
    run = run_mesh("replay", "--from-file", str(path), "--until-event", "5", "--json", env=NOBODY)
    assert run.code == 0, run.stderr
    document = json.loads(run.stdout)
    expected = fold(flow.history[:5])
    assert expected is not None
    assert (document["event_count"], document["sequence"]) == (5, 5)
    assert document["stopped_early"] is True
    assert {t["task_id"]: t["status"] for t in document["tasks"]} == {
        t: s.status for t, s in expected.tasks.items()
    }


def test_the_text_view_shows_a_timeline_and_the_tasks(exported: tuple[Flow, Path]) -> None:
    _, path = exported
    wide = {**NOBODY, "COLUMNS": "200"}  # rich wraps table cells at 80 columns when piped
    run = run_mesh("replay", "--from-file", str(path), "--until-offset", "103", env=wide)
    assert run.code == 0, run.stderr
    assert "workflow.started" in run.stdout
    assert "task a: pending → ready (attempt 1)" in run.stdout
    assert "stopped after 4 events (sequence 4; 23 read)" in run.stdout


def test_step_is_driven_through_stdin(exported: tuple[Flow, Path]) -> None:
    """next, previous and jump move the cursor; each shows the state after that event."""
    flow, path = exported
    commands = "n\nn\np\nj 9\nbogus\nlast\nq\n"
    run = run_mesh("replay", "--from-file", str(path), "--step", "--json", stdin=commands)
    assert run.code == 0, run.stderr
    shown = [json.loads(line) for line in run.stdout.splitlines()]
    total = len(flow.history)
    assert [s["position"] for s in shown] == [1, 2, 3, 2, 9, 9, total]
    assert "unknown command 'bogus'" in run.stderr
    for step in shown:
        expected = fold(flow.history[: step["position"]])
        assert expected is not None
        assert step["total"] == total
        assert step["event"]["type"] == flow.history[step["position"] - 1].type
        assert step["state"]["status"] == expected.status
        assert {t["task_id"]: t["status"] for t in step["state"]["tasks"]} == {
            t: s.status for t, s in expected.tasks.items()
        }


def test_step_as_text_and_eof_ends_it(exported: tuple[Flow, Path]) -> None:
    _, path = exported
    run = run_mesh("replay", "--from-file", str(path), "--step", stdin="n\n")
    assert run.code == 0, run.stderr
    assert "event 1/" in run.stdout
    assert "event 2/" in run.stdout
    assert "commands: n(ext)" in run.stdout


def test_a_bare_event_dump_replays(tmp_path: Path) -> None:
    flow = diamond_flow()
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in flow.history))
    run = run_mesh("replay", "--from-file", str(path), "--json", env=NOBODY)
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "completed"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--all", "wf-1"), "--all replays every workflow of a time window"),
        (("--all", "--step"), "it does not take --step"),
        (("wf-1", "--since", "1h"), "--since applies to --all"),
        (("wf-1", "--until", "someday"), "cannot read time 'someday'"),
        (("wf-1", "--diff-live", "--until-event", "2"), "--diff-live compares the whole"),
        (("--all", "--since", "now", "--until", "1h"), "--since is after --until"),
        ((), "name a WORKFLOW_ID"),
        (("--from-file", "/nonexistent/x.jsonl"), "cannot read /nonexistent/x.jsonl"),
    ],
)
def test_wrong_usage_is_one_line(args: tuple[str, ...], expected: str) -> None:
    line = assert_one_line_error(run_mesh("replay", *args, env=NOBODY))
    assert expected in line


def test_diff_live_needs_the_broker_not_a_file(exported: tuple[Flow, Path]) -> None:
    _, path = exported
    line = assert_one_line_error(
        run_mesh("replay", "--from-file", str(path), "--diff-live", env=NOBODY)
    )
    assert "needs the live snapshot" in line


def test_a_broken_file_is_one_line(tmp_path: Path) -> None:
    flow = diamond_flow()
    path = tmp_path / "broken.jsonl"
    export_history([Recorded(e) for e in flow.history[1:]], path)
    line = assert_one_line_error(run_mesh("replay", "--from-file", str(path), env=NOBODY))
    assert "comes before its workflow.started" in line


@pytest.mark.parametrize(
    "args",
    [
        ("status", "wf-1"),
        ("watch", "wf-1"),
        ("list",),
        ("replay", "wf-1", "--diff-live"),
        ("replay", "--all"),
    ],
)
def test_no_broker_is_one_line(args: tuple[str, ...]) -> None:
    line = assert_one_line_error(run_mesh(*args, env=NOBODY))
    assert "no Kafka broker answered" in line


@pytest.mark.parametrize("command", ["replay", "status", "watch", "list"])
def test_help_has_an_example_and_json(command: str) -> None:
    run = run_mesh(command, "--help")
    assert run.code == 0
    assert "Example" in run.stdout
    assert "--json" in run.stdout
