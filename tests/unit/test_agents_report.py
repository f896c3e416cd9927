"""What the reporter publishes about an attempt's output: chunks as TaskOutput, and a failure's
output in TaskFailed, cut down rather than lost when the event would be too large."""

from __future__ import annotations

from typing import Any

from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Failure
from mesh.agents._report import Reporter
from mesh.events import Event, Mapper, Producer, TaskFailed, TaskOutput
from mesh.settings import Settings
from tests._agents_support import spec, task_assigned

ME = Producer(component="agent", instance="a1")


class RecordingOutbox(Outbox):
    """An outbox whose ``publish`` encodes (so the size limit applies) and keeps the event."""

    def __init__(self, max_event_bytes: int) -> None:
        super().__init__(
            Settings(output_interval_seconds=0.01),
            None,  # never sends: publish is overridden
            Mapper(max_event_bytes=max_event_bytes),
        )
        self.published: list[Event] = []

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        self.mapper.encode(event)  # EventTooLarge, as the real outbox raises it
        self.published.append(event)


def failure(stdout: str, stderr: str = "") -> Failure:
    output: dict[str, Any] = {"exit_code": 1, "stdout": stdout, "stderr": stderr}
    return Failure("exit_code", "the command exited 1", True, output={**output, "truncated": False})


async def test_a_failures_output_travels_in_task_failed() -> None:
    outbox = RecordingOutbox(1_000_000)
    assigned = task_assigned("a1", spec("t", "shell"))
    await Reporter(outbox, ME, "a1").report(assigned, failure("out", "err"), 1.0)
    [failed] = outbox.published
    assert isinstance(failed, TaskFailed)
    assert failed.output == {"exit_code": 1, "stdout": "out", "stderr": "err", "truncated": False}


async def test_a_failure_too_large_for_one_event_keeps_less_of_its_streams() -> None:
    outbox = RecordingOutbox(4_000)
    assigned = task_assigned("a1", spec("t", "shell"))
    await Reporter(outbox, ME, "a1").report(assigned, failure("x" * 20_000, "why"), 1.0)
    [failed] = outbox.published
    assert isinstance(failed, TaskFailed)
    stdout = failed.output["stdout"]
    assert isinstance(stdout, str)
    assert 0 < len(stdout) < 4_000
    assert failed.output["truncated"] is True
    assert failed.message == "the command exited 1"


async def test_chunks_are_task_output_events_of_the_attempt() -> None:
    outbox = RecordingOutbox(1_000_000)
    assigned = task_assigned("a1", spec("t", "shell"))
    output = Reporter(outbox, ME, "a1").output_for(assigned)
    output.start()
    output.write("stdout", "hello\n")
    await output.close()
    [chunk] = outbox.published
    assert isinstance(chunk, TaskOutput)
    assert (chunk.workflow_id, chunk.task_id, chunk.attempt, chunk.agent_id) == (
        "wf-1",
        "t",
        1,
        "a1",
    )
    assert (chunk.stream, chunk.chunk, chunk.text, chunk.truncated) == (
        "stdout",
        0,
        "hello\n",
        False,
    )
    assert chunk.causation_id == assigned.event_id
