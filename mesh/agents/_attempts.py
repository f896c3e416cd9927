"""The attempts an agent has taken in, each from its assignment to its reported outcome.

An attempt runs in a task of its own, within the agent's concurrency limit and through the
agent's circuit breaker (:mod:`mesh.agents._breaker`): while the breaker is open it fails fast
as a retriable ``breaker_open`` (the Agent Manager has not yet seen the state and the Workflow
Manager's retry goes elsewhere), and in half-open exactly one attempt is the trial.

A ``CancelTask`` or the shutdown cancels only the attempt's inner execution, so the outcome of a
cancelled attempt is still reported; a ``CancelTask`` that comes before its assignment (e.g.
redelivered after a restart) is remembered, and the attempt is then reported cancelled without
running. Only once the outcome is on ``tasks.results`` is the record's offset released.

A report the broker cannot take for a while (it restarts, a leader moves) is sent again after a
capped back-off until it gets through (:mod:`mesh.kafka.faults`); only an error that waiting
cannot heal sets :attr:`Attempts.fatal`, and the agent stops. Every attempt is written to the
agent's :class:`~mesh.agents._journal.AttemptJournal` before it runs, so one redelivered after a
restart (of the agent or of the broker) never runs twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from mesh._aio import cancel_and_wait
from mesh.agents._breaker import counted, refused
from mesh.agents._journal import AttemptJournal, AttemptKey, journal_key
from mesh.agents._outcome import Failure, Outcome, Runner
from mesh.agents._report import Reporter
from mesh.breakers import AsyncBreaker
from mesh.errors import BreakerOpen, BrokerError, PayloadError
from mesh.events import CancelTask, TaskAssigned
from mesh.kafka.faults import Backoff, describe, pause, retriable
from mesh.log import get_logger

Release = Callable[[int], Awaitable[None]]
"""Called with an attempt's record offset once its outcome is reported."""

_REMEMBERED_CANCELS = 1_000

log = get_logger("mesh.agents.attempts")


@dataclass(eq=False)
class Attempt:
    key: AttemptKey
    offset: int
    assigned: TaskAssigned
    task: asyncio.Task[None] | None = None
    execution: asyncio.Task[Outcome] | None = None
    began: float | None = None
    running: bool = False
    reporting: bool = False
    stop_reason: Failure | None = None


class Attempts:
    """Takes assignments in, runs them, reports them and releases their offsets."""

    def __init__(
        self,
        runner: Runner,
        breaker: AsyncBreaker,
        reporter: Reporter,
        *,
        max_concurrency: int,
        release: Release,
        journal: AttemptJournal | None = None,
    ) -> None:
        self.runner = runner
        self.breaker = breaker
        self.reporter = reporter
        self.fatal: BaseException | None = None
        """Why results can no longer be delivered (the agent then stops), or None."""
        self._release = release
        self.journal = journal or AttemptJournal(None)
        self._attempts: dict[AttemptKey, Attempt] = {}
        self._cancelled: OrderedDict[AttemptKey, CancelTask] = OrderedDict()
        self._slots = asyncio.Semaphore(max_concurrency)

    def __len__(self) -> int:
        """Attempts taken in and not yet reported (running or waiting for a slot)."""
        return len(self._attempts)

    @property
    def running(self) -> int:
        return sum(1 for a in self._attempts.values() if a.running)

    def take(self, assigned: TaskAssigned, offset: int) -> bool:
        """Start the attempt ``assigned`` (record ``offset``); False if it is a duplicate."""
        key = (assigned.workflow_id, assigned.task_id, assigned.attempt)
        if key in self._attempts:
            log.info("duplicate assignment ignored", task_id=assigned.task_id, attempt=key[2])
            return False
        seen = self.journal.seen(journal_key(assigned))
        if seen == "reported":
            log.info("assignment already reported; stepped over", task_id=key[1], attempt=key[2])
            return False
        attempt = Attempt(key, offset, assigned)
        self._attempts[key] = attempt
        cancel = self._cancelled.pop(key, None)
        if cancel is not None:
            attempt.stop_reason = _cancelled(cancel)
        elif seen == "started":
            log.warning("attempt started before a restart; not run again", task_id=key[1])
            attempt.stop_reason = Failure(
                "interrupted",
                "the agent restarted while this attempt ran; its outcome is unknown and it is "
                "not run twice",
                retriable=True,
                infrastructure=False,
            )
        attempt.task = asyncio.create_task(self._run(attempt))
        return True

    def cancel(self, cancel: CancelTask) -> None:
        key = (cancel.workflow_id, cancel.task_id, cancel.attempt)
        attempt = self._attempts.get(key)
        if attempt is None:
            # Remembered in case the assignment comes later (e.g. redelivered after a restart).
            self._cancelled[key] = cancel
            while len(self._cancelled) > _REMEMBERED_CANCELS:
                self._cancelled.popitem(last=False)
            log.info("nothing to cancel", task_id=cancel.task_id, attempt=cancel.attempt)
            return
        log.info("cancelling attempt", task_id=cancel.task_id, attempt=cancel.attempt)
        self._stop(attempt, _cancelled(cancel))

    async def drain(self, grace_period: float, reason: Failure) -> None:
        """Stop what has not started, let what runs finish within ``grace_period``, then stop
        the rest with ``reason``; returns once every outcome is reported (or given up)."""
        for attempt in list(self._attempts.values()):
            if not attempt.running:
                self._stop(attempt, reason)
        running = [a.task for a in self._attempts.values() if a.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace_period)
        for attempt in list(self._attempts.values()):
            self._stop(attempt, reason)
        remaining = [a.task for a in self._attempts.values() if a.task is not None]
        if remaining:
            await asyncio.wait(remaining)

    async def abandon(self) -> None:
        """Stop every attempt without reporting it (the agent's clients are gone); their
        offsets stay uncommitted and the journal marks them started."""
        tasks = []
        for attempt in self._attempts.values():
            attempt.reporting = True
            tasks += [attempt.execution, attempt.task]
        self._attempts.clear()
        await cancel_and_wait(*tasks)

    def _stop(self, attempt: Attempt, reason: Failure) -> None:
        if attempt.reporting or attempt.stop_reason is not None:
            return
        attempt.stop_reason = reason
        if attempt.execution is not None:
            attempt.execution.cancel()

    async def _run(self, attempt: Attempt) -> None:
        """Run, report, then release the offset. Never cancelled itself: cancelling targets
        the inner execution, so that the outcome of a cancelled attempt is still reported."""
        assigned = attempt.assigned
        with structlog.contextvars.bound_contextvars(
            workflow_id=assigned.workflow_id,
            correlation_id=assigned.correlation_id,
            task_id=assigned.task_id,
            attempt=assigned.attempt,
        ):
            # Set when a CancelTask came before the assignment: the attempt never runs.
            outcome: Outcome | None = attempt.stop_reason
            if outcome is None:
                attempt.execution = asyncio.create_task(self._execute(attempt))
                await asyncio.wait([attempt.execution])
                outcome = self._outcome_of(attempt, attempt.execution)
                if outcome is None:
                    return
            attempt.reporting = True
            duration = time.monotonic() - attempt.began if attempt.began is not None else None
            if not await self._report(attempt, outcome, duration):
                return
            self.journal.reported(journal_key(attempt.assigned))
            self._attempts.pop(attempt.key, None)
        await self._release(attempt.offset)

    async def _report(self, attempt: Attempt, outcome: Outcome, duration: float | None) -> bool:
        """Report the outcome, again after a back-off while the broker is away; False if it
        cannot be delivered (the offset stays uncommitted, the journal keeps the attempt)."""
        backoff = Backoff()
        while True:
            try:
                await self.reporter.report(attempt.assigned, outcome, duration)
                return True
            except BrokerError as exc:
                if not retriable(exc):
                    self._give_up(exc)
                    return False
                seconds = backoff.next()
                log.warning(
                    "result not delivered; sending it again",
                    error=describe(exc),
                    after_seconds=round(seconds, 2),
                )
            await pause(seconds)

    async def _execute(self, attempt: Attempt) -> Outcome:
        async with self._slots:
            try:
                return await self.breaker.judged(counted, self._start_and_run, attempt)
            except BreakerOpen as exc:
                log.info("attempt refused by the circuit breaker", error=str(exc))
                return refused(str(exc))

    async def _start_and_run(self, attempt: Attempt) -> Outcome:
        """Inside the breaker: admitted, so the attempt really starts."""
        attempt.running = True
        attempt.began = time.monotonic()
        self.journal.started(journal_key(attempt.assigned))
        await self.reporter.started(attempt.assigned)
        log.debug("attempt started")  # per attempt: INFO would cost a quarter of the CPU
        try:
            assigned = await self.reporter.resolved(attempt.assigned)
        except PayloadError as exc:  # missing or corrupt: another attempt would read the same
            log.warning("payload input unusable", error=str(exc))
            return Failure(exc.kind, str(exc), retriable=False)
        except BrokerError as exc:
            return Failure("payload_unavailable", describe(exc), retriable=True)
        output = self.reporter.output_for(attempt.assigned)
        output.start()
        try:
            progress = self.reporter.progress_for(attempt.assigned)
            return await self.runner.run(assigned, progress, output.write)
        finally:
            # Before the outcome is reported: an attempt's chunks come before its result.
            await output.close()

    def _outcome_of(self, attempt: Attempt, execution: asyncio.Task[Outcome]) -> Outcome | None:
        if execution.cancelled():
            return attempt.stop_reason or Failure("cancelled", "the attempt was cancelled", False)
        exc = execution.exception()
        if exc is None:
            return execution.result()
        if isinstance(exc, BrokerError):
            self._give_up(exc)
            return None
        # A runner bug: report it rather than leave the attempt hanging.
        log.error("runner failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        return Failure("agent_error", f"{type(exc).__name__}: {exc}", retriable=True)

    def _give_up(self, exc: BaseException) -> None:
        log.error("cannot deliver results; stopping", error=str(exc))
        if self.fatal is None:
            self.fatal = exc


def _cancelled(cancel: CancelTask) -> Failure:
    why = f": {cancel.reason}" if cancel.reason else ""
    return Failure("cancelled", f"the attempt was cancelled{why}", retriable=False)


__all__ = ["Attempt", "AttemptKey", "Attempts", "Release"]
