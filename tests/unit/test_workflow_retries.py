"""Retries with back-off, attempt timeouts, and reassignment of a lost agent's attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.events import (
    Backoff,
    RetryPolicy,
    TaskRetryScheduled,
    TaskTimedOut,
)
from mesh.workflows._scheduling import backoff_delay
from tests.unit.test_workflow_harness import T0, Flow, plan, spec, types


def policy(max_attempts: int = 3, jitter: float = 0.0, **backoff: float) -> RetryPolicy:
    return RetryPolicy(max_attempts=max_attempts, jitter=jitter, backoff=Backoff(**backoff))


def retried(events: Sequence[object]) -> TaskRetryScheduled:
    found = [e for e in events if isinstance(e, TaskRetryScheduled)]
    assert len(found) == 1, events
    return found[0]


def test_failing_twice_then_succeeding_completes() -> None:
    """With max_attempts 3, two retriable failures are retried and the third attempt succeeds."""
    flow = Flow(plan(spec("a", retry=policy(3, initial_seconds=2)), spec("b", "a")))
    for attempt in (1, 2):
        events = flow.fail("a")
        assert types(events) == ["task.failed:a", "task.retry_scheduled:a"]
        retry = retried(events)
        assert retry.attempt == attempt + 1
        assert retry.last_error_kind == "exit_code"
        assert flow.status("a") == "retrying"
        assert flow.s.next_timer() == retry.retry_at
        flow.now = retry.retry_at - timedelta(microseconds=1)
        assert flow.tick() == []
        flow.now = retry.retry_at
        assert types(flow.tick()) == ["task.scheduled:a"]
        assert flow.task("a").attempt == attempt + 1
    assert [(r.task_id, r.attempt) for r in flow.ready()] == [("a", 1), ("a", 2), ("a", 3)]
    flow.succeed("a", {"ok": True})
    flow.succeed("b")
    assert flow.workflow_status() == "completed"
    assert flow.task("a").failures == 2


def test_spent_policy_fails_the_workflow_with_that_error() -> None:
    """With max_attempts 2 the second failure is final: the workflow fails, naming the task."""
    flow = Flow(plan(spec("a", retry=policy(2)), spec("b", "a")))
    flow.fail("a", "oom")
    flow.now = flow.s.timers["a"]
    flow.tick()
    events = flow.fail("a", "oom")
    assert types(events) == ["task.failed:a", "task.cancelled:b", "workflow.failed"]
    assert flow.workflow_status() == "failed"
    assert flow.s.failed_task_ids == ("a",)
    assert "oom" in flow.s.reason
    assert flow.task("a").error_kind == "oom"
    assert flow.status("b") == "cancelled"


def test_non_retryable_kind_and_non_retriable_failure_fail_at_once() -> None:
    """An error kind listed in non_retryable, or retriable=False, skips the retry policy."""
    flow = Flow(
        plan(
            spec("a", retry=RetryPolicy(non_retryable=("bad_input",))),
            spec("b"),
            failure_policy="continue",
        )
    )
    assert types(flow.fail("a", "bad_input")) == ["task.failed:a"]
    assert flow.status("a") == "failed"
    assert types(flow.fail("b", "crash", retriable=False)) == ["task.failed:b", "workflow.failed"]


def test_backoff_grows_and_is_capped() -> None:
    """Without jitter the delays are initial * multiplier^(n-1), capped at max_seconds."""
    flow = Flow(plan(spec("a", retry=policy(6, initial_seconds=1, multiplier=3, max_seconds=20))))
    delays = []
    for _ in range(5):
        retry = retried(flow.fail("a"))
        delays.append(retry.delay_seconds)
        assert retry.retry_at == flow.now + timedelta(seconds=retry.delay_seconds)
        flow.now = retry.retry_at
        flow.tick()
    assert delays == [1, 3, 9, 20, 20]


@given(
    workflow_id=st.text("abcdef0123456789-", min_size=1, max_size=20),
    task_id=st.text("abcxyz_", min_size=1, max_size=10),
    failures=st.integers(1, 30),
    jitter=st.floats(0, 1),
    initial=st.floats(0.01, 100),
)
def test_jitter_is_deterministic_and_within_bounds(
    workflow_id: str, task_id: str, failures: int, jitter: float, initial: float
) -> None:
    """Jittered delay: same inputs, same delay; within ± jitter of the capped exponential."""
    retry = policy(100, jitter=jitter, initial_seconds=initial, max_seconds=initial * 50)
    delay = backoff_delay(retry, workflow_id, task_id, failures, failures)
    assert delay == backoff_delay(retry, workflow_id, task_id, failures, failures)
    base = min(initial * 50, initial * 2 ** (failures - 1))
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_jitter_differs_between_tasks_and_attempts() -> None:
    """The jitter spreads retries: different tasks or attempts get different delays."""
    retry = policy(10, jitter=0.5, initial_seconds=10)
    delays = {backoff_delay(retry, "wf", t, a, 1) for t in "abcdefgh" for a in (1, 2, 3)}
    assert len(delays) == 24
    assert all(5 <= d <= 15 for d in delays)


def test_timeout_of_a_running_attempt_is_retried_and_the_agent_told() -> None:
    """A running attempt past start + timeout times out at a Tick; its agent gets CancelTask."""
    flow = Flow(plan(spec("a", timeout_seconds=30, retry=policy(2))))
    flow.assign("a", "agent-7")
    flow.advance(5)
    flow.start("a", "agent-7")
    assert flow.task("a").deadline == T0 + timedelta(seconds=35)
    assert flow.s.next_timer() == T0 + timedelta(seconds=35)
    flow.advance(29)
    assert flow.tick() == []
    flow.advance(1)
    events = flow.tick()
    assert types(events) == ["task.timed_out:a", "task.retry_scheduled:a"]
    timed_out = events[0]
    assert isinstance(timed_out, TaskTimedOut)
    assert timed_out.timeout_seconds == 30
    assert timed_out.causation_id is None  # a tick has no causing event ...
    assert timed_out.correlation_id == "req-1"  # ... but the workflow's correlation
    assert flow.task("a").error_kind == "timeout"
    cancel = flow.cancels()[-1]
    assert (cancel.agent_id, cancel.key, cancel.attempt) == ("agent-7", "agent-7", 1)
    # the late result of the timed-out attempt is stale
    assert flow.complete("a", attempt=1) == []
    flow.now = flow.s.timers["a"]
    assert types(flow.tick()) == ["task.scheduled:a"]
    flow.assign("a")
    flow.advance(31)  # an assigned attempt that never starts times out too
    assert types(flow.tick()) == ["task.timed_out:a", "workflow.failed"]
    assert flow.status("a") == "timed_out"
    assert flow.s.failed_task_ids == ("a",)


def test_timeout_kind_can_be_non_retryable() -> None:
    """`timeout` in non_retryable makes the first timeout final."""
    flow = Flow(plan(spec("a", timeout_seconds=1, retry=RetryPolicy(non_retryable=("timeout",)))))
    flow.start("a")
    flow.advance(1)
    assert types(flow.tick()) == ["task.timed_out:a", "workflow.failed"]


def test_a_ready_attempt_has_no_deadline() -> None:
    """Time spent waiting for an agent (in the allocator's queue) does not count as running."""
    flow = Flow(plan(spec("a", timeout_seconds=1)))
    assert flow.s.next_timer() is None
    flow.advance(3600)
    assert flow.tick() == []


def test_reassignment_schedules_a_new_attempt_without_using_the_policy() -> None:
    """TaskReassigned (the agent died): a new attempt now, a CancelTask to the old agent."""
    flow = Flow(plan(spec("a", retry=policy(1))))
    flow.start("a", "agent-dead")
    events = flow.reassign("a", "agent-dead")
    assert types(events) == ["task.reassigned:a", "task.scheduled:a"]
    assert flow.task("a").attempt == 2
    assert flow.task("a").failures == 0
    assert flow.cancels()[-1].agent_id == "agent-dead"
    assert flow.complete("a", attempt=1) == []  # the lost attempt's late result is stale
    flow.succeed("a")
    assert flow.workflow_status() == "completed"


def test_retry_waits_for_a_slot() -> None:
    """A due retry under max_parallelism waits for a free slot, then goes before new tasks."""
    flow = Flow(plan(spec("a", retry=policy(3)), spec("b"), spec("c"), max_parallelism=2))
    retry_at = retried(flow.fail("a")).retry_at
    assert flow.ready_ids() == ["a", "b", "c"]  # a's slot went to c
    flow.now = retry_at
    assert flow.s.next_timer() is None  # no slot: a tick could do nothing
    assert flow.tick() == []
    flow.succeed("b")
    assert flow.ready_ids()[-1] == "a"
    assert flow.task("a").attempt == 2


def test_a_zero_delay_retry_waits_for_the_next_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a retry due at once is scheduled by a later tick, after its CancelTask went out.

    Keeping the timed-out attempt's agent in the state until then is what lets ``dispatches``
    address the CancelTask to it.
    """
    monkeypatch.setattr("mesh.workflows._failures.backoff_delay", lambda *_: 0.0)
    flow = Flow(plan(spec("a", timeout_seconds=5)))
    flow.start("a", "agent-5")
    flow.advance(5)
    assert types(flow.tick()) == ["task.timed_out:a", "task.retry_scheduled:a"]
    assert [c.agent_id for c in flow.cancels()] == ["agent-5"]
    assert flow.s.next_timer() == flow.now
    assert types(flow.tick()) == ["task.scheduled:a"]
