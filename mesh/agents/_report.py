"""An attempt's results on ``tasks.results``: started, progress, then completed or failed;
and what it prints, as ``TaskOutput`` chunks on ``tasks.output`` (:mod:`mesh.agents._stream`).

An output larger than ``payload_threshold_bytes`` (as JSON) goes by reference: stored on
``payloads`` first, acknowledged, and the event carries ``{"$payload": PayloadRef}`` in its place,
so the reference never points at a payload the broker did not take. Inputs that are references
(an upstream output stored so) are fetched and checked by :meth:`Reporter.resolved` before the
attempt runs. A result that cannot be sent as it is still gets reported: an output too large for
one event is cut down (command output keeps less of each stream) or becomes an
``output_too_large`` failure, an output that is not a JSON object a ``bad_output`` failure, a
failure message too long for a small event limit is shortened. Only Kafka trouble
(``BrokerError``) escapes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from mesh.agents._command import shrink_output
from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Failure, Outcome, ProgressFn, Success
from mesh.agents._stream import AttemptOutput
from mesh.errors import BrokerError, EventError, EventTooLarge
from mesh.events import (
    OutputStream,
    Producer,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskOutput,
    TaskProgress,
    TaskStarted,
    meta,
    payload_refs_in,
)
from mesh.kafka.faults import describe, retriable
from mesh.kafka.payloads import PayloadStore, dumps
from mesh.log import get_logger
from mesh.observe import metrics

_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.:/@+-]")

log = get_logger("mesh.agents.report")


class Reporter:
    """Publishes one agent's task events, each caused by the ``TaskAssigned`` it answers."""

    def __init__(
        self,
        outbox: Outbox,
        me: Producer,
        agent_id: str,
        payloads: PayloadStore | None = None,
    ) -> None:
        self.outbox = outbox
        self.me = me
        self.agent_id = agent_id
        self.payloads = payloads
        """Where outputs over the threshold go and referenced inputs come from; None: inline."""

    async def resolved(self, assigned: TaskAssigned) -> TaskAssigned:
        """``assigned`` with every payload reference in its task's inputs replaced by the value
        it stands for. Raises ``PayloadMissing`` / ``PayloadCorrupt`` (the attempt fails,
        not retriable) and ``BrokerError``."""
        task = assigned.task
        if self.payloads is None or task is None or not payload_refs_in(task.inputs):
            return assigned
        inputs = await self.payloads.resolve(dict(task.inputs))
        log.debug("payload inputs resolved", refs=len(payload_refs_in(task.inputs)))
        return assigned.model_copy(update={"task": task.model_copy(update={"inputs": inputs})})

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

    def output_for(self, assigned: TaskAssigned) -> AttemptOutput:
        """The attempt's output stream (started by the caller, closed before the report)."""

        async def publish(stream: OutputStream, chunk: int, text: str, truncated: bool) -> None:
            event = TaskOutput(
                **self._answering(assigned),
                stream=stream,
                chunk=chunk,
                text=text,
                truncated=truncated,
            )
            await self.outbox.publish(event)

        settings = self.outbox.settings
        return AttemptOutput(
            publish, interval=settings.output_interval_seconds, cap=settings.output_cap_bytes
        )

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
            output=outcome.output,
        )
        while True:
            try:
                await self.outbox.publish(failed)
                break
            except EventTooLarge:  # a long output or message under a small max_event_bytes
                smaller = shrink_output(failed.output)
                if smaller is not None:  # keep less of each stream first
                    failed = failed.model_copy(update={"output": smaller})
                elif failed.output or len(failed.message) > 500:
                    failed = failed.model_copy(
                        update={"output": {}, "message": failed.message[:500]}
                    )
                else:
                    raise
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
        output = await self._by_reference(assigned, output)
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

    async def _by_reference(self, assigned: TaskAssigned, output: dict[str, Any]) -> dict[str, Any]:
        """``output``, or a reference to it once stored when it is over the threshold."""
        if self.payloads is None:
            return output
        try:
            data = dumps(output)
        except (TypeError, ValueError):
            return output  # not JSON: reported as bad_output when the event is made
        if len(data) <= self.payloads.threshold:
            return output
        ref = await self.outbox.put_payload(
            self.payloads, data, correlation_id=assigned.correlation_id
        )
        log.info("output stored by reference", bytes=ref.size, chunks=ref.chunks)
        return ref.as_value()

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
