"""What the console shows of a workflow, from a history the real decider makes: one timeline
bar per attempt with its queued and running times, its agent and its error; task panels with
outputs cut to a preview; stream positions that parse back."""

from __future__ import annotations

import pytest

from mesh.console._streams import parse_vector, parse_workflow_position, vector, workflow_position
from mesh.console._views import attempts_of, task_detail, truncated
from mesh.errors import ConfigError
from mesh.events import RetryPolicy
from mesh.replay import Recorded
from tests.unit.test_workflow_harness import Flow, plan, spec


def _retried_once() -> Flow:
    flow = Flow(plan(spec("a", retry=RetryPolicy(max_attempts=2, jitter=0.0))))
    flow.advance(2)
    flow.assign("a", "agent-1")
    flow.advance(1)
    flow.start("a", "agent-1")
    flow.advance(3)
    flow.fail("a", "exit_code")
    flow.advance(600)  # well past any back-off
    flow.tick()  # the retry is due: attempt 2 is scheduled
    flow.assign("a", "agent-2")
    flow.start("a", "agent-2")
    flow.advance(4)
    flow.complete("a", {"stdout": "x" * 10_000, "json": {"ok": True}})
    return flow


def test_one_bar_per_attempt_with_queued_and_running_time() -> None:
    flow = _retried_once()
    first, second = attempts_of([Recorded(e) for e in flow.history])
    assert (first.attempt, first.outcome, first.agent_id) == (1, "failed", "agent-1")
    assert first.error_kind == "exit_code"
    assert first.started_at is not None
    assert first.queued_at is not None
    assert (first.started_at - first.queued_at).total_seconds() == 3
    assert first.ended_at is not None
    assert (first.ended_at - first.started_at).total_seconds() == 3
    assert (second.attempt, second.outcome, second.agent_id) == (2, "succeeded", "agent-2")
    assert second.error is None


def test_the_task_panel_cuts_long_output_unless_asked_for_all() -> None:
    flow = _retried_once()
    attempts = attempts_of([Recorded(e) for e in flow.history])
    preview = task_detail(flow.s, "a", attempts, flow.now)
    assert preview["output_truncated"] is True
    assert len(preview["output"]["stdout"]) == 4_000
    assert preview["output"]["json"] == {"ok": True}
    assert [a["outcome"] for a in preview["attempts"]] == ["failed", "succeeded"]
    whole = task_detail(flow.s, "a", attempts, flow.now, full=True)
    assert len(whole["output"]["stdout"]) == 10_000
    assert whole["output_truncated"] is False


def test_truncated_reaches_into_nested_values() -> None:
    value, cut = truncated({"a": ["short", "y" * 10], "b": 3}, limit=5)
    assert value == {"a": ["short", "yyyyy"], "b": 3}
    assert cut is True


def test_positions_parse_back_and_bad_ones_are_refused() -> None:
    assert (
        parse_workflow_position(workflow_position("p.workflow.events", 3, 42), "p.workflow.events")
        == 42
    )
    assert parse_vector(vector({1: 5, 0: 7})) == {0: 7, 1: 5}
    with pytest.raises(ConfigError):
        parse_workflow_position("other.topic:3:42", "p.workflow.events")
    with pytest.raises(ConfigError):
        parse_vector("0:7,x")
