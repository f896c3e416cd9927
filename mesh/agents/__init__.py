"""Agents and the simple dispatcher: the task path from ``tasks.ready`` to ``tasks.results``.

Layers, each importing only those above it::

    _templates  argv placeholders ({prompt}, {inputs.a.b})            (pure)
    _matching   capability matching and the placement policy           (pure)
    _outcome    what an attempt yields; the Runner interface           (pure)
    _command    command agents: argv in a process group, capped output (processes)
    _http       HTTP agents: POST the task, map the status and capped body   (network)
    _sdk        Python agents: @agent, TaskContext, TaskError          (imports user code)
    _offsets    which offset is safe to commit                         (pure)
    _directory  the agent view folded from the registry and results    (pure)
    _host       host resources and version an agent reports            (OS)
    _metadata   topic partitions; the partition an agent id hashes to  (Kafka)
    _breaker    what counts against an agent's breaker; its last state (Kafka)
    _worker     the agent process: register, heartbeat, run, report    (Kafka)
    _dispatcher TaskReady → TaskAssigned, transactional where possible (Kafka)
    demo        demo functions for ``mesh dev`` and benchmarks         (SDK user)

Write a Python agent::

    from mesh.agents import TaskContext, agent

    @agent(capabilities=["summarise"])
    async def summarise(ctx: TaskContext) -> dict[str, object]:
        return {"summary": (ctx.prompt or "")[:100]}

and serve it with ``mesh agent run --kind python --module my_agents --id summariser-1``.
"""

from mesh.agents._command import (
    MAX_OUTPUT_BYTES,
    CommandConfig,
    CommandResult,
    CommandRunner,
    run_command,
)
from mesh.agents._directory import AgentDirectory
from mesh.agents._dispatcher import Dispatcher
from mesh.agents._http import HttpConfig, HttpRunner
from mesh.agents._matching import AgentView, choose_agent, covers
from mesh.agents._metadata import partition_for
from mesh.agents._outcome import Failure, Outcome, Runner, Success
from mesh.agents._sdk import (
    AgentFunction,
    PythonRunner,
    TaskContext,
    TaskError,
    agent,
    agents_in,
    load_agents,
)
from mesh.agents._templates import TemplateError, render, render_argv
from mesh.agents._worker import AgentWorker, WorkerConfig

__all__ = [
    "MAX_OUTPUT_BYTES",
    "AgentDirectory",
    "AgentFunction",
    "AgentView",
    "AgentWorker",
    "CommandConfig",
    "CommandResult",
    "CommandRunner",
    "Dispatcher",
    "Failure",
    "HttpConfig",
    "HttpRunner",
    "Outcome",
    "PythonRunner",
    "Runner",
    "Success",
    "TaskContext",
    "TaskError",
    "TemplateError",
    "WorkerConfig",
    "agent",
    "agents_in",
    "choose_agent",
    "covers",
    "load_agents",
    "partition_for",
    "render",
    "render_argv",
    "run_command",
]
