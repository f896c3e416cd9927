"""Circuit breakers for asyncio: pybreaker's state machine, driven correctly from coroutines.

pybreaker's own async support needs Tornado, and its decorator on an ``async def`` only wraps
the creation of the coroutine: the call "succeeds" before anything ran, so nothing is ever
counted. :class:`AsyncBreaker` keeps pybreaker as the source of truth — its storage holds the
state, the failure and success counters and ``opened_at``; its ``open()``, ``half_open()`` and
``close()`` make the transitions and notify its listeners — and adds what a coroutine needs:

- **admission before the await, verdict after it.** :meth:`AsyncBreaker.admit` decides
  synchronously (no await between looking at the state and taking the slot, so two tasks can
  never both pass a check meant for one) and returns a ticket; the ticket is settled once the
  call's outcome is known;
- **exactly one trial in half-open.** The first caller after the reset timeout becomes the
  trial; while it is in flight every other caller gets :class:`BreakerOpen` (a
  ``pybreaker.CircuitBreakerError``). The trial's success closes the breaker (after
  ``success_threshold`` trials), its failure re-opens it. A trial that is cancelled or ends in a
  *neutral* error (e.g. Kafka trouble, not the guarded service's) gives the slot back without a
  verdict;
- **three verdicts, not two.** An exception is a *failure* (counted) unless the breaker's
  ``exclude`` says it is the caller's business — then it is a success, as in pybreaker: the
  service answered — or it is of a ``neutral`` type or ``CancelledError``: not counted either way.
  A call that *returns* can still be a failure: ``judge(result)`` maps a result to the error to
  count (agents return outcomes, they do not raise them);
- **a breaker nobody calls still recovers.** A router that avoids open breakers sends no call
  that could move one to half-open, so :meth:`AsyncBreaker.watch` does it when the reset timeout
  has passed;
- **state changes as events.** :class:`ChangeListener` turns pybreaker's ``state_change`` into
  :class:`~mesh.events.BreakerStateChanged` for the compacted ``breakers`` topic; a restarted
  process resumes with :meth:`AsyncBreaker.restore`.

A call admitted before the breaker opened may finish after it: its failure is counted, its
success does not close the breaker (only a trial decides in half-open).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar

import pybreaker

from mesh.errors import BreakerOpen
from mesh.events import BreakerState, BreakerStateChanged, Producer, meta

BREAKER_PREFIX = "agent:"
"""Breakers of agents are named ``agent:<agent id>``."""


def breaker_name(agent_id: str) -> str:
    """The name (and Kafka key on ``breakers``) of an agent's breaker."""
    return f"{BREAKER_PREFIX}{agent_id}"


P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], datetime]
Judge = Callable[[T], BaseException | None]
"""Maps a call's result to the failure to count, or None if the call succeeded."""

Verdict = Literal["success", "failure", "neutral"]
"""How a settled call counts: it worked, the guarded service failed, or neither can be said."""

_TO_EVENT: dict[str, BreakerState] = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}
_FROM_EVENT = {event: state for state, event in _TO_EVENT.items()}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Ticket:
    """One admitted call. Settle it exactly once: ``success()``, ``failure(exc)`` or
    ``error(exc)`` (an exception the breaker classifies). Unsettled on exit of ``with``, it is
    released without a verdict."""

    def __init__(self, breaker: AsyncBreaker, *, trial: bool) -> None:
        self.breaker = breaker
        self.trial = trial
        self.settled = False

    def success(self) -> None:
        self._settle("success", None)

    def failure(self, exc: BaseException) -> None:
        self._settle("failure", exc)

    def error(self, exc: BaseException) -> None:
        """Settle with an exception the call raised: failure, success or neutral by its type."""
        self._settle(self.breaker.classify(exc), exc)

    def release(self) -> None:
        """No verdict (cancelled, or the problem was not the guarded service's)."""
        self._settle("neutral", None)

    def _settle(self, verdict: Verdict, exc: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        self.breaker._settle(self, verdict, exc)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is not None:
            self.error(exc)
        else:
            self.release()


class AsyncBreaker:
    """A pybreaker ``CircuitBreaker`` used correctly from asyncio (see the module docstring).

    ``exclude``: exceptions (types or predicates, as in pybreaker) that are the caller's own
    business and count as success. ``neutral``: exception types that count as nothing.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        success_threshold: int = 1,
        exclude: Iterable[type[BaseException] | Callable[[BaseException], bool]] = (),
        neutral: tuple[type[BaseException], ...] = (),
        listeners: Iterable[pybreaker.CircuitBreakerListener] = (),
        clock: Clock = _utcnow,
    ) -> None:
        if fail_max < 1 or success_threshold < 1:
            raise ValueError("fail_max and success_threshold must be at least 1")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        self.name = name
        self.neutral = neutral
        self.clock = clock
        self._trial: Ticket | None = None
        self._changed = asyncio.Event()
        self._exclude = list(exclude)
        self._listeners = [_Wake(self), *listeners]
        self._settings = (fail_max, reset_timeout, success_threshold)
        self._storage = _Storage(pybreaker.STATE_CLOSED, clock)
        self.breaker = self._build(self._storage)

    def _build(self, storage: _Storage) -> pybreaker.CircuitBreaker:
        fail_max, reset_timeout, success_threshold = self._settings
        self._storage = storage
        return pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            success_threshold=success_threshold,
            exclude=self._exclude,
            listeners=self._listeners,
            state_storage=storage,
            name=self.name,
        )

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """closed, open or half_open (the event spelling)."""
        return _TO_EVENT[self.breaker.current_state]

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return int(self.breaker.fail_counter)

    @property
    def opened_at(self) -> datetime | None:
        opened: datetime | None = self._storage.opened_at
        return opened

    @property
    def trial_in_flight(self) -> bool:
        return self._trial is not None

    def due_in(self) -> float | None:
        """Seconds until an open breaker may let a trial through (0 if now); None unless open."""
        if self.state != "open":
            return None
        opened = self.opened_at
        if opened is None:
            return 0.0
        due = opened + timedelta(seconds=self.breaker.reset_timeout)
        return max(0.0, (due - self.clock()).total_seconds())

    def restore(
        self, state: BreakerState, *, failures: int = 0, opened_at: datetime | None = None
    ) -> None:
        """Resume from a published state (a restart), without notifying listeners."""
        storage = _Storage(_FROM_EVENT[state], self.clock)
        for _ in range(failures):
            storage.increment_counter()
        if state != "closed":
            storage.stamp(opened_at or self.clock())
        self._trial = None
        self.breaker = self._build(storage)
        self._changed.set()

    # -- calls -------------------------------------------------------------------------------

    def admit(self) -> Ticket:
        """Take a slot for one call now, or raise :class:`BreakerOpen`."""
        state = self.state
        if state == "open":
            if self.due_in():
                raise BreakerOpen(self.name, "is open")
            self.breaker.half_open()
            state = "half_open"
        if state == "half_open":
            if self._trial is not None:
                raise BreakerOpen(self.name, "is half-open and its trial call is in flight")
            self._trial = Ticket(self, trial=True)
            return self._trial
        return Ticket(self, trial=False)

    async def call(
        self,
        fn: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await fn(*args, **kwargs)`` through the breaker; its exceptions are classified."""
        return await self.judged(None, fn, *args, **kwargs)

    async def judged(
        self,
        judge: Judge[T] | None,
        fn: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """As :meth:`call`, and a result is a failure when ``judge(result)`` returns one."""
        ticket = self.admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            ticket.error(exc)
            raise
        failure = judge(result) if judge is not None else None
        if failure is None:
            ticket.success()
        else:
            ticket.failure(failure)
        return result

    def classify(self, exc: BaseException) -> Verdict:
        """``failure``, ``success`` (an excluded, business error) or ``neutral``."""
        if isinstance(exc, (asyncio.CancelledError, BreakerOpen, *self.neutral)):
            return "neutral"
        return "failure" if self.breaker.is_system_error(exc) else "success"

    def _settle(self, ticket: Ticket, verdict: Verdict, exc: BaseException | None) -> None:
        if ticket.trial and self._trial is ticket:
            self._trial = None
        if verdict == "neutral":
            return
        cb, storage, state = self.breaker, self._storage, self.state
        if verdict == "success":
            if state == "half_open" and ticket.trial:
                storage.reset_counter()
                storage.increment_success_counter()
                if storage.success_counter >= cb.success_threshold:
                    cb.close()
            elif state == "closed":
                storage.reset_counter()
            for listener in self._listeners:
                listener.success(cb)
            return
        assert exc is not None
        storage.increment_counter()
        for listener in self._listeners:
            listener.failure(cb, exc)
        trial_failed = state == "half_open" and ticket.trial
        if trial_failed or (state == "closed" and storage.counter >= cb.fail_max):
            cb.open()

    # -- recovery without callers -----------------------------------------------------------

    async def watch(self) -> None:
        """Run beside the calls: move an open breaker to half-open once its reset timeout has
        passed, so that a breaker every router avoids still gets its trial. Runs until
        cancelled."""
        while True:
            self._changed.clear()
            wait = self.due_in()
            if wait == 0.0:
                self.breaker.half_open()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()


class _Storage(pybreaker.CircuitMemoryStorage):
    """pybreaker's memory storage, with open times from the breaker's clock (pybreaker stamps
    ``datetime.now``; a test that moves the clock must see the same time the breaker used)."""

    def __init__(self, state: str, clock: Clock) -> None:
        super().__init__(state)
        self.clock = clock

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, _: datetime) -> None:
        self._opened_at = self.clock()

    def stamp(self, when: datetime) -> None:
        """Set the open time as published (a restore)."""
        self._opened_at = when


class _Wake(pybreaker.CircuitBreakerListener):
    """Wakes :meth:`AsyncBreaker.watch` on every state change."""

    def __init__(self, breaker: AsyncBreaker) -> None:
        self.breaker = breaker

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.breaker._changed.set()


class ChangeListener(pybreaker.CircuitBreakerListener):
    """Turns each state change into a :class:`BreakerStateChanged` handed to ``sink``.

    ``sink`` must not block (pybreaker calls listeners synchronously, inside the transition):
    e.g. put the event on a queue that a task publishes from.
    """

    def __init__(self, producer: Producer, sink: Callable[[BreakerStateChanged], None]) -> None:
        self.producer = producer
        self.sink = sink
        self.last_error = ""

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        new = _TO_EVENT[new_state.name]
        old = _TO_EVENT[old_state.name] if old_state is not None else new
        storage = _storage_of(cb)
        event = BreakerStateChanged(
            **meta(self.producer, correlation_id=str(cb.name)),
            name=str(cb.name),
            old_state=old,
            new_state=new,
            failure_count=int(storage.counter),
            opened_at=storage.opened_at if new != "closed" else None,
            reason=self.last_error if new == "open" else "",
        )
        self.sink(event)


def _storage_of(cb: Any) -> Any:
    # pybreaker has no public accessor for opened_at; its own states read the storage this way.
    return cb._state_storage


__all__ = [
    "BREAKER_PREFIX",
    "AsyncBreaker",
    "ChangeListener",
    "Judge",
    "Ticket",
    "Verdict",
    "breaker_name",
]
