"""Agents: the process that runs assigned attempts, and the SDK for Python agents.

Layers, each importing only those above it::

    _templates  argv placeholders ({prompt}, {inputs.a.b})            (pure)
    _outcome    what an attempt yields; the Runner interface           (pure)
    _command    command agents: argv in a process group, capped output (processes)
    _http       HTTP agents: POST the task, map the status and capped body   (network)
    _sdk        Python agents: @agent, TaskContext, TaskError          (imports user code)
    _offsets    which offset is safe to commit                         (pure)
    _host       host resources and version an agent reports            (OS)
    _outbox     what an agent produces, to which channel and key       (Kafka)
    _breaker    what counts against an agent's breaker; its state on ``breakers`` (Kafka)
    _config     an agent instance's identity and limits                (pure)
    _report     an attempt's started, progress, completed or failed    (Kafka)
    _attempts   run each attempt through the breaker, report, release  (asyncio)
    _presence   the registry record and heartbeats                     (Kafka)
    _inbox      this agent's partition of ``tasks.assigned``, offsets  (Kafka)
    _worker     the agent process: start the parts, serve, shut down   (Kafka)
    demo        demo functions for ``mesh dev`` and benchmarks         (SDK user)

Write a Python agent::

    from mesh.agents import TaskContext, agent

    @agent(capabilities=["summarise"])
    async def summarise(ctx: TaskContext) -> dict[str, object]:
        return {"summary": (ctx.prompt or "")[:100]}

and serve it with ``mesh agent run --kind python --module my_agents --id summariser-1``.
"""

from mesh.agents._breaker import DEFAULT_FAIL_MAX, DEFAULT_RESET_TIMEOUT
from mesh.agents._command import (
    MAX_OUTPUT_BYTES,
    CommandConfig,
    CommandResult,
    CommandRunner,
    run_command,
)
from mesh.agents._config import WorkerConfig
from mesh.agents._host import host_name
from mesh.agents._http import MAX_RESPONSE_BYTES, HttpConfig, HttpRunner
from mesh.agents._inbox import assignment_problem
from mesh.agents._outcome import Failure, Outcome, Runner, Success
from mesh.agents._sdk import (
    AgentFunction,
    PythonRunner,
    TaskContext,
    agent,
    agents_in,
    load_agents,
)
from mesh.agents._templates import check_template, render, render_argv
from mesh.agents._worker import AgentWorker
from mesh.errors import TaskError

__all__ = [
    "DEFAULT_FAIL_MAX",
    "DEFAULT_RESET_TIMEOUT",
    "MAX_OUTPUT_BYTES",
    "MAX_RESPONSE_BYTES",
    "AgentFunction",
    "AgentWorker",
    "CommandConfig",
    "CommandResult",
    "CommandRunner",
    "Failure",
    "HttpConfig",
    "HttpRunner",
    "Outcome",
    "PythonRunner",
    "Runner",
    "Success",
    "TaskContext",
    "TaskError",
    "WorkerConfig",
    "agent",
    "agents_in",
    "assignment_problem",
    "check_template",
    "host_name",
    "load_agents",
    "render",
    "render_argv",
    "run_command",
]
