"""The broker-fault policy (mesh.kafka.faults) and the agent's attempt journal, in memory.

Which errors are waited out and which stop a component; the capped back-off; a service that
meets a broker fault once it is up runs again, one that meets it before is a start-up failure;
an attempt written to the journal as started is never run again by the same agent id.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    InvalidProducerEpoch,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotCoordinatorError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    UnknownProducerId,
    UnknownTopicOrPartitionError,
)

from mesh.agents._attempts import Attempts
from mesh.agents._journal import AttemptJournal, journal_key, journal_path
from mesh.agents._outcome import Failure, Outcome, OutputFn, ProgressFn, Success
from mesh.agents._stream import AttemptOutput
from mesh.breakers import AsyncBreaker
from mesh.errors import AuthError, BrokerError, BrokerUnavailable, ConfigError
from mesh.events import OutputStream, TaskAssigned
from mesh.kafka import faults
from mesh.kafka.faults import Backoff, retriable, ride_out
from tests._agents_support import spec, task_assigned

RETRIABLE = [
    NodeNotReadyError(),
    LeaderNotAvailableError(),
    NotLeaderForPartitionError(),
    CoordinatorLoadInProgressError(),
    NotCoordinatorError(),
    RequestTimedOutError(),
    KafkaTimeoutError(),
    KafkaConnectionError("connection refused"),
    OutOfOrderSequenceNumber(),
    UnknownProducerId(),
    ConnectionResetError(),
    KafkaError("Unexpected error during batch delivery"),
    # A broker just restarted may answer so until it has loaded its partitions; a topic missing
    # at start is still a start-up failure (ride_out only retries a component that was up).
    UnknownTopicOrPartitionError(),
]
STOPS = [
    ProducerFenced(),
    InvalidProducerEpoch(),
    SaslAuthenticationFailed(),
    ValueError("a bug"),
]


def _wrapped(cause: BaseException) -> BrokerError:
    """What ``kafka_errors`` makes of a library error: a BrokerError raised from it."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise BrokerError(f"could not produce: {exc}") from exc
    except BrokerError as wrapped:
        return wrapped


@pytest.mark.parametrize("error", RETRIABLE, ids=lambda e: type(e).__name__)
def test_broker_faults_are_retriable_also_when_wrapped(error: BaseException) -> None:
    assert retriable(error)
    assert retriable(_wrapped(error))


@pytest.mark.parametrize("error", STOPS, ids=lambda e: type(e).__name__)
def test_fences_logins_missing_topics_and_bugs_are_not(error: BaseException) -> None:
    assert not retriable(error)
    assert not retriable(_wrapped(error))


def test_mesh_errors_say_for_themselves() -> None:
    assert retriable(BrokerUnavailable("no Kafka broker answered"))
    assert not retriable(AuthError("login refused"))
    assert not retriable(ConfigError("topics missing"))


def test_backoff_doubles_up_to_its_cap_and_starts_over() -> None:
    backoff = Backoff(first=1.0, cap=8.0)
    pauses = [backoff.next() for _ in range(6)]
    for got, wanted in zip(pauses, [1, 2, 4, 8, 8, 8], strict=True):
        assert 0.8 * wanted <= got <= wanted  # jittered down by at most a fifth
    backoff.reset()
    assert backoff.next() <= 1.0


async def _service(failures: list[BaseException], runs: list[int]) -> Any:
    async def main(stop: asyncio.Event) -> None:
        runs.append(len(runs) + 1)
        faults.mark_serving()
        if failures:
            raise failures.pop(0)

    return main


async def test_a_served_component_runs_again_after_each_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faults, "_served", False)
    runs: list[int] = []
    errors: list[BaseException] = [_wrapped(LeaderNotAvailableError()), OutOfOrderSequenceNumber()]
    main = await _service(errors, runs)
    await ride_out(main, asyncio.Event(), component="test", backoff=Backoff(first=0.001))
    assert runs == [1, 2, 3]


async def test_a_fence_stops_the_component(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "_served", False)
    runs: list[int] = []
    main = await _service([_wrapped(ProducerFenced())], runs)
    with pytest.raises(BrokerError):
        await ride_out(main, asyncio.Event(), component="test", backoff=Backoff(first=0.001))
    assert runs == [1]


async def test_a_fault_before_the_component_was_ever_up_is_a_startup_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faults, "_served", False)
    calls = 0

    async def main(stop: asyncio.Event) -> None:
        nonlocal calls
        calls += 1
        raise BrokerUnavailable("no Kafka broker answered at 127.0.0.1:1")

    with pytest.raises(BrokerUnavailable):
        await ride_out(main, asyncio.Event(), component="test")
    assert calls == 1


def test_the_journal_survives_a_restart_and_is_compacted(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "shell/1")
    journal = AttemptJournal(path, keep=3)
    journal.open()
    for n in range(1, 5):
        journal.started(("wf", "A", n, "ready-1"))
    journal.reported(("wf", "A", 4, "ready-1"))
    journal.close()
    with path.open("a") as torn:
        torn.write("started\twf\tB")  # a line cut short by a kill
    again = AttemptJournal(path, keep=3)
    again.open()
    assert again.seen(("wf", "A", 1, "ready-1")) is None  # compacted away (keep=3)
    assert again.seen(("wf", "A", 3, "ready-1")) == "started"
    assert again.seen(("wf", "A", 4, "ready-1")) == "reported"
    assert again.seen(("wf", "A", 4, "ready-2")) is None  # same ids, another assignment
    assert len(path.read_text().splitlines()) == 3
    again.close()


class _Runner:
    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []
        self.capabilities: list[Any] = []

    async def run(self, assigned: TaskAssigned, progress: ProgressFn, output: OutputFn) -> Outcome:
        self.ran.append((assigned.task_id, assigned.attempt))
        return Success({})


class _Reporter:
    """Records outcomes; the first ``refuse`` reports fail as a broker that is away."""

    def __init__(self, refuse: int = 0) -> None:
        self.outcomes: list[tuple[str, Outcome]] = []
        self.refuse = refuse

    async def started(self, assigned: TaskAssigned) -> None:
        return None

    async def resolved(self, assigned: TaskAssigned) -> TaskAssigned:
        return assigned  # no payload references in these tests' inputs

    def progress_for(self, assigned: TaskAssigned) -> ProgressFn:
        async def progress(percent: float | None, message: str, details: dict[str, Any]) -> None:
            return None

        return progress

    def output_for(self, assigned: TaskAssigned) -> AttemptOutput:
        async def publish(stream: OutputStream, chunk: int, text: str, truncated: bool) -> None:
            return None

        return AttemptOutput(publish, interval=1.0, cap=1_024)

    async def report(self, assigned: TaskAssigned, outcome: Outcome, duration: Any) -> None:
        if self.refuse:
            self.refuse -= 1
            raise _wrapped(LeaderNotAvailableError())
        self.outcomes.append((assigned.task_id, outcome))


async def _run_through(
    journal: AttemptJournal, reporter: _Reporter, runner: _Runner, assigned: TaskAssigned
) -> None:
    released: list[int] = []
    done = asyncio.Event()

    async def release(offset: int) -> None:
        released.append(offset)
        done.set()

    attempts = Attempts(
        runner,  # type: ignore[arg-type]  # an in-memory double of the runner
        AsyncBreaker("test"),
        reporter,  # type: ignore[arg-type]  # an in-memory double of the reporter
        max_concurrency=1,
        release=release,
        journal=journal,
    )
    attempts.take(assigned, offset=7)
    async with asyncio.timeout(30):
        await done.wait()
    assert released == [7]
    assert attempts.fatal is None


async def test_an_attempt_started_before_a_restart_is_reported_not_run(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "a-1")
    assigned = task_assigned("a-1", spec("A"))
    earlier = AttemptJournal(path)
    earlier.open()
    earlier.started(journal_key(assigned))  # the previous process ran it, then died
    earlier.close()
    journal = AttemptJournal(path)
    journal.open()
    runner, reporter = _Runner(), _Reporter()
    try:
        await _run_through(journal, reporter, runner, assigned)
    finally:
        journal.close()
    assert runner.ran == []
    [(task, outcome)] = reporter.outcomes
    assert isinstance(outcome, Failure)
    assert (task, outcome.kind, outcome.retriable) == ("A", "interrupted", True)
    assert journal.seen(journal_key(assigned)) == "reported"


async def test_a_report_refused_while_the_broker_is_away_is_sent_again(tmp_path: Path) -> None:
    journal = AttemptJournal(journal_path(tmp_path, "a-1"))
    journal.open()
    runner, reporter = _Runner(), _Reporter(refuse=2)
    assigned = task_assigned("a-1", spec("A"))
    try:
        await _run_through(journal, reporter, runner, assigned)
    finally:
        journal.close()
    assert runner.ran == [("A", 1)]
    assert [(task, type(outcome).__name__) for task, outcome in reporter.outcomes] == [
        ("A", "Success")
    ]
    assert journal.seen(journal_key(assigned)) == "reported"
