"""The words the CLI uses for times, validation errors and filters (issue 13), in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from mesh.errors import ConfigError, ExpressionError
from mesh.events import ExecutionPlan, TaskRequest, validation_message
from mesh.inspect import EVENT_TYPES, FILTER_NAMES, parse_filter
from mesh.settings import Settings
from mesh.times import format_time, parse_time

NOW = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ahead", "expected"),
    [
        ("15m", False, NOW - timedelta(minutes=15)),
        ("15m", True, NOW + timedelta(minutes=15)),  # a deadline lies ahead
        ("15m ago", True, NOW - timedelta(minutes=15)),
        ("-2h", True, NOW - timedelta(hours=2)),
        ("1d", False, NOW - timedelta(days=1)),
        ("2026-12-05T03:30:00+01:00", False, NOW),
        ("2026-12-05 02:30", False, NOW),  # no offset: UTC
        ("now", True, NOW),
    ],
)
def test_one_reader_for_every_time(text: str, ahead: bool, expected: datetime) -> None:
    assert parse_time(text, now=NOW, ahead=ahead) == expected


def test_times_print_with_t_and_z() -> None:
    assert format_time(NOW) == "2026-12-05T02:30:00.000Z"
    assert format_time(NOW, "seconds") == "2026-12-05T02:30:00Z"
    with pytest.raises(ConfigError, match=r"a duration such as 15m, 2h or 1d"):
        parse_time("soonish")


def _plan_error(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        ExecutionPlan.model_validate(data)
    return validation_message(caught.value, ExecutionPlan, aliases={"id": "task_id"})


def test_validation_errors_in_the_mesh_s_words() -> None:
    task = {"task_id": "A", "name": "A", "command": ["true"]}
    assert (
        _plan_error({"plan_id": "p", "workflow_type": "dag", "tasks": [{**task, "comand": []}]})
        == "tasks[0]: unknown field 'comand'; did you mean 'command'?"
    )
    assert (
        _plan_error({"plan_id": "p", "workflow_typ": "dag", "tasks": [task]})
        == "unknown field 'workflow_typ'; did you mean 'workflow_type'?"
    )
    assert (
        _plan_error(
            {"plan_id": "p", "workflow_type": "dag", "tasks": [{**task, "depends_on": ["Z"]}]}
        )
        == "task 'A' depends on unknown task 'Z'"
    )
    assert (
        _plan_error(
            {
                "plan_id": "p",
                "workflow_type": "dag",
                "tasks": [{**task, "retry": {"max_attempts": "x"}}],
            }
        )
        == "tasks[0].retry.max_attempts: expected a whole number, got 'x'"
    )
    with pytest.raises(ValidationError) as caught:
        TaskRequest.model_validate({"task_type": "x"})
    assert validation_message(caught.value, renames={"task_type": "type"}).endswith("is missing")


def test_an_unquoted_event_type_is_refused_with_the_quotes_it_needs() -> None:
    with pytest.raises(ExpressionError, match=r"task\.failed is not a field name") as caught:
        parse_filter("type == task.failed", known=FILTER_NAMES, values=EVENT_TYPES)
    assert """'type == "task.failed"'""" in str(caught.value)
    quoted = parse_filter('type == "task.failed"', known=FILTER_NAMES, values=EVENT_TYPES)
    assert quoted.matches({"type": "task.failed"})
    with pytest.raises(ExpressionError, match=r'quotes \("failed"\)'):
        parse_filter("type == failed", known=FILTER_NAMES, values=EVENT_TYPES)


def test_a_setting_s_own_words_keep_the_names_they_start_with() -> None:
    """A settings validator's message starts with the variable's name: it is shown as written."""
    with pytest.raises(ValidationError) as caught:
        Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u")
    message = validation_message(caught.value)
    assert "MESH_SASL_PASSWORD is not set" in message, message
