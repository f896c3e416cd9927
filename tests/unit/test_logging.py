"""structlog: ids bound to every line, secrets masked, JSON when not on a terminal."""

from __future__ import annotations

import json
import subprocess
import sys

import structlog
from structlog.testing import capture_logs

from mesh.log import _drop_secrets, bind_event_context


def test_bound_ids_reach_every_line() -> None:
    structlog.contextvars.clear_contextvars()
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        bind_event_context(workflow_id="wf-1", correlation_id="req-9")
        structlog.get_logger().info("task scheduled")
        structlog.get_logger().info("task done")
    structlog.contextvars.clear_contextvars()
    assert [entry["workflow_id"] for entry in logs] == ["wf-1", "wf-1"]
    assert {entry["correlation_id"] for entry in logs} == {"req-9"}


def test_secret_keys_are_masked() -> None:
    event = _drop_secrets(None, "info", {"event": "login", "sasl_password": "hunter2", "user": "a"})
    assert event["sasl_password"] == "**********"
    assert event["user"] == "a"


def test_json_lines_when_not_a_terminal() -> None:
    """A component's logs piped to a file are JSON with component and instance bound."""
    code = (
        "from mesh.log import configure_logging, get_logger\n"
        "configure_logging('workflows', instance='wm-1')\n"
        "get_logger().info('rebuilt', workflows=3, password='hunter2')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["event"] == "rebuilt"
    assert line["component"] == "workflows"
    assert line["instance"] == "wm-1"
    assert line["workflows"] == 3
    assert "hunter2" not in done.stderr


def test_a_service_configuration_replaces_the_commands() -> None:
    """The root command configures WARNING for every command; a service then logs at its own
    level (INFO), bound to its own component and instance."""
    code = (
        "from mesh.log import configure_logging, get_logger\n"
        "configure_logging('cli', level='WARNING')\n"
        "get_logger().info('not shown')\n"
        "configure_logging('agent', level='INFO', instance='shell-1')\n"
        "get_logger().info('agent ready')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    [line] = [json.loads(text) for text in done.stderr.splitlines()]
    assert (line["event"], line["component"], line["instance"]) == (
        "agent ready",
        "agent",
        "shell-1",
    )
