"""An attempt's results on ``tasks.results``: started, progress, then completed or failed.

A result that cannot be sent as it is still gets reported: an output too large for one event is
cut down (command output keeps less of each stream) or becomes an ``output_too_large`` failure,
an output that is not a JSON object a ``bad_output`` failure, a failure message too long for a
small event limit is shortened. Only Kafka trouble (``BrokerError``) escapes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from mesh.agents._command import shrink_output
from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Failure, Outcome, ProgressFn, Success
from mesh.errors import BrokerError, EventError, EventTooLarge
from mesh.events import (
    Producer,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskStarted,
    meta,
)
from mesh.kafka.faults import describe, retriable
from mesh.log import get_logger
from mesh.observe import metrics

_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.:/@+-]")

log = get_logger("mesh.agents.report")


class Reporter:
    """Publishes one agent's task events, each caused by the ``TaskAssigned`` it answers."""

    def __init__(self, outbox: Outbox, me: Producer, agent_id: str) -> None:
        self.outbox = outbox
        self.me = me
        self.agent_id = agent_id

    async def started(self, assigned: TaskAssigned) -> None:
        """Queue the attempt's ``TaskStarted`` without waiting for the broker: the attempt
        runs meanwhile, and its result, produced after it on the same partition, is only
        reported done once acknowledged (the producer keeps a partition's records in order).
        A broker away for a while costs only this notice (the result follows), never the run."""
        try:
            await self.outbox.publish(TaskStarted(**self._answering(assigned)), wait=False)
        except BrokerError as exc:
            if not retriable(exc):
                raise
            log.warning("start not reported", error=describe(exc))

    def progress_for(self, assigned: TaskAssigned) -> ProgressFn:
        """The runner's progress callback: best effort, a progress event never fails a task."""

        async def progress(percent: float | None, message: str, details: dict[str, Any]) -> None:
            try:
                event = TaskProgress(
                    **self._answering(assigned),
                    percent=percent,
                    message=message,
                    details=details,
                )
                await self.outbox.publish(event)
            except (ValidationError, EventError, BrokerError) as exc:
                log.warning("progress not published", error=str(exc).splitlines()[0])

        return progress

    async def report(
        self, assigned: TaskAssigned, outcome: Outcome, duration: float | None
    ) -> None:
        """Publish the attempt's ``TaskCompleted`` or ``TaskFailed``."""
        if isinstance(outcome, Success):
            failure = await self._complete(assigned, outcome.output, duration)
            if failure is None:
                metrics.since(metrics.ASSIGNED_TO_COMPLETED, assigned.occurred_at)
                return
            outcome = failure
        failed = TaskFailed(
            **self._answering(assigned),
            error_kind=_error_kind(outcome.kind),
            message=outcome.message[:100_000] or outcome.kind,
            retriable=outcome.retriable,
            duration_seconds=duration,
        )
        try:
            await self.outbox.publish(failed)
        except EventTooLarge:  # a long message under a small max_event_bytes
            failed = failed.model_copy(update={"message": failed.message[:500]})
            await self.outbox.publish(failed)
        log.info(
            "attempt failed",
            error_kind=failed.error_kind,
            retriable=failed.retriable,
            duration_seconds=duration,
        )

    async def _complete(
        self, assigned: TaskAssigned, output: dict[str, Any], duration: float | None
    ) -> Failure | None:
        """Publish TaskCompleted; or the failure to report when the output cannot be sent."""
        while True:
            try:
                done = TaskCompleted(
                    **self._answering(assigned),
                    output=output,
                    duration_seconds=duration,
                )
                await self.outbox.publish(done)
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(part) for part in first["loc"])
                why = f"the output is not a JSON object ({where}: {first['msg']})"
                return Failure("bad_output", why, retriable=False)
            except EventTooLarge as exc:
                smaller = shrink_output(output)  # command output: keep less of each stream
                if smaller is None:
                    return Failure("output_too_large", str(exc), retriable=False)
                output = smaller
                continue
            log.debug("attempt completed", duration_seconds=duration)
            return None

    def _answering(self, assigned: TaskAssigned) -> dict[str, Any]:
        """The fields every task event of this attempt shares: caused by its assignment."""
        return {
            **meta(self.me, causation=assigned),
            "workflow_id": assigned.workflow_id,
            "task_id": assigned.task_id,
            "attempt": assigned.attempt,
            "agent_id": self.agent_id,
        }


def _error_kind(kind: str) -> str:
    """A runner's failure kind as a valid ``error_kind`` (``task_error`` if nothing is left)."""
    cleaned = _NAME_INVALID.sub("_", kind)[:100]
    return cleaned if cleaned and cleaned[0] not in ".:/@+-" else "task_error"


__all__ = ["Reporter"]
