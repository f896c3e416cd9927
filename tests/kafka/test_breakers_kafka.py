"""Circuit breakers end to end on real Apache Kafka: a real HTTP agent process whose server (a
real HTTP server on loopback) starts failing; Agent Manager replicas in this process.

The breaker opens after the configured failures and says so on ``breakers``; a second replica,
started afterwards, rebuilds the open state from the topic and places every task on the other
capable agent (recording ``TaskWaiting(breaker_open, placed_elsewhere)``); after the reset
timeout exactly one probe reaches the server — a racing assignment is refused by the agent's own
breaker — and its success closes the breaker, after which the agent gets work again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from mesh.agentmanager.runtime import AgentManager
from mesh.events import (
    AgentRegistered,
    BreakerStateChanged,
    CapabilityRequirement,
    Event,
    RetryPolicy,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskSpec,
    TaskWaiting,
)
from mesh.settings import Settings
from tests._agents_support import (
    WAIT,
    agent_process,
    create_topics,
    eventually,
    producer,
    publish,
    reader,
    spec,
    task_assigned,
    task_ready,
)
from tests._http_support import Answer, http_stub, json_answer
from tests._wm_support import ended, start_manager_process, unique_group
from tests._wm_support import plan as wm_plan

E = TypeVar("E", bound=Event)

FAIL_MAX = 3
RESET_SECONDS = 15.0
"""Long enough for the second replica to start and place its tasks while the breaker is open
(checked below: the test fails rather than passes vacuously if the breaker half-opened early)."""

HTTP, BACKUP = "am-http", "zz-backup"
"""Both idle with equal capacity, the least-loaded strategy prefers am-http (ties by id)."""


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    await create_topics(kafka_settings)
    return kafka_settings


class Replica:
    """An Agent Manager replica running in this process, stopped and awaited on ``stop()``."""

    def __init__(self, settings: Settings, instance: str) -> None:
        self.am = AgentManager(settings, instance=instance)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.am.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        async with asyncio.timeout(WAIT):
            await self._task


@contextlib.asynccontextmanager
async def replicas(settings: Settings) -> AsyncIterator[Callable[[str], Replica]]:
    """Start replicas with the yielded function; every one is stopped on exit."""
    started: list[Replica] = []

    def start(instance: str) -> Replica:
        started.append(Replica(settings, instance))
        return started[-1]

    try:
        yield start
    finally:
        for replica in started:
            await replica.stop()


def breaker_states(events: list[Event]) -> list[BreakerStateChanged]:
    return [e for e in events if isinstance(e, BreakerStateChanged) and e.name == f"agent:{HTTP}"]


def reached(state: str, after: int = 0) -> Callable[[list[Event]], bool]:
    return lambda evs: any(e.new_state == state for e in breaker_states(evs)[after:])


def finished(task_ids: set[str]) -> Callable[[list[Event]], bool]:
    def done(evs: list[Event]) -> bool:
        ended = {e.task_id for e in evs if isinstance(e, TaskCompleted | TaskFailed)}
        return task_ids <= ended

    return done


def of_tasks(events: list[Event], kind: type[E], task_ids: set[str]) -> list[E]:
    return [e for e in events if isinstance(e, kind) and getattr(e, "task_id", "") in task_ids]


async def test_an_http_agents_breaker_opens_routes_elsewhere_probes_once_and_closes(
    settings: Settings, tmp_path: Path
) -> None:
    beat = ["--heartbeat-interval", "0.5", "--max-concurrency", "4", "--capability", "h"]
    http_args = [
        "--kind",
        "http",
        *beat,
        "--timeout",
        "10",
        "--breaker-fail-max",
        str(FAIL_MAX),
        "--breaker-reset-timeout",
        str(RESET_SECONDS),
    ]
    backup_args = ["--kind", "command", "--allow-task-command", *beat]
    figures: dict[str, float] = {}
    with (
        http_stub(json_answer(200, {"answer": 42})) as server,
        agent_process(settings, HTTP, [*http_args, "--url", server.url], tmp_path) as http,
        agent_process(settings, BACKUP, backup_args, tmp_path) as backup,
    ):
        async with (
            producer(settings) as out,
            reader(settings, "tasks.results") as results,
            reader(settings, "breakers") as breakers,
            reader(settings, "agents") as registry,
        ):
            await registry.until(
                lambda evs: (
                    {HTTP, BACKUP} <= {e.agent_id for e in evs if isinstance(e, AgentRegistered)}
                ),
                what="both agents to register",
            )

            async def one_task(am: AgentManager, task_id: str) -> list[Event]:
                """One task while both agents are idle (so am-http is preferred)."""
                await eventually(
                    lambda: am.registry.outstanding(HTTP) == 0, what="am-http to be idle"
                )
                task = task_ready(spec(task_id, "h", command=["true"]), f"wf-{task_id}")
                await publish(out, settings, "tasks.ready", task)
                return await results.until(finished({task_id}), what=f"{task_id} to end")

            async with replicas(settings) as start:
                a = start("am-a")
                am_a = a.am
                # Healthy: the task goes to the HTTP agent and its JSON is the output.
                events = await one_task(am_a, "ok0")
                [done] = of_tasks(events, TaskCompleted, {"ok0"})
                assert isinstance(done, TaskCompleted)
                assert (done.agent_id, done.output) == (HTTP, {"answer": 42})

                # The server fails: FAIL_MAX retriable 503s, then the breaker opens.
                server.set(json_answer(503, {"error": "database down"}))

                def a_routes_around() -> datetime | None:
                    return datetime.now(UTC) if am_a.registry.breaker(HTTP) == "open" else None

                a_saw_open = asyncio.create_task(
                    eventually(a_routes_around, what="replica A to see it open", every=0.005)
                )
                for i in range(FAIL_MAX):
                    events = await one_task(am_a, f"f{i}")
                    [failed] = of_tasks(events, TaskFailed, {f"f{i}"})
                    assert isinstance(failed, TaskFailed)
                    assert (failed.agent_id, failed.error_kind) == (HTTP, "http_503")
                    assert failed.retriable
                seen = await breakers.until(reached("open"), what="the breaker to open")
                [opened] = breaker_states(seen)
                assert (opened.old_state, opened.new_state) == ("closed", "open")
                assert opened.failure_count == FAIL_MAX
                assert "database down" in opened.reason
                assert server.count() == 1 + FAIL_MAX
                saw = await a_saw_open
                # Same host, so the agent's clock is ours: how long the open state took from the
                # agent's transition to replica A's routing view (the bound is one heartbeat).
                figures["replica A routes around it after (s)"] = (
                    saw - opened.occurred_at
                ).total_seconds()

                # A second replica, started now, rebuilds the open state from the topic; then
                # replica A stops, so every task below is placed by replica B.
                started = time.monotonic()
                b = start("am-b")
                am_b = b.am
                await eventually(
                    lambda: am_b.registry.breaker(HTTP) == "open",
                    what="replica B to rebuild the open breaker",
                )
                figures["replica B rebuilt it after starting (s)"] = time.monotonic() - started
                await a.stop()
                elsewhere = {f"g{i}" for i in range(6)}
                for task_id in sorted(elsewhere):
                    ready = task_ready(spec(task_id, "h", command=["true"]), f"wf-{task_id}")
                    await publish(out, settings, "tasks.ready", ready)
                events = await results.until(finished(elsewhere), what="tasks placed elsewhere")
                assigned = of_tasks(events, TaskAssigned, elsewhere)
                assert {(e.agent_id, e.producer.instance) for e in assigned} == {(BACKUP, "am-b")}
                assert len(of_tasks(events, TaskCompleted, elsewhere)) == len(elsewhere)
                waiting = of_tasks(events, TaskWaiting, elsewhere)
                assert {e.task_id for e in waiting} == elsewhere
                for note in waiting:
                    assert isinstance(note, TaskWaiting)
                    assert (note.reason_kind, note.placed_elsewhere) == ("breaker_open", True)
                    assert HTTP in note.agent_ids
                assert server.count() == 1 + FAIL_MAX
                seen = breakers.events()
                assert not reached("half_open")(seen), (
                    "the breaker half-opened before the open state could be checked; "
                    "raise RESET_SECONDS"
                )

                # After the reset timeout: one probe, held at the server until released.
                server.set(Answer(200, b'{"probe": "ok"}', delay=WAIT))
                server.hold()
                count = len(breaker_states(seen))
                await breakers.until(reached("half_open", count), what="half-open")
                await eventually(
                    lambda: am_b.registry.breaker(HTTP) == "half_open",
                    what="replica B to see half-open",
                )
                before = server.count()
                probes = {f"p{i}" for i in range(4)}
                for task_id in sorted(probes):
                    ready = task_ready(spec(task_id, "h", command=["true"]), f"wf-{task_id}")
                    await publish(out, settings, "tasks.ready", ready)
                events = await results.until(
                    lambda evs: len(of_tasks(evs, TaskAssigned, probes)) == len(probes),
                    what="the four tasks to be assigned",
                )
                to_http = [
                    e
                    for e in of_tasks(events, TaskAssigned, probes)
                    if isinstance(e, TaskAssigned) and e.agent_id == HTTP
                ]
                assert len(to_http) == 1, "exactly one probe is sent to a half-open breaker"
                [probe] = to_http
                await eventually(lambda: server.count() == before + 1, what="the probe")

                # An assignment racing the probe (a replica that had not seen it) is refused
                # by the agent's own breaker: one trial at a time.
                racer = task_assigned(HTTP, spec("race", "h"), workflow_id="wf-race")
                await publish(out, settings, "tasks.assigned", racer)
                events = await results.until(finished({"race"}), what="the racing attempt")
                [refused] = of_tasks(events, TaskFailed, {"race"})
                assert isinstance(refused, TaskFailed)
                assert (refused.error_kind, refused.retriable) == ("breaker_open", True)
                assert server.count() == before + 1

                server.release()
                events = await results.until(finished(probes), what="the probe tasks")
                seen = await breakers.until(reached("closed", count), what="it to close")
                assert server.count() == before + 1, "exactly one probe went through"
                ends = {
                    e.task_id: e.agent_id
                    for e in of_tasks(events, TaskCompleted, probes)
                    if isinstance(e, TaskCompleted)
                }
                assert set(ends) == probes
                assert ends[probe.task_id] == HTTP
                assert [e.new_state for e in breaker_states(seen)] == [
                    "open",
                    "half_open",
                    "closed",
                ]

                # Closed again: the HTTP agent gets work again.
                server.set(json_answer(200, {"answer": 43}))
                await eventually(
                    lambda: am_b.registry.breaker(HTTP) == "closed",
                    what="replica B to see it closed",
                )
                events = await one_task(am_b, "after")
                [done] = of_tasks(events, TaskCompleted, {"after"})
                assert isinstance(done, TaskCompleted)
                assert done.agent_id == HTTP

            # A graceful stop with the breaker closed removes its record (nothing to resume).
            assert http.stop() == 0, http.output()
            key = f"agent:{HTTP}".encode()
            await breakers.until(
                lambda _: any(r.key == key and r.value is None for r in breakers.raw),
                what="the closed breaker's tombstone",
            )
        assert backup.stop() == 0, backup.output()
    print(f"\nbreaker figures: {figures}")


async def test_the_workflow_history_records_that_the_agents_breaker_was_open(
    settings: Settings, tmp_path: Path
) -> None:
    """Workflow Manager (a real process), Agent Manager, a failing HTTP agent whose breaker
    opens on the first failure, and a backup: attempt 1 fails on the HTTP agent, attempt 2 is
    placed on the backup, and the history says why (TaskWaiting breaker_open, placed elsewhere)."""
    beat = ["--heartbeat-interval", "0.5", "--max-concurrency", "4", "--capability", "h"]
    http_args = ["--kind", "http", *beat, "--breaker-fail-max", "1"]
    http_args += ["--breaker-reset-timeout", "600"]  # stays open for the whole test
    backup_args = ["--kind", "command", "--allow-task-command", *beat]
    task = TaskSpec(
        task_id="review",
        name="review",
        capabilities=[CapabilityRequirement(name="h")],
        command=["true"],
        retry=RetryPolicy(max_attempts=3, jitter=0.0),
    )
    created = wm_plan(task)
    workflow_id = created.workflow_id
    wm = start_manager_process(settings, unique_group(), tmp_path / "wm.log")
    try:
        with (
            http_stub(json_answer(503, {"error": "model server down"})) as server,
            agent_process(settings, HTTP, [*http_args, "--url", server.url], tmp_path) as http,
            agent_process(settings, BACKUP, backup_args, tmp_path) as backup,
        ):
            await wm.wait_ready()
            async with (
                producer(settings) as out,
                reader(settings, "workflow.events") as history,
                reader(settings, "agents") as registry,
                replicas(settings) as start,
            ):
                await registry.until(
                    lambda evs: (
                        {HTTP, BACKUP}
                        <= {e.agent_id for e in evs if isinstance(e, AgentRegistered)}
                    ),
                    what="both agents to register",
                )
                start("am-a")
                await publish(out, settings, "plans", created)
                events = await history.until(ended(workflow_id), what="the workflow to end")

                # Restarted, the agent resumes its open breaker from the topic: an assignment
                # sent straight to it is refused without calling the server.
                assert http.stop() == 0, http.output()
                args = [*http_args, "--url", server.url]
                (tmp_path / "again").mkdir()
                with agent_process(settings, HTTP, args, tmp_path / "again") as again:
                    await registry.until(
                        lambda evs: (
                            sum(isinstance(e, AgentRegistered) and e.agent_id == HTTP for e in evs)
                            == 2
                        ),
                        what="the HTTP agent to register again",
                    )
                    direct = task_assigned(HTTP, spec("direct", "h"), workflow_id="wf-direct")
                    async with reader(settings, "tasks.results") as results:
                        await publish(out, settings, "tasks.assigned", direct)
                        answers = await results.until(finished({"direct"}), what="the refusal")
                    [refused] = of_tasks(answers, TaskFailed, {"direct"})
                    assert refused.error_kind == "breaker_open"
                    assert "circuit breaker resumed" in again.output()
                    assert again.stop() == 0, again.output()
            assert backup.stop() == 0, backup.output()
    finally:
        if wm.process.poll() is None:
            wm.terminate()
    ours = [e for e in events if getattr(e, "workflow_id", "") == workflow_id]
    assert ours[-1].type == "workflow.completed", [e.type for e in ours]
    [failed] = of_tasks(ours, TaskFailed, {"review"})
    assert (failed.attempt, failed.agent_id, failed.error_kind) == (1, HTTP, "http_503")
    [done] = of_tasks(ours, TaskCompleted, {"review"})
    assert (done.attempt, done.agent_id) == (2, BACKUP)
    notes = [e for e in of_tasks(ours, TaskWaiting, {"review"}) if e.attempt == 2]
    assert notes, "the history records why attempt 2 avoided the HTTP agent"
    assert {(n.reason_kind, n.placed_elsewhere) for n in notes} == {("breaker_open", True)}
    assert all(HTTP in n.agent_ids for n in notes)
    assert server.count() == 1
