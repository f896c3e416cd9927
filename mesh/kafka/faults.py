"""The one policy for broker faults: which errors are worth waiting out, how long to wait, and
the loop that starts a component again (with fresh clients) after one.

A broker restart, a leader election or a coordinator move shows up as a handful of aiokafka
errors (node not ready, leader not available, not leader, coordinator loading or moved, request
timed out, no connection) and, for a producer whose sequence state the broker lost, as
``OutOfOrderSequenceNumber`` or ``UnknownProducerId``. None of them says anything is wrong with
the component: it waits (capped exponential back-off) and re-initialises. Only a real fence
(``ProducerFenced``/``InvalidProducerEpoch``: another replica took the transactional id), a
refused login or ACL, a configuration error or a plain bug stops it, with one line naming it.

Used by every long-running command (:func:`ride_out`, from ``mesh.cli._service``), by agents
while they report results, and by the Workflow Manager's and Agent Manager's loop (through the
same classification).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka.errors import (
    ConcurrentTransactions,
    InvalidProducerEpoch,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from mesh.errors import AuthError, ConfigError, MeshError
from mesh.log import get_logger

FENCED = (ProducerFenced, InvalidProducerEpoch)
"""Another replica took the transactional id: the partition is its now, this replica stops."""

LOST_PRODUCER_STATE = (OutOfOrderSequenceNumber, UnknownProducerId)
"""The broker no longer knows the producer's sequence (it restarted): re-initialise it."""

_ALSO_RETRIABLE = (
    *LOST_PRODUCER_STATE,
    ConcurrentTransactions,
    KafkaConnectionError,
    KafkaTimeoutError,
)
"""Retriable although aiokafka does not flag them so."""

FIRST_PAUSE = 0.5
MAX_PAUSE = 10.0
CALM_SECONDS = 60.0
"""A component that ran this long since its last fault starts its back-off afresh."""

log = get_logger("mesh.kafka.faults")

T = TypeVar("T")

_served = False


def mark_serving() -> None:
    """This process's component is up (it says "... ready"): from now on a broker fault is
    ridden out. Before, it is a start-up failure, reported in one line (a wrong address, a
    broker that is not there at all)."""
    global _served  # one fact about the process, set once by whichever component it runs
    _served = True


def has_served() -> bool:
    return _served


def retriable(error: BaseException) -> bool:
    """True if ``error`` (or what caused it) is a broker fault worth waiting out."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (*FENCED, AuthError, ConfigError, ssl.SSLError)):
            return False
        if isinstance(current, _ALSO_RETRIABLE):
            return True
        if type(current) is KafkaError:
            # aiokafka's bare KafkaError ("Unexpected error during batch delivery") wraps a
            # connection lost under a batch in flight: nothing more specific went wrong.
            return True
        if isinstance(current, KafkaError):
            return bool(getattr(current, "retriable", False))
        if isinstance(current, MeshError) and current.retriable:
            return True
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        current = current.__cause__
    return False


@dataclass
class Backoff:
    """Capped exponential pauses (with jitter, so replicas do not retry in step)."""

    first: float = FIRST_PAUSE
    cap: float = MAX_PAUSE
    calm: float = CALM_SECONDS
    failures: int = 0
    _last: float = field(default=0.0, repr=False)

    def next(self) -> float:
        """The pause before the next try; the back-off restarts after a calm period."""
        now = time.monotonic()
        if self.failures and now - self._last > self.calm:
            self.failures = 0
        self._last = now
        seconds = min(self.cap, self.first * 2.0**self.failures)
        self.failures += 1
        return seconds * random.uniform(0.8, 1.0)  # noqa: S311  # jitter, not a secret

    def reset(self) -> None:
        self.failures = 0


async def pause(seconds: float, stop: asyncio.Event | None = None) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def describe(error: BaseException) -> str:
    """``Type: message`` of the error and, if different, of its cause (one line)."""
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    cause = error.__cause__
    if cause is not None and type(cause).__name__ not in text:
        text += f" ({type(cause).__name__})"
    return text


def ack_seconds(request_timeout_ms: int) -> float:
    """How long to wait for the broker to acknowledge what was sent: twice a request's
    timeout, so aiokafka's own retries within it run their course first."""
    return 2 * request_timeout_ms / 1000


async def acknowledged(work: Awaitable[T], seconds: float) -> T:
    """``work`` (a send, a flush, a transaction), or ``KafkaTimeoutError`` after ``seconds``.

    aiokafka may wait forever for the acknowledgement of a record that was in flight when the
    broker went away (aio-libs/aiokafka#1101): without a bound an agent's result, or a whole
    partition's round, would hang after the broker is back.
    """
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as exc:
        raise KafkaTimeoutError(f"not acknowledged within {seconds:g} s") from exc


async def ride_out(
    main: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    component: str,
    backoff: Backoff | None = None,
) -> None:
    """Run ``main(stop)``; after a retriable broker fault wait (capped back-off) and run it
    again, which re-creates its clients and rebuilds its state from Kafka. Anything else, a
    fault before the component was ever ready (:func:`mark_serving`), or one after ``stop``
    was set, is raised."""
    backoff = backoff or Backoff()
    while True:
        try:
            await main(stop)
            return
        except Exception as exc:
            if stop.is_set() or not has_served() or not retriable(exc):
                raise
            seconds = backoff.next()
            log.warning(
                "broker fault; starting again with fresh clients",
                component=component,
                error=describe(exc),
                after_seconds=round(seconds, 2),
            )
        await pause(seconds, stop)
        if stop.is_set():
            return


__all__ = [
    "FENCED",
    "LOST_PRODUCER_STATE",
    "Backoff",
    "ack_seconds",
    "acknowledged",
    "describe",
    "has_served",
    "mark_serving",
    "pause",
    "retriable",
    "ride_out",
]
