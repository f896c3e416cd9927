"""The agent registry (``agents``, compacted) and liveness (``agents.heartbeats``).

``AgentRegistered`` and ``AgentUpdated`` each carry the agent's full description, so the latest
record per agent id in the compacted topic is enough to rebuild the registry.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event
from mesh.events._types import Id, JsonObject, Name, Seq, ShortText
from mesh.events._values import Capability, Resources

AgentKind = Literal["command", "python", "http"]
"""How an agent runs work: a CLI process, a Python function (SDK), or an HTTP endpoint."""

AgentStatus = Literal["starting", "ready", "draining", "unhealthy"]
"""Lifecycle state the Agent Manager keeps for routing."""

Health = Literal["healthy", "degraded", "unhealthy"]
"""What an agent says about itself in a heartbeat."""


class _AgentEvent(Event):
    key_doc: ClassVar[str] = "agent id"

    agent_id: Id = Field(description="The agent instance (the Kafka key).")

    @property
    def key(self) -> str:
        return self.agent_id


class _AgentDescription(_AgentEvent):
    kind: AgentKind = Field(description="How the agent runs work.")
    capabilities: Seq[Capability] = Field(
        min_length=1, max_length=100, description="What the agent can do."
    )
    max_concurrency: int = Field(default=1, ge=1, le=1_000, description="Attempts run at once.")
    version: ShortText = Field(default="", description="Agent software version.")
    host: Id | None = Field(default=None, description="Host the agent runs on.")
    resources: Resources = Field(
        default_factory=Resources, description="Resources the agent's host offers to it."
    )
    labels: dict[Name, ShortText] = Field(
        default_factory=dict, max_length=50, description="Free labels for placement."
    )


class AgentRegistered(_AgentDescription):
    """An agent instance joined the mesh."""

    type: Literal["agent.registered"] = "agent.registered"
    schema_version: Literal[1] = 1


class AgentUpdated(_AgentDescription):
    """An agent's description or status changed (full description, not a diff)."""

    type: Literal["agent.updated"] = "agent.updated"
    schema_version: Literal[1] = 1

    status: AgentStatus = Field(default="ready", description="Lifecycle state.")


class AgentHeartbeat(_AgentEvent):
    """An agent is alive; its load, resource use and health drive balancing and reassignment."""

    type: Literal["agent.heartbeat"] = "agent.heartbeat"
    schema_version: Literal[1] = 1

    health: Health = Field(description="The agent's own view of its health.")
    running_tasks: int = Field(ge=0, description="Attempts running now.")
    load: float = Field(ge=0, le=1, description="Share of capacity in use, 0–1.")
    resources_used: Resources = Field(
        default_factory=Resources, description="Resources in use now."
    )
    resources_free: Resources = Field(
        default_factory=Resources, description="Resources still free on the agent's host."
    )
    uptime_seconds: float = Field(default=0.0, ge=0, description="Time since the agent started.")
    interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Time to the next heartbeat; the Agent Manager derives expiry from it.",
    )


class AgentTerminated(_AgentEvent):
    """An agent instance left the mesh (stopped, crashed or removed)."""

    type: Literal["agent.terminated"] = "agent.terminated"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why.")
    exit_code: int | None = Field(default=None, description="Process exit status, if it had one.")


class SpawnAgents(Event):
    """Ask an Agent Manager to start ``count`` agent processes from a template (request/reply).

    One replica of the Agent Manager's group takes it, starts the processes under its local
    supervisor and answers on ``replies`` with the agents' ids and pids once they registered.
    """

    type: Literal["agents.spawn"] = "agents.spawn"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "template name"

    template: Name = Field(
        description="An agent template by name (built-in or from the manager's template files), "
        "or a base kind: `command`, `python`."
    )
    count: int = Field(default=1, ge=1, le=100, description="How many instances to start.")
    name: Name | None = Field(
        default=None,
        description="Id stem of the instances (`<name>-1` …) [default: the template's name].",
    )
    config: JsonObject = Field(
        default_factory=dict,
        description="Overrides of the template's fields (capabilities, argv, timeout …).",
    )

    @property
    def key(self) -> str:
        return self.template


class TerminateAgent(_AgentEvent):
    """Ask the Agent Manager to stop an agent: SIGTERM (it drains, deregisters), then SIGKILL
    after ``grace_seconds`` (request/reply)."""

    type: Literal["agents.terminate"] = "agents.terminate"
    schema_version: Literal[1] = 1

    grace_seconds: float = Field(
        default=10.0, ge=0, le=3_600, description="Time to drain before the process is killed."
    )
    reason: ShortText = Field(default="", description="Why, for the logs.")
