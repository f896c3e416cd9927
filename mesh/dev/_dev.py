"""Run the whole mesh locally: broker, topics, every component and a pool of demo agents.

The components are the Workflow Manager, the Agent Manager
(``mesh run agents``: it assigns every ready task, reassigns dead agents' work and answers
``mesh agents spawn|terminate``), the Task Planner and the Resource Allocator (``mesh run
resources``): with it the resource gate is on for every process, so a task is dispatched only
once its resources are allocated (``resources=False`` runs without both).

Like Temporal's ``server start-dev``: one command, readable logs, ``mesh ready`` once everything
consumes, and Ctrl-C stops everything cleanly. Every component and agent is a real process
(``python -m mesh ...``) so what runs here is what runs in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from mesh.agents.workshop import CAPABILITIES as WORKSHOP_CAPABILITIES
from mesh.agents.workshop import WORKSHOP_DIR_ENV
from mesh.broker import first_free_port
from mesh.broker.embedded import (
    DEV_PORT,
    FETCH_MAX_WAIT_MS,
    HOST,
    EmbeddedBroker,
    EmbeddedBrokerState,
    forget_broker,
    record_broker,
    recorded_broker,
)
from mesh.errors import EmbeddedBrokerError, MeshError
from mesh.settings import Settings
from mesh.supervisor import Child, Supervisor
from mesh.topics import apply_topics, load_topics

READY_EVENTS = frozenset(
    {
        "workflows ready",
        "agent manager ready",
        "agent ready",
        "planner ready",
        "resources ready",
        "console ready",
    }
)
"""Log events by which a component or an agent says that it consumes."""


@dataclass(frozen=True)
class DevOptions:
    """What ``mesh dev`` runs."""

    bootstrap: str | None = None
    port: int | None = None
    """Port of the embedded broker; None: 9092, or the next free port above it."""
    shell_agents: int = 2
    python_agents: int = 1
    workshop_agents: int = 1
    """Agents serving the templates' ``design``, ``code``, ``test`` and ``review`` with a real
    pipeline on a scratch git repository per workflow (``mesh.agents.workshop``)."""
    workflow_replicas: int = 1
    planner: bool = True
    resources: bool = True
    """Run the Resource Allocator and gate dispatch on its allocations."""
    agent_args: tuple[str, ...] = ()
    """Extra ``mesh agent run`` arguments for the demo command agents (tests add a timeout …)."""
    manager_args: tuple[str, ...] = ()
    """Extra ``mesh run agents`` arguments (``--strategy``, ``--templates`` …)."""
    topics_dir: Path = Path("topics")
    ready_within: float = 90.0
    ui_port: int | None = None
    """Serve the console (``mesh ui``) on this loopback port; None: no console."""
    metrics_port: int | None = None
    """Each component and demo agent serves ``/metrics`` on its own loopback port, the first
    free one from this one up (``DevMesh.metrics_ports``); None: no metrics."""
    logins: Mapping[str, tuple[str, SecretStr]] = field(default_factory=dict)
    """SASL user and password per role (``workflows``, ``agent-manager``, ``planner``,
    ``resources``, ``agent``, ``ui``): on a cluster with ACLs each component runs under its own
    principal with only its grants (``access/``); a role without one uses the settings'
    login. Topics are applied with the settings' login."""


def _mesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "mesh", *args]


class DevMesh:
    """The running local mesh; ``async with DevMesh(...) as mesh:`` starts and stops it."""

    def __init__(
        self,
        settings: Settings,
        options: DevOptions,
        *,
        on_log: Callable[[Child, dict[str, Any] | str], None] | None = None,
    ) -> None:
        self.options = options
        self.settings = settings
        self.broker: EmbeddedBroker | None = None
        self.supervisor = Supervisor(on_log=on_log, is_ready=_is_ready)
        self.notes: list[str] = []
        """What the user should know about how the mesh started (a port other than asked)."""
        self.metrics_ports: dict[str, int] = {}
        """The metrics port of each process started (with ``options.metrics_port``)."""

    async def __aenter__(self) -> DevMesh:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Broker, topics, components, agents; returns once all of them consume."""
        update: dict[str, object] = {"resource_gate": self.options.resources}
        if self.options.bootstrap is None:
            update["bootstrap_servers"] = await self._start_broker()
            if "fetch_max_wait_ms" not in self.settings.model_fields_set:
                update["fetch_max_wait_ms"] = FETCH_MAX_WAIT_MS
        else:
            update["bootstrap_servers"] = self.options.bootstrap
        self.settings = self.settings.model_copy(update=update)
        declarations = load_topics(self.options.topics_dir, prefix=self.settings.topic_prefix)
        applied = await apply_topics(self.settings, declarations.topics)
        if applied.failed:
            first = applied.failed[0]
            raise MeshError(f"could not prepare the topics: {first.topic}: {first.reason}")
        if self.options.resources:
            await self._spawn(
                "resources",
                _mesh("run", "resources", "--group", self.settings.group("resources")),
                env=self.env_of("resources"),
            )
        for i in range(1, self.options.workflow_replicas + 1):
            await self.spawn_workflows(_replica_name(i, self.options.workflow_replicas))
        await self.spawn_agent_manager()
        if self.options.planner:
            # Unless the user chose a mapping: the workshop's capabilities stay theirs, every
            # other template capability runs on the `shell` demo agents.
            planner_env = self.env_of("planner")
            if not self.settings.planner_capability_map:
                planner_env["MESH_PLANNER_CAPABILITY_MAP"] = self.capability_map_text()
            await self._spawn(
                "planner",
                _mesh("run", "planner", "--group", self.settings.group("planner")),
                env=planner_env,
            )
        for i in range(1, self.options.shell_agents + 1):
            await self._spawn(
                f"shell-{i}",
                _mesh(
                    "agent",
                    "run",
                    "--kind",
                    "command",
                    "--id",
                    self.agent_id(f"shell-{i}"),
                    "--capability",
                    "shell",
                    "--allow-task-command",
                    *self.options.agent_args,
                ),
                env=self.env_of("agent"),
            )
        workshop_env = {**self.env_of("agent"), WORKSHOP_DIR_ENV: str(self.workshop_dir)}
        python_agents = (
            ("python", self.options.python_agents, "mesh.agents.demo", self.env_of("agent")),
            ("workshop", self.options.workshop_agents, "mesh.agents.workshop", workshop_env),
        )
        for name, count, module, env in python_agents:
            for i in range(1, count + 1):
                await self._spawn(
                    f"{name}-{i}",
                    _mesh(
                        "agent",
                        "run",
                        "--kind",
                        "python",
                        "--id",
                        self.agent_id(f"{name}-{i}"),
                        "--module",
                        module,
                    ),
                    env=env,
                )
        if self.options.ui_port is not None:
            await self.supervisor.spawn(
                "ui",
                _mesh("ui", "--port", str(self.options.ui_port), "--json"),
                env=self.env_of("ui"),
            )
        missing = await self.supervisor.wait_ready(self.options.ready_within)
        if missing:
            details = "; ".join(_last_words(self.supervisor.children[name]) for name in missing)
            raise MeshError(f"not ready within {self.options.ready_within:.0f} s: {details}")

    async def _start_broker(self) -> str:
        """The embedded broker on 9092 (or the next free port), recorded where every command
        finds it; refused while another recorded one runs."""
        state_dir = self.settings.state_dir
        running = recorded_broker(state_dir)
        if running is not None:
            console = f", console {running.console}" if running.owned and running.console else ""
            use = (
                "use it (commands find it by themselves), or stop it with Ctrl-C in its terminal"
                if running.owned
                else f"run the mesh on it with 'mesh dev --bootstrap-servers "
                f"{running.bootstrap_servers}', or stop it with 'mesh broker stop'"
            )
            raise EmbeddedBrokerError(
                f"a mesh is already running here: embedded broker on {running.describe()}"
                f"{console}; {use}"
            )
        port = self.options.port
        if port is None:
            port = first_free_port(HOST, DEV_PORT)
            if port != DEV_PORT:
                self.notes.append(f"port {DEV_PORT} is in use: the embedded broker is on {port}")
        # In a session of its own, so the terminal's Ctrl-C does not reach it: the broker
        # must outlive every client that still publishes on its way out; stop() ends it last.
        self.broker = await asyncio.to_thread(EmbeddedBroker(port).start, detach=True)
        assert self.broker.pid is not None
        record_broker(
            state_dir,
            EmbeddedBrokerState(
                pid=self.broker.pid,
                port=self.broker.port,
                log_file="",
                started_at=time.time(),
                owner="mesh dev",
                owner_pid=os.getpid(),
                console=self.console_url,
            ),
        )
        return self.broker.bootstrap_servers

    @property
    def workshop_dir(self) -> Path:
        """Where the workshop agents keep a scratch git repository per workflow."""
        return self.settings.state_dir / "workshop"

    def capability_map_text(self) -> str:
        """The planner's capability map under ``mesh dev`` (``MESH_PLANNER_CAPABILITY_MAP``)."""
        return ",".join(f"{k}={v}" for k, v in dev_capability_map(self.options).items())

    @property
    def console_url(self) -> str | None:
        """Where the console answers (None without one)."""
        port = self.options.ui_port
        return None if port is None else f"http://127.0.0.1:{port}/"

    def env_of(self, role: str) -> dict[str, str]:
        """The ``MESH_*`` environment of a process of ``role``: the settings, with the role's
        own SASL login if ``logins`` has one."""
        login = self.options.logins.get(role)
        if login is None:
            return self.settings.to_env()
        user, password = login
        own = {"sasl_username": user, "sasl_password": password}
        return self.settings.model_copy(update=own).to_env()

    def agent_id(self, name: str) -> str:
        """Demo agent ids carry the topic prefix so meshes sharing a cluster do not collide."""
        prefix = self.settings.topic_prefix.rstrip(".")
        return f"demo-{name}" if prefix in ("", "mesh") else f"{prefix}-{name}"

    async def spawn_workflows(self, name: str = "workflows") -> Child:
        """Start a Workflow Manager replica (also used to replace a killed one)."""
        return await self._spawn(
            name,
            _mesh("run", "workflows", "--group", self.settings.group("workflows")),
            env=self.env_of("workflows"),
        )

    async def spawn_agent_manager(self, name: str = "agent-manager") -> Child:
        """Start an Agent Manager replica (also used to replace a killed one)."""
        return await self._spawn(
            name,
            _mesh("run", "agents", *self.options.manager_args),
            env=self.env_of("agent-manager"),
        )

    async def _spawn(self, name: str, argv: list[str], *, env: dict[str, str]) -> Child:
        """Start a component or agent, with a metrics port of its own if metrics are on (a
        replacement keeps its predecessor's)."""
        if self.options.metrics_port is not None:
            port = self.metrics_ports.get(name)
            if port is None:
                taken = set(self.metrics_ports.values())
                port = first_free_port(HOST, self.options.metrics_port)
                while port in taken:  # given to a process not listening yet
                    port = first_free_port(HOST, port + 1)
                self.metrics_ports[name] = port
            argv = [*argv, "--metrics-port", str(port)]
        return await self.supervisor.spawn(name, argv, env=env)

    async def wait(self, stop: asyncio.Event) -> str | None:
        """Run until ``stop`` is set or a process dies; returns the name of a dead process."""
        while not stop.is_set():
            for name, child in self.supervisor.children.items():
                if not child.running:
                    return name
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        return None

    async def stop(self) -> None:
        """Stop agents first (they finish or give back their work), then components, then the
        broker."""
        components = ("workflows", "planner", "agent-manager", "resources")
        agents = [n for n in self.supervisor.children if not n.startswith(components)]
        await asyncio.gather(*(self.supervisor.stop(n) for n in agents))
        await self.supervisor.stop_all()
        if self.broker is not None:
            pid = self.broker.pid
            await asyncio.to_thread(self.broker.stop)
            self.broker = None
            if pid is not None:
                forget_broker(self.settings.state_dir, pid)


def dev_capability_map(options: DevOptions) -> dict[str, str]:
    """Template capability → the capability of ``mesh dev``'s agents that serves it."""
    served = dict.fromkeys(WORKSHOP_CAPABILITIES) if options.workshop_agents else {}
    return {**{name: name for name in served}, "*": "shell"}


def _replica_name(i: int, replicas: int) -> str:
    return "workflows" if replicas == 1 else f"workflows-{i}"


def _is_ready(_child: Child, entry: dict[str, Any]) -> bool:
    return entry.get("event") in READY_EVENTS


def _last_words(child: Child) -> str:
    state = "exited" if not child.running else "still starting"
    last = child.lines[-1] if child.lines else "no output"
    return f"{child.name} {state} ({last[:200]})"
