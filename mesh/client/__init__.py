"""Client side of the mesh: publishing workflows and following them."""

from mesh.client._agents import (
    AgentReport,
    agent_states,
    spawn_agents,
    terminate_agent,
)
from mesh.client._api import CallFailed, Client, NoAnswer, WorkflowRun
from mesh.client._control import _command as command_event
from mesh.client._control import command_and_wait, send_command, send_external_event
from mesh.client._planfile import PlanRequest, load_plan_file
from mesh.client._request import submit_request, wait_for_plan
from mesh.client._submit import (
    FINAL_TYPES,
    HistoryCursor,
    Submitted,
    follow_history,
    history_cursor,
    new_workflow_id,
    publish,
    submit_plan,
)

__all__ = [
    "FINAL_TYPES",
    "AgentReport",
    "CallFailed",
    "Client",
    "HistoryCursor",
    "NoAnswer",
    "PlanRequest",
    "Submitted",
    "WorkflowRun",
    "agent_states",
    "command_and_wait",
    "command_event",
    "follow_history",
    "history_cursor",
    "load_plan_file",
    "new_workflow_id",
    "publish",
    "send_command",
    "send_external_event",
    "spawn_agents",
    "submit_plan",
    "submit_request",
    "terminate_agent",
    "wait_for_plan",
]
