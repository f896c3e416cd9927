"""``mesh run workflows`` and ``mesh replay`` when no broker answers: one readable line."""

from __future__ import annotations

from tests.helpers import assert_one_line_error, run_mesh

NOBODY = {"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MESH_REQUEST_TIMEOUT_MS": "2000"}


def test_replay_without_a_broker_is_one_line() -> None:
    line = assert_one_line_error(run_mesh("replay", "wf-1", env=NOBODY))
    assert "no Kafka broker answered" in line


def test_run_workflows_without_a_broker_is_one_line() -> None:
    line = assert_one_line_error(run_mesh("run", "workflows", env=NOBODY))
    assert "no Kafka broker answered" in line


def test_run_and_replay_are_registered() -> None:
    assert run_mesh("run", "workflows", "--help").code == 0
    assert "--json" in run_mesh("replay", "--help").stdout


def test_control_commands_without_a_broker_are_one_line() -> None:
    for command in (("pause", "wf-1"), ("cancel", "wf-1", "--no-wait"), ("retry", "wf-1", "B")):
        line = assert_one_line_error(run_mesh(*command, env=NOBODY))
        assert "no Kafka broker answered" in line
