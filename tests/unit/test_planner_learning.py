"""Estimates and method choices learned from the history, as a pure, idempotent fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.events import (
    Event,
    ExecutionPlan,
    Producer,
    TaskCompleted,
    TaskFailed,
    TaskRequest,
    TaskStarted,
    WorkflowCompleted,
    WorkflowStarted,
    meta,
)
from mesh.planner import Estimator, Learning, MethodBandit, Planner, fit_lognormal, tag_of

ME = Producer(component="test", instance="t-1")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_estimate_is_within_ten_percent_after_200_completions() -> None:
    """Durations drawn from a log-normal with a known mean; the prior (60 s) is far off."""
    rng = np.random.default_rng(20240601)
    true_mean, sigma = 300.0, 0.6
    mu = np.log(true_mean) - sigma**2 / 2
    estimator = Estimator()
    for duration in rng.lognormal(mu, sigma, size=200):
        estimator.observe("implement", float(duration), cost=0.2)
    estimate = estimator.estimate("implement", prior_seconds=60.0, prior_cost=1.0)
    assert abs(estimate.mean_seconds - true_mean) / true_mean < 0.10
    assert estimate.p10_seconds < true_mean < estimate.p90_seconds
    assert estimate.observations == 200
    assert estimate.mean_cost == pytest.approx(0.2, rel=0.05)
    assert estimate.log_sigma == pytest.approx(sigma, rel=0.15)


def test_cold_start_uses_the_template_prior() -> None:
    estimate = Estimator().estimate("never-seen", prior_seconds=120.0, prior_cost=0.5)
    assert estimate.mean_seconds == pytest.approx(120.0)
    assert estimate.mean_cost == pytest.approx(0.5)
    assert estimate.p10_seconds < 120.0 < estimate.p90_seconds


def test_half_life_follows_a_change_in_speed() -> None:
    steady, adaptive = Estimator(), Estimator(half_life=20)
    for duration in [100.0] * 200 + [400.0] * 60:
        steady.observe("t", duration)
        adaptive.observe("t", duration)
    assert steady.estimate("t", 100.0).mean_seconds < 200
    assert adaptive.estimate("t", 100.0).mean_seconds > 300


def test_fit_lognormal_recovers_parameters() -> None:
    samples = np.random.default_rng(3).lognormal(2.0, 0.5, size=5_000)
    mu, sigma = fit_lognormal(samples)
    assert mu == pytest.approx(2.0, abs=0.03)
    assert sigma == pytest.approx(0.5, abs=0.03)


def test_bandit_prefers_the_more_successful_method_after_500_outcomes() -> None:
    rng = np.random.default_rng(7)
    rates = {"careful": 0.85, "hasty": 0.55}
    bandit = MethodBandit()
    for _ in range(500):
        method = bandit.choose("feature", list(rates), rng)
        bandit.observe("feature", method, bool(rng.random() < rates[method]))
    picks = [bandit.choose("feature", list(rates), rng) for _ in range(1_000)]
    assert picks.count("careful") / len(picks) >= 0.80
    assert bandit.stats("feature", "careful").mean > bandit.stats("feature", "hasty").mean


def test_bandit_weighs_success_against_duration() -> None:
    """Equal success, one method twice as fast: the faster one wins (time per success)."""
    rng = np.random.default_rng(11)
    bandit = MethodBandit()
    for method in ("slow", "fast"):
        for i in range(200):
            bandit.observe("t", method, i % 10 != 0)
    picks = [bandit.choose("t", ["slow", "fast"], rng, [200.0, 100.0]) for _ in range(500)]
    assert picks.count("fast") == 500


# -- the fold -------------------------------------------------------------------------------


def _request() -> TaskRequest:
    return TaskRequest(
        **meta(ME, correlation_id="r"),
        request_id="r",
        task_type="feature",
        description="Add a flag",
    )


def _history(plan: ExecutionPlan, workflow_id: str, durations: dict[str, float]) -> list[Event]:
    """What the Workflow Manager records for a run where ``implement`` fails once."""
    seq = iter(range(1, 10_000))
    events: list[Event] = [
        WorkflowStarted(
            **meta(ME, correlation_id="r", occurred_at=T0),
            workflow_id=workflow_id,
            sequence=next(seq),
            request_id="r",
            plan=plan,
        )
    ]
    clock = T0
    for t in plan.tasks:
        attempt = 1
        if t.task_id == "implement":
            events.append(
                TaskFailed(
                    **meta(ME, correlation_id="r"),
                    workflow_id=workflow_id,
                    sequence=next(seq),
                    task_id=t.task_id,
                    attempt=1,
                    error_kind="exit_code",
                    message="tests failed",
                    retriable=True,
                )
            )
            attempt = 2
        events.append(
            TaskStarted(
                **meta(ME, correlation_id="r", occurred_at=clock),
                workflow_id=workflow_id,
                sequence=next(seq),
                task_id=t.task_id,
                attempt=attempt,
                agent_id="a1",
            )
        )
        clock += timedelta(seconds=durations[t.task_id])
        with_duration: dict[str, Any] = (
            {"duration_seconds": durations[t.task_id]} if t.task_id != "review" else {}
        )
        events.append(
            TaskCompleted(
                **meta(ME, correlation_id="r", occurred_at=clock),
                workflow_id=workflow_id,
                sequence=next(seq),
                task_id=t.task_id,
                attempt=attempt,
                agent_id="a1",
                cost=0.3,
                **with_duration,
            )
        )
    events.append(
        WorkflowCompleted(
            **meta(ME, correlation_id="r"),
            workflow_id=workflow_id,
            sequence=next(seq),
            completed_tasks=len(plan.tasks),
        )
    )
    return events


def _state(learning: Learning) -> tuple[Any, ...]:
    return learning.estimator.snapshot(), learning.bandit.snapshot(), learning.open_workflows


PLAN = Planner().plan_task(_request())
DURATIONS = {t.task_id: 100.0 * (i + 1) for i, t in enumerate(PLAN.tasks)}
HISTORIES = [_history(PLAN, f"wf-{i}", DURATIONS) for i in range(3)]


def test_the_fold_learns_durations_costs_and_method_outcomes() -> None:
    learning = Learning()
    assert learning.apply_all(HISTORIES[0]) > 0
    estimates = learning.estimator.snapshot()
    types = {t.task_id: tag_of(t.inputs) for t in PLAN.tasks}
    assert set(estimates) == {tag.task_type for tag in types.values() if tag}
    review = types["review"]
    assert review is not None
    assert learning.estimator.estimate(review.task_type, 1.0).observations == 1  # from the clock
    arms = learning.bandit.snapshot()["feature"]
    ((_method, (successes, failures)),) = arms.items()
    assert (successes, failures) == (len(PLAN.tasks), 1)
    assert learning.open_workflows == 0  # forgotten once finished


def test_learned_estimates_reach_new_plans() -> None:
    planner = Planner()
    for history in HISTORIES:
        planner.learning.apply_all(history)
    plan = planner.plan_task(_request())
    implement = plan.task("implement")
    assert implement.estimated_duration_seconds is not None
    prior = 15 * 60  # the template's guess for implement
    assert implement.estimated_duration_seconds != prior
    assert implement.estimated_cost == pytest.approx((2 * 0.2 + 3 * 0.3) / 5)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_folding_any_redelivered_history_equals_folding_it_once(data: st.DataObject) -> None:
    """Redelivery repeats events (at-least-once) and interleaves workflows; neither changes
    the learned state. Per workflow, order is preserved (one partition)."""
    once = Learning()
    for history in HISTORIES:
        once.apply_all(history)
    streams = [list(h) for h in HISTORIES]
    delivered: list[Event] = []
    positions = [0] * len(streams)
    while any(p < len(s) for p, s in zip(positions, streams, strict=True)):
        live = [i for i, s in enumerate(streams) if positions[i] < len(s)]
        i = data.draw(st.sampled_from(live))
        step = data.draw(st.integers(1, 3))
        chunk = streams[i][positions[i] : positions[i] + step]
        if data.draw(st.booleans()):
            back = data.draw(st.integers(0, positions[i]))
            chunk = streams[i][back : positions[i]] + chunk  # replay from an older offset
        delivered.extend(chunk)
        positions[i] += step
    twice = Learning()
    twice.apply_all(delivered)
    twice.apply_all(delivered)
    assert _state(twice) == _state(once)


def test_events_of_unknown_or_foreign_workflows_teach_nothing() -> None:
    learning = Learning()
    assert not learning.apply_all(HISTORIES[0][1:])  # no WorkflowStarted: not ours to judge
    foreign = PLAN.model_copy(
        update={"tasks": [t.model_copy(update={"inputs": {}}) for t in PLAN.tasks]}
    )
    assert not learning.apply_all(_history(foreign, "wf-x", DURATIONS))
    assert _state(learning) == ({}, {}, 0)
