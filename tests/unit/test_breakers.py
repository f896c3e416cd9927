"""The asyncio circuit breaker: what counts, open fails fast, exactly one half-open trial, recovery
without callers, and state changes as events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pybreaker
import pytest

from mesh.agents import TaskError
from mesh.breakers import AsyncBreaker, ChangeListener
from mesh.errors import BreakerOpen, BrokerUnavailable, GuardedCallFailed
from mesh.events import BreakerStateChanged, Producer
from tests._agents_support import eventually


class Clock:
    """Real time plus an offset the test moves forward (no sleeping through reset timeouts)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def breaker(clock: Clock | None = None, **options: object) -> AsyncBreaker:
    def business(exc: BaseException) -> bool:
        return isinstance(exc, TaskError) and not exc.retriable

    return AsyncBreaker(
        "agent:a",
        fail_max=3,
        reset_timeout=30,
        exclude=[business],
        neutral=(BrokerUnavailable,),
        clock=clock or Clock(),
        **options,  # type: ignore[arg-type]
    )


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise ConnectionError("refused")


async def fail(b: AsyncBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await b.call(boom)


async def test_pybreakers_decorator_on_async_def_counts_nothing_but_ours_does() -> None:
    """The trap this module exists for: pybreaker wraps only the coroutine's creation."""
    plain = pybreaker.CircuitBreaker(fail_max=1)

    @plain
    async def wrapped() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        await wrapped()
    assert plain.current_state == "closed"
    assert plain.fail_counter == 0

    ours = breaker()
    await fail(ours, 3)
    assert ours.state == "open"


async def test_infrastructure_errors_open_it_after_fail_max() -> None:
    b = breaker()
    await fail(b, 2)
    assert (b.state, b.failures) == ("closed", 2)
    await fail(b, 1)
    assert b.state == "open"


async def test_a_success_resets_the_consecutive_count() -> None:
    b = breaker()
    await fail(b, 2)
    assert await b.call(ok) == "ok"
    await fail(b, 2)
    assert (b.state, b.failures) == ("closed", 2)


async def test_a_tasks_own_failure_does_not_count() -> None:
    """A non-retriable TaskError ("tests failed") means the agent worked: it resets, not trips."""

    async def tests_failed() -> None:
        raise TaskError("3 tests failed", kind="tests_failed")

    b = breaker()
    await fail(b, 2)
    for _ in range(5):
        with pytest.raises(TaskError):
            await b.call(tests_failed)
    assert (b.state, b.failures) == ("closed", 0)


async def test_a_retriable_task_error_counts() -> None:
    async def flaky() -> None:
        raise TaskError("upstream busy", retriable=True)

    b = breaker()
    for _ in range(3):
        with pytest.raises(TaskError):
            await b.call(flaky)
    assert b.state == "open"


async def test_neutral_errors_and_cancellation_count_nothing() -> None:
    async def kafka_down() -> None:
        raise BrokerUnavailable("no broker")

    b = breaker()
    await fail(b, 2)
    for _ in range(5):
        with pytest.raises(BrokerUnavailable):
            await b.call(kafka_down)
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    call = asyncio.create_task(b.call(forever))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (b.state, b.failures) == ("closed", 2)


async def test_a_returned_result_can_be_judged_a_failure() -> None:
    """Agents return outcomes rather than raise them; the judge decides what counts."""

    async def status() -> int:
        return 503

    def judge(code: int) -> BaseException | None:
        return GuardedCallFailed(f"HTTP {code}") if code >= 500 else None

    b = breaker()
    for _ in range(3):
        assert await b.judged(judge, status) == 503
    assert b.state == "open"


async def test_open_fails_fast_without_calling() -> None:
    b = breaker()
    await fail(b, 3)
    called = 0

    async def counted() -> None:
        nonlocal called
        called += 1

    with pytest.raises(BreakerOpen) as caught:
        await b.call(counted)
    assert isinstance(caught.value, pybreaker.CircuitBreakerError)
    assert caught.value.retriable
    assert called == 0


async def test_half_open_lets_exactly_one_trial_through_and_success_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    clock.advance(31)
    release = asyncio.Event()
    entered = 0

    async def probe() -> str:
        nonlocal entered
        entered += 1
        await release.wait()
        return "ok"

    trial = asyncio.create_task(b.call(probe))
    await asyncio.sleep(0)  # the trial is admitted and waits inside the call
    assert b.state == "half_open"
    assert b.trial_in_flight
    others = await asyncio.gather(*(b.call(probe) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(o, BreakerOpen) for o in others), others
    assert entered == 1
    release.set()
    assert await trial == "ok"
    assert (b.state, b.failures, b.trial_in_flight) == ("closed", 0, False)
    assert await b.call(ok) == "ok"


async def test_a_failed_trial_reopens_for_another_reset_timeout() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    first_opened = b.opened_at
    clock.advance(31)
    await fail(b, 1)
    assert b.state == "open"
    assert b.opened_at is not None
    assert first_opened is not None
    assert b.opened_at > first_opened
    with pytest.raises(BreakerOpen):
        await b.call(ok)


async def test_a_cancelled_trial_gives_the_slot_back() -> None:
    clock = Clock()
    b = breaker(clock)
    await fail(b, 3)
    clock.advance(31)
    trial = asyncio.create_task(b.call(asyncio.sleep, 3600))
    await asyncio.sleep(0)
    assert b.trial_in_flight
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert b.state == "half_open"
    assert not b.trial_in_flight
    assert await b.call(ok) == "ok"
    assert b.state == "closed"


async def test_a_call_admitted_before_the_trip_cannot_close_it() -> None:
    b = breaker()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ok"

    late = asyncio.create_task(b.call(slow))
    await asyncio.sleep(0)
    await fail(b, 3)
    release.set()
    assert await late == "ok"
    assert b.state == "open"


async def test_success_threshold_needs_that_many_trials_one_at_a_time() -> None:
    clock = Clock()
    b = breaker(clock, success_threshold=2)
    await fail(b, 3)
    clock.advance(31)
    await b.call(ok)
    assert b.state == "half_open"
    assert not b.trial_in_flight
    await b.call(ok)
    assert (b.state,) == ("closed",)


async def test_watch_half_opens_a_breaker_nobody_calls() -> None:
    """A router that avoids open breakers sends no call that could move it; watch() does."""
    b = AsyncBreaker("agent:w", fail_max=1, reset_timeout=0.05)
    watcher = asyncio.create_task(b.watch())
    try:
        await fail(b, 1)
        assert b.state == "open"
        await eventually(lambda: b.state == "half_open", what="the watcher to half-open it")
        assert await b.call(ok) == "ok"
        assert (b.state,) == ("closed",)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_state_changes_become_events() -> None:
    clock = Clock()
    seen: list[BreakerStateChanged] = []
    listener = ChangeListener(Producer(component="agent", instance="a"), seen.append)
    b = breaker(clock, listeners=[listener])
    await fail(b, 3)
    clock.advance(31)
    await b.call(ok)
    assert [(e.old_state, e.new_state) for e in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    opened = seen[0]
    assert opened.name == "agent:a"
    assert opened.key == "agent:a"
    assert opened.failure_count == 3
    assert opened.opened_at is not None
    assert "ConnectionError: refused" in opened.reason
    assert seen[1].opened_at == opened.opened_at
    assert seen[2].opened_at is None
    assert seen[2].failure_count == 0


async def test_restore_resumes_a_published_state_silently() -> None:
    clock = Clock()
    seen: list[BreakerStateChanged] = []
    listener = ChangeListener(Producer(component="agent", instance="a"), seen.append)
    b = breaker(clock, listeners=[listener])
    opened = clock() - timedelta(seconds=10)
    b.restore("open", failures=3, opened_at=opened)
    assert (b.state, b.failures, b.opened_at, seen) == ("open", 3, opened, [])
    with pytest.raises(BreakerOpen):
        await b.call(ok)
    due = b.due_in()
    assert due is not None
    assert 19 < due <= 20
    clock.advance(21)
    await b.call(ok)
    assert b.state == "closed"
    assert [e.new_state for e in seen] == ["half_open", "closed"]


async def test_a_ticket_used_as_a_context_classifies_what_escapes_and_releases_the_rest() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        with pytest.raises(ConnectionError), b.admit():
            raise ConnectionError("refused")
    assert b.state == "open"
    clock.advance(31)
    with b.admit() as trial:
        assert trial.trial
        with pytest.raises(BreakerOpen):
            b.admit()
    # Left without a verdict: the slot is free again and the breaker still half-open.
    assert (b.state, b.trial_in_flight) == ("half_open", False)
    with b.admit() as trial:
        trial.success()
    assert (b.state,) == ("closed",)
