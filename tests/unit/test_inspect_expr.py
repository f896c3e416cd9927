"""The filter language of ``mesh tail`` and ``mesh dlq``: what it accepts, what it refuses, and
that a record missing a field or holding another type simply does not match."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import ExpressionError
from mesh.inspect import parse_filter

FAILED_B: dict[str, Any] = {
    "type": "task.failed",
    "task_id": "B",
    "attempt": 2,
    "retriable": True,
    "producer": {"component": "agent", "instance": "h-1"},
    "headers": {"mesh-type": "task.failed"},
    "tags": ["x", "y"],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('type == "task.failed"', True),
        ('type != "task.failed"', False),
        ('attempt > 1 and task_id == "B"', True),
        ('attempt > 2 or task_id == "A"', False),
        ("not attempt > 2", True),
        ("1 < attempt <= 2", True),
        ("0 < attempt < 2", False),
        ('type in ["task.failed", "task.timed_out"]', True),
        ('type in ("task.completed",)', False),
        ('task_id not in ["A", "C"]', True),
        ('"fail" in type', True),
        ('producer.component == "agent"', True),
        ('headers["mesh-type"] == "task.failed"', True),
        ('tags[1] == "y"', True),
        ("retriable", True),
        ("retriable == true", True),
        ("not retriable", False),
        ("attempt == -2", False),
        ("attempt > -1", True),
        ("workflow_id == null", False),
    ],
)
def test_expressions_over_fields(text: str, expected: bool) -> None:
    assert parse_filter(text).matches(FAILED_B) is expected


@pytest.mark.parametrize(
    "text",
    [
        "sequence > 1",  # missing field: never matches
        "sequence == None",
        'attempt > "x"',  # cannot be ordered: no match, no crash
        "attempt in 3",
        "producer.nothing.deeper == 1",
        "tags[9] == 1",
    ],
)
def test_missing_or_mismatched_never_match(text: str) -> None:
    assert parse_filter(text).matches(FAILED_B) is False


def test_not_of_missing_is_true() -> None:
    assert parse_filter("not sequence").matches(FAILED_B) is True


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("__import__('os').system('true')", "function calls are not allowed"),
        ("attempt + 1 > 2", "arithmetic is not allowed"),
        ("type.__class__ == 1", "may not start with '_'"),
        ("[x for x in tags]", "comprehensions are not allowed"),
        ("attempt is None", "'is'/'is not' is not allowed"),
        ("lambda: 1", "lambdas are not allowed"),
        ("type == ", "bad filter"),
        ("", "empty filter expression"),
        ("tags[attempt] == 1", "only a string or number constant"),
        ('f"{type}" == 1', "f-strings are not allowed"),
        ("{'a': 1} == type", "dict literals are not allowed"),
        ("type in [task_id]", "lists may hold only constants"),
        ("x" * 3000, "over the limit"),
    ],
)
def test_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_filter(text)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message


def test_unknown_field_is_an_error_when_fields_are_known() -> None:
    with pytest.raises(ExpressionError, match="unknown field 'atempt'"):
        parse_filter("atempt > 1", known={"attempt", "type"})
    assert parse_filter("attempt > 1 and true", known={"attempt"}).names == {"attempt"}


def test_syntax_error_is_readable() -> None:
    with pytest.raises(ExpressionError, match=r"bad filter .*invalid syntax.*write e\.g\."):
        parse_filter('type == "task.failed" and')
