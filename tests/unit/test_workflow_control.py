"""Pause, resume, cancel, retry of a failed task, and the two failure policies."""

from __future__ import annotations

from datetime import timedelta

from mesh.events import RetryPolicy, RetryTask, TaskCancelled, WorkflowCompleted, WorkflowFailed
from tests.unit.test_workflow_harness import Flow, plan, spec, types


def test_pause_stops_scheduling_but_records_results() -> None:
    """While paused, results are recorded but nothing new is scheduled; resume catches up."""
    flow = Flow(plan(spec("a"), spec("b", "a"), spec("c", "a")))
    flow.start("a")
    assert types(flow.pause()) == ["workflow.paused"]
    assert flow.workflow_status() == "paused"
    assert flow.pause() == []  # already paused
    assert types(flow.complete("a")) == ["task.completed:a"]
    assert flow.s.runnable == ("b", "c")
    assert flow.s.next_timer() is None
    events = flow.resume()
    assert types(events) == ["workflow.resumed", "task.scheduled:b", "task.scheduled:c"]
    assert flow.resume() == []  # not paused


def test_retries_that_come_due_while_paused_wait_for_resume() -> None:
    """A due retry is not scheduled while paused; resume schedules it."""
    flow = Flow(plan(spec("a", retry=RetryPolicy(max_attempts=2))))
    flow.fail("a")
    flow.pause()
    retry_at = flow.s.timers["a"]
    assert flow.s.next_timer() is None  # nothing a tick could do while paused
    flow.now = retry_at
    assert flow.tick() == []
    assert types(flow.resume()) == ["workflow.resumed", "task.scheduled:a"]


def test_deadlines_fire_while_paused() -> None:
    """Pausing stops new work, not the clock of running work: timeouts still fire."""
    flow = Flow(plan(spec("a", timeout_seconds=10, retry=RetryPolicy(max_attempts=1))))
    flow.start("a")
    flow.pause()
    assert flow.s.next_timer() is not None
    flow.advance(10)
    assert types(flow.tick()) == ["task.timed_out:a", "workflow.failed"]


def test_paused_workflow_whose_last_task_finishes_completes() -> None:
    """Nothing is left to resume once every task is final, so the workflow ends."""
    flow = Flow(plan(spec("a")))
    flow.start("a")
    flow.pause()
    assert types(flow.complete("a")) == ["task.completed:a", "workflow.completed"]


def test_cancel_cancels_unfinished_tasks_and_tells_their_agents() -> None:
    """Cancel: TaskCancelled per unfinished task, CancelTask for attempts an agent holds."""
    flow = Flow(plan(spec("a"), spec("b"), spec("c"), spec("d", "c")))
    flow.succeed("c")
    flow.start("a", "agent-a")
    events = flow.cancel("no longer needed")
    assert types(events) == [
        "task.cancelled:a",
        "task.cancelled:b",
        "task.cancelled:d",
        "workflow.cancelled",
    ]
    cancelled = [e for e in events if isinstance(e, TaskCancelled)]
    assert [e.attempt for e in cancelled] == [1, 1, 1]
    assert [(c.agent_id, c.task_id) for c in flow.cancels()] == [("agent-a", "a")]
    assert flow.cancels()[0].reason == "no longer needed"
    assert flow.workflow_status() == "cancelled"
    assert flow.status("c") == "succeeded"
    # a cancelled workflow ignores everything after
    assert flow.cancel() == []
    assert flow.pause() == []
    assert flow.resume() == []
    assert flow.complete("a") == []
    assert flow.retry("a") == []
    assert flow.tick() == []
    assert flow.s.next_timer() is None


def test_fail_fast_cancels_the_rest() -> None:
    """fail_fast: the first final failure cancels every unfinished task and fails the workflow."""
    flow = Flow(plan(spec("a"), spec("b"), spec("c", "a")))
    flow.start("b", "agent-b")
    events = flow.fail("a", retriable=False)
    assert types(events) == [
        "task.failed:a",
        "task.cancelled:b",
        "task.cancelled:c",
        "workflow.failed",
    ]
    failed = events[-1]
    assert isinstance(failed, WorkflowFailed)
    assert failed.failed_task_ids == ("a",)
    assert [c.agent_id for c in flow.cancels()] == ["agent-b"]
    assert flow.complete("b") == []  # results after the end are ignored


def test_continue_skips_dependants_and_runs_independent_branches() -> None:
    """continue: every task depending on the failed one, directly or not, is skipped."""
    flow = Flow(
        plan(
            spec("a"),
            spec("b", "a"),
            spec("c", "b"),
            spec("x"),
            spec("y", "x"),
            failure_policy="continue",
        )
    )
    events = flow.fail("a", retriable=False)
    assert types(events) == ["task.failed:a", "task.skipped:b", "task.skipped:c"]
    assert flow.workflow_status() == "running"
    flow.succeed("x")
    events = flow.succeed("y")
    assert types(events)[-1] == "workflow.failed"
    assert flow.s.failed_task_ids == ("a",)
    assert flow.s.counts() == {"failed": 1, "skipped": 2, "succeeded": 2}


def test_continue_without_failures_completes() -> None:
    """continue with nothing failing ends in WorkflowCompleted."""
    flow = Flow(plan(spec("a"), spec("b"), failure_policy="continue"))
    flow.succeed("a")
    done = flow.succeed("b")[-1]
    assert isinstance(done, WorkflowCompleted)
    assert (done.completed_tasks, done.failed_tasks, done.skipped_tasks) == (2, 0, 0)


def test_retry_task_reopens_a_fail_fast_workflow() -> None:
    """RetryTask of the failure that failed the workflow: it runs again, as does what it stopped."""
    flow = Flow(plan(spec("a", retry=RetryPolicy(max_attempts=1)), spec("b"), spec("c", "a")))
    flow.succeed("b")
    flow.fail("a")
    assert flow.workflow_status() == "failed"
    assert flow.status("c") == "cancelled"
    events = flow.retry("a")
    assert types(events) == ["task.retry:a", "task.scheduled:a"]
    assert isinstance(events[0], RetryTask)
    assert flow.workflow_status() == "running"
    assert flow.s.failed_task_ids == ()
    assert flow.s.ended_at is None
    assert flow.task("a").attempt == 2  # a new attempt although the policy allowed one
    assert flow.status("c") == "pending"
    assert flow.status("b") == "succeeded"
    flow.succeed("a", {"v": 1})
    events = flow.succeed("c")
    assert flow.ready()[-1].task.inputs == {"upstream": {"a": {"v": 1}}}
    assert types(events)[-1] == "workflow.completed"


def test_retry_task_revives_cancelled_running_tasks_as_new_attempts() -> None:
    """Tasks that fail_fast cancelled mid-run reopen and get a new attempt."""
    flow = Flow(plan(spec("a"), spec("b")))
    flow.start("b")
    flow.fail("a", retriable=False)
    assert flow.status("b") == "cancelled"
    events = flow.retry("a")
    assert types(events) == ["task.retry:a", "task.scheduled:a", "task.scheduled:b"]
    assert flow.task("b").attempt == 2
    assert flow.complete("b", attempt=1) == []  # the cancelled attempt stays stale


def test_retry_task_under_continue_revives_only_what_it_stopped() -> None:
    """Skipped dependants of the retried task reopen; those of another failure stay skipped."""
    flow = Flow(
        plan(
            spec("a"),
            spec("x"),
            spec("b", "a"),
            spec("both", "a", "x"),
            failure_policy="continue",
        )
    )
    flow.fail("a", retriable=False)
    flow.fail("x", retriable=False)
    assert flow.workflow_status() == "failed"
    assert types(flow.retry("a")) == ["task.retry:a", "task.scheduled:a"]
    assert flow.workflow_status() == "running"
    assert flow.status("b") == "pending"
    assert flow.status("both") == "skipped"  # x still failed
    assert flow.status("x") == "failed"
    flow.succeed("a")
    events = flow.succeed("b")
    assert types(events)[-1] == "workflow.failed"
    assert flow.s.failed_task_ids == ("x",)


def test_retry_task_of_a_task_not_failed_is_a_no_op() -> None:
    """Only failed or timed-out tasks can be retried; a completed workflow cannot reopen."""
    flow = Flow(plan(spec("a"), spec("b", "a")))
    assert flow.retry("a") == []  # ready
    assert flow.retry("b") == []  # pending
    flow.succeed("a")
    assert flow.retry("a") == []  # succeeded
    flow.succeed("b")
    assert flow.retry("b") == []


def test_retry_task_of_a_timed_out_task() -> None:
    """A task that timed out for good can be retried too."""
    flow = Flow(plan(spec("a", timeout_seconds=5, retry=RetryPolicy(max_attempts=1))))
    flow.start("a")
    flow.advance(5)
    flow.tick()
    assert flow.status("a") == "timed_out"
    assert types(flow.retry("a")) == ["task.retry:a", "task.scheduled:a"]
    assert flow.task("a").deadline is None  # the new attempt's clock starts when it does


def test_retry_task_of_a_trigger_timeout_waits_again() -> None:
    """Retrying a task whose trigger never came starts a fresh wait for it."""
    flow = Flow(plan(spec("w", trigger="go", timeout_seconds=10), kind="event_driven"))
    flow.advance(10)
    assert types(flow.tick()) == ["task.failed:w", "workflow.failed"]
    flow.advance(100)
    assert types(flow.retry("w")) == ["task.retry:w"]
    assert flow.workflow_status() == "running"
    assert flow.task("w").wait_deadline == flow.now + timedelta(seconds=10)
    assert flow.s.next_timer() == flow.task("w").wait_deadline
    events = flow.external("go", {"n": 2})
    assert types(events) == ["workflow.external_event", "task.scheduled:w"]
    assert flow.task("w").attempt == 2


def test_a_retried_task_that_fails_again_is_final_when_the_policy_is_spent() -> None:
    """A manual retry grants one attempt; the policy does not retry beyond it."""
    flow = Flow(plan(spec("a", retry=RetryPolicy(max_attempts=1))))
    flow.fail("a")
    flow.retry("a")
    assert types(flow.fail("a")) == ["task.failed:a", "workflow.failed"]
