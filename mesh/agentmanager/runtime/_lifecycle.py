"""Agent lifecycle: spawn agents from templates as local processes, terminate them, restart
the ones that crash — and the ``agents.commands`` loop that lets ``mesh agents spawn`` and
``terminate`` reach it (request/reply).

Each Agent Manager replica owns a :class:`~mesh.supervisor.Supervisor` of the agents it started.
Lifecycle requests arrive on ``agents.commands`` in a consumer group (a FastStream subscriber,
``mesh.kafka.faststream``), so exactly one replica takes each; it answers with a ``Reply`` on
``replies`` keyed by the request's correlation id. A record there that is not a lifecycle
request is dead-lettered once, with its reason.

- **spawn**: ``count`` processes of ``mesh agent run`` from a template, each under the
  supervisor's restart policy. The reply comes once every instance says ``agent ready`` (it has
  registered), or with the reason the first one could not start.
- **terminate**: SIGTERM — the worker drains, publishes ``AgentTerminated`` and a tombstone —
  then SIGKILL after the grace period. An agent this replica did not start but that runs on
  this host (its registration names the host and pid) is signalled the same way; any other
  agent is refused with the host it runs on.
- **restart**: a crashed agent comes back under a *fresh* id (``<id>.r1``, ``.r2`` …). The old id
  goes through the health path like any dead agent — its attempts are reassigned after the
  missed-heartbeat threshold — and only then is it deregistered here. Coming back under the
  old id would re-run the attempts its offset had not committed even after they were
  reassigned, i.e. run a task twice.

Requests older than ``expire_after`` (a replica that was down) are skipped: their caller has
given up, and starting agents for nobody is worse than not answering.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import JsonValue

from mesh._aio import cancel_and_wait
from mesh.agentmanager._registry import Registry
from mesh.agentmanager.runtime._processes import is_agent_process, signal_and_wait
from mesh.agentmanager.runtime._requests import answer
from mesh.agentmanager.runtime._templates import Templates
from mesh.agents import host_name
from mesh.errors import InvalidEvent, SpawnFailed, UnknownAgent
from mesh.events import (
    AgentTerminated,
    Event,
    Mapper,
    Producer,
    SpawnAgents,
    TerminateAgent,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.faststream import EventRouter
from mesh.kafka.partitions import partitions_of
from mesh.kafka.reader import bounds, reader
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.supervisor import Child, RestartPolicy, Supervisor

log = get_logger("mesh.agentmanager.lifecycle")

_POLL_MS = 300
_JANITOR_SECONDS = 0.5


@dataclass(frozen=True)
class SpawnedAgent:
    """One agent process started by :meth:`AgentLifecycle.spawn_agent`."""

    agent_id: str
    pid: int
    template: str
    host: str

    def as_json(self) -> dict[str, JsonValue]:
        return {
            "agent_id": self.agent_id,
            "pid": self.pid,
            "template": self.template,
            "host": self.host,
        }


@dataclass(frozen=True)
class TerminatedAgent:
    """How :meth:`AgentLifecycle.terminate_agent` stopped an agent."""

    agent_id: str
    pid: int
    exit_code: int | None
    forced: bool
    supervised: bool

    def as_json(self) -> dict[str, JsonValue]:
        return {
            "agent_id": self.agent_id,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "forced": self.forced,
            "supervised": self.supervised,
        }


def incarnation_id(agent_id: str, incarnation: int) -> str:
    """The id of a supervised agent's n-th restart (the first run keeps ``agent_id``)."""
    return agent_id if incarnation == 0 else f"{agent_id}.r{incarnation}"


class AgentLifecycle:
    """The local agent processes of one Agent Manager replica.

    ``registry`` (the manager's, folded from Kafka) says which ids are taken, where unsupervised
    agents run, and when a crashed agent's attempts have all been reassigned.
    """

    def __init__(
        self,
        settings: Settings,
        templates: Templates,
        registry: Registry,
        *,
        me: Producer,
        restart: RestartPolicy | None = None,
        ready_within: float = 60.0,
        expire_after: float = 120.0,
        workdir: Path | None = None,
        folded: Callable[[], Mapping[int, int]] | None = None,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.registry = registry
        self.me = me
        self.restart = restart or RestartPolicy()
        self.ready_within = ready_within
        self.expire_after = expire_after
        self.workdir = workdir
        self.host = host_name()
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.supervisor = Supervisor(
            on_log=_forward, is_ready=_is_ready, on_exit=self._crashed, keep_lines=50
        )
        self._template_of: dict[str, str] = {}
        self._departed: dict[str, AgentTerminated] = {}
        self._producer: AIOKafkaProducer | None = None
        self._router: EventRouter | None = None
        self._stopping = False
        self._folded = folded
        """Per ``agents`` partition, the last offset the registry has folded: requests wait
        until it reaches the topic's end at start, so a new id never collides with one the
        view has not read yet."""

    # -- the API -------------------------------------------------------------------------------

    async def spawn_agent(
        self,
        template: str,
        config: Mapping[str, Any] | None = None,
        *,
        count: int = 1,
        name: str | None = None,
    ) -> list[SpawnedAgent]:
        """Start ``count`` agents from ``template`` (with ``config`` overrides); returns once
        each has registered. ``TemplateRefused`` / ``SpawnFailed`` say why not."""
        resolved = self.templates.resolve(template, config or {})
        stem = name or resolved.name
        env = {**self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        cwd = str(self.workdir) if self.workdir is not None else None
        children: list[Child] = []
        try:
            for agent_id in self._free_ids(stem, count):

                def argv_for(n: int, agent_id: str = agent_id) -> list[str]:
                    return _mesh(*resolved.run_args(incarnation_id(agent_id, n)))

                self._template_of[agent_id] = template
                children.append(
                    await self.supervisor.spawn(
                        agent_id,
                        argv_for(0),
                        env=env,
                        cwd=cwd,
                        restart=self.restart,
                        argv_for=argv_for,
                    )
                )
            await self._until_ready(children)
        except BaseException:
            await asyncio.gather(
                *(self.supervisor.stop(c.name, grace=2.0) for c in children),
                return_exceptions=True,
            )
            for child in children:
                self._forget(child.name)
            raise
        spawned = [SpawnedAgent(c.name, c.pid, template, self.host) for c in children]
        log.info(
            "agents spawned",
            template=template,
            agents=[s.agent_id for s in spawned],
            pids=[s.pid for s in spawned],
        )
        return spawned

    async def terminate_agent(self, agent_id: str, *, grace: float = 10.0) -> TerminatedAgent:
        """Stop ``agent_id`` gracefully (SIGTERM), forcefully (SIGKILL) after ``grace`` s."""
        child = self._child_running(agent_id)
        if child is not None:
            pid = child.pid
            code = await self.supervisor.stop(child.name, grace=grace)
            self._forget(child.name)
            forced = code == -signal.SIGKILL
            log.info("agent terminated", agent_id=agent_id, pid=pid, exit_code=code, forced=forced)
            if forced:
                self._depart(agent_id, code, f"killed after a {grace:g} s grace period")
            return TerminatedAgent(agent_id, pid, code, forced, supervised=True)
        pid = self._local_pid(agent_id)
        forced = await signal_and_wait(pid, grace)
        log.info("agent terminated", agent_id=agent_id, pid=pid, forced=forced, supervised=False)
        if forced:
            self._depart(agent_id, -signal.SIGKILL, f"killed after a {grace:g} s grace period")
        return TerminatedAgent(agent_id, pid, None, forced, supervised=False)

    def local_agents(self) -> list[SpawnedAgent]:
        """The agents this replica supervises that run now."""
        return [
            SpawnedAgent(self._current_id(c), c.pid, self._template_of.get(c.name, ""), self.host)
            for c in self.supervisor.children.values()
            if c.running
        ]

    async def stop_all(self, *, grace: float = 10.0) -> None:
        """Stop every supervised agent (the replica shuts down)."""
        await self.supervisor.stop_all(grace=grace)

    # -- helpers -------------------------------------------------------------------------------

    def _free_ids(self, stem: str, count: int) -> list[str]:
        taken = {*self.registry.agent_ids, *self.supervisor.children}
        found: list[str] = []
        n = 0
        while len(found) < count:
            n += 1
            candidate = f"{stem}-{n}"
            if candidate not in taken:
                found.append(candidate)
        return found

    async def _until_ready(self, children: list[Child]) -> None:
        async def one(child: Child) -> None:
            ready = asyncio.ensure_future(child.ready.wait())
            exited = asyncio.ensure_future(child.process.wait())
            try:
                await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                exited.cancel()
            if not child.ready.is_set():
                last = child.lines[-1][:300] if child.lines else "no output"
                raise SpawnFailed(
                    f"agent {child.name} exited with {child.process.returncode} before it "
                    f"registered: {last}"
                )

        try:
            async with asyncio.timeout(self.ready_within):
                await asyncio.gather(*(one(c) for c in children))
        except TimeoutError:
            slow = [c.name for c in children if not c.ready.is_set()]
            raise SpawnFailed(
                f"agents {', '.join(slow)} did not register within {self.ready_within:g} s"
            ) from None

    def _child_running(self, agent_id: str) -> Child | None:
        for child in self.supervisor.children.values():
            if self._current_id(child) == agent_id and (child.running or child._watching):
                return child
        return None

    def _current_id(self, child: Child) -> str:
        return incarnation_id(child.name, child.incarnation)

    def _forget(self, name: str) -> None:
        self.supervisor.children.pop(name, None)
        self._template_of.pop(name, None)

    def _local_pid(self, agent_id: str) -> int:
        """The pid of an agent that runs on this host but was not started here."""
        state = next(
            (a for a in self.registry.agents(datetime.now(UTC)) if a.agent_id == agent_id), None
        )
        if state is None:
            raise UnknownAgent(f"no agent {agent_id!r} is registered")
        if state.host != self.host:
            raise UnknownAgent(
                f"agent {agent_id!r} runs on host {state.host or 'unknown'}, not on this Agent "
                f"Manager's host {self.host}; stop it there"
            )
        pid_text = state.labels.get("pid", "")
        if not pid_text.isdigit() or not is_agent_process(int(pid_text), agent_id):
            raise UnknownAgent(f"agent {agent_id!r} has no running process on this host")
        return int(pid_text)

    # -- crashed agents ------------------------------------------------------------------------

    def _crashed(self, child: Child, code: int, delay: float | None) -> None:
        """A supervised agent died unasked: its id departs once its attempts moved on."""
        agent_id = self._current_id(child)
        if code == 0:  # it deregistered itself on the way out
            log.info("agent exited", agent_id=agent_id, exit_code=code)
            return
        if delay is None:
            what = "restart limit reached; not restarted"
            log.error("agent crashed", agent_id=agent_id, exit_code=code, restart=what)
        else:
            what = f"restarting as {incarnation_id(child.name, child.incarnation + 1)}"
            log.warning(
                "agent crashed", agent_id=agent_id, exit_code=code, restart_in_seconds=delay
            )
        self._depart(agent_id, code, f"crashed (exit {code}); {what}")

    def _depart(self, agent_id: str, code: int | None, reason: str) -> None:
        """An agent that could not deregister itself: the janitor does it once its attempts
        have been reassigned (deregistering earlier would hide them from reassignment)."""
        self._departed[agent_id] = AgentTerminated(
            **meta(self.me, correlation_id=agent_id),
            agent_id=agent_id,
            reason=reason,
            exit_code=code,
        )

    async def _janitor(self, producer: AIOKafkaProducer) -> None:
        """Deregister crashed ids once they hold no attempt (the health path reassigned them)."""
        while True:
            for agent_id, event in list(self._departed.items()):
                if self.registry.outstanding(agent_id):
                    continue
                topic = self.settings.topic("agents")
                key, value, headers = self.mapper.encode(event)
                with kafka_errors(self.settings, "deregister a crashed agent"):
                    await producer.send_and_wait(topic, value, key=key, headers=headers)
                    await producer.send_and_wait(topic, None, key=key)
                self._departed.pop(agent_id, None)
                log.info("crashed agent deregistered", agent_id=agent_id)
            await asyncio.sleep(_JANITOR_SECONDS)

    # -- agents.commands: request/reply --------------------------------------------------------

    async def _registry_caught_up(self) -> None:
        """Wait (bounded) until the registry holds every ``agents`` record written so far."""
        if self._folded is None:
            return
        topic = self.settings.topic("agents")
        consumer = reader(self.settings)
        try:
            with kafka_errors(self.settings, "read the end of the agent registry"):
                await consumer.start()
                partitions = await partitions_of(consumer, self.settings, "agents")
            limits = await bounds(
                consumer, self.settings, [TopicPartition(topic, p) for p in partitions]
            )
        finally:
            await stop_clients(consumer)
        targets = {tp.partition: end - 1 for tp, (_, end) in limits.items() if end > 0}
        deadline = time.monotonic() + self.ready_within
        while True:
            folded = self._folded()
            if all(folded.get(p, -1) >= last for p, last in targets.items()):
                return
            if time.monotonic() > deadline:
                log.warning("agent registry not caught up; answering requests anyway")
                return
            await asyncio.sleep(_POLL_MS / 1000)

    def subscribe(self, router: EventRouter) -> None:
        """Serve ``agents.commands`` on the component's router (which publishes ``replies``):
        requests in, replies out."""
        router.events(
            "agents.commands",
            group_id=self.settings.group("agent-manager-commands"),
            title="agents.commands",
            description="SpawnAgents and TerminateAgent for this Agent Manager's replicas",
        )(self.on_request)
        self._router = router

    async def on_request(self, event: Event, record: ConsumedRecord) -> None:
        """Carry out one lifecycle request and answer it (a record of another type is
        dead-lettered)."""
        if not isinstance(event, SpawnAgents | TerminateAgent):
            error = InvalidEvent(f"not a lifecycle request: {event.type}")
            await self._served().dead_letter(record, error)
            return
        if self._stopping:
            log.warning("lifecycle request while stopping; not answered", type=event.type)
            return
        reply = await answer(self, event)
        if reply is not None:
            await self._served().send("replies", reply)

    def _served(self) -> EventRouter:
        if self._router is None:
            raise RuntimeError("the agent lifecycle is not serving")
        return self._router

    async def serve(self, stop: asyncio.Event) -> None:
        """Keep the local agents until ``stop``, then stop them (requests are answered on the
        component's router, see :meth:`subscribe`)."""
        # The janitor writes tombstones: see mesh.kafka.faststream on why not through FastStream.
        producer = AIOKafkaProducer(**client_kwargs(self.settings), acks="all")
        janitor: asyncio.Task[None] | None = None
        stopped: asyncio.Task[bool] | None = None
        try:
            with kafka_errors(self.settings, "start the agent lifecycle"):
                await producer.start()
            await self._registry_caught_up()
            janitor = asyncio.create_task(self._janitor(producer))
            stopped = asyncio.create_task(stop.wait())
            log.info("agent lifecycle ready", templates=self.templates.names())
            await asyncio.wait({janitor, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if janitor.done():
                janitor.result()  # its failure stops the replica
        finally:
            self._stopping = True  # no request is taken while the local agents stop
            try:
                try:
                    await cancel_and_wait(janitor, stopped)
                finally:
                    await self.stop_all()
            finally:  # even when cancelled while the local agents stop
                await stop_clients(producer)


def _mesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "mesh", *args]


def _is_ready(_child: Child, entry: dict[str, Any]) -> bool:
    return entry.get("event") == "agent ready"


def _forward(child: Child, entry: dict[str, Any] | str) -> None:
    """Agents' warnings and errors appear in the manager's log; the rest stays in theirs."""
    if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
        log.warning("agent says", agent=child.name, message=str(entry.get("event", ""))[:500])


__all__ = [
    "AgentLifecycle",
    "SpawnedAgent",
    "TerminatedAgent",
    "incarnation_id",
]
