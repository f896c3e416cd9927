"""The service runner's signal rules, with real signals sent to this process: the first SIGTERM
or SIGINT asks for a graceful stop, a second SIGINT cancels at once, a repeated SIGTERM (a
Ctrl-C to the whole process group followed by a supervisor's SIGTERM) stays graceful."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from mesh.cli._service import _until_signalled

INT, TERM = signal.SIGINT, signal.SIGTERM


def outcome_after(*signals: signal.Signals) -> str:
    """Send ``signals`` while a service runs; "stopped" if it was asked to stop and finished
    its shutdown, "cancelled" if it was cut short.

    The signals are all sent before the service first waits: the loop handles them in order, and
    the service resumes only after the last one was handled (a cancel would be raised there).
    A loop of its own, closed at the end, so that its signal handlers do not outlive the test.
    """
    finished: list[str] = []

    async def service(stop: asyncio.Event) -> None:
        for sig in signals:
            os.kill(os.getpid(), sig)
        await stop.wait()
        finished.append("shutdown")

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_until_signalled(service))
        loop.run_until_complete(asyncio.wait([task], timeout=30))
        assert task.done(), "the service never saw its stop signal"
        if task.cancelled():
            assert finished == []
            return "cancelled"
        task.result()
        assert finished == ["shutdown"]
        return "stopped"
    finally:
        loop.close()


@pytest.mark.parametrize(
    "signals",
    [(TERM,), (INT,), (INT, TERM), (TERM, TERM), (TERM, INT), (TERM, TERM, TERM, INT)],
    ids=lambda sigs: "-".join(s.name for s in sigs),
)
def test_graceful_unless_interrupted_twice(signals: tuple[signal.Signals, ...]) -> None:
    assert outcome_after(*signals) == "stopped"


@pytest.mark.parametrize(
    "signals", [(INT, INT), (TERM, INT, INT)], ids=lambda sigs: "-".join(s.name for s in sigs)
)
def test_a_second_ctrl_c_cancels_at_once(signals: tuple[signal.Signals, ...]) -> None:
    assert outcome_after(*signals) == "cancelled"
