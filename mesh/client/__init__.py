"""The client side of the mesh: :class:`Client` publishes and calls over Kafka, and follows the
workflows it starts; the command line uses it for every publish and call."""

from mesh.client._agents import AgentReport, agent_states
from mesh.client._api import Client, CommandKind
from mesh.client._connection import DEFAULT_TIMEOUT
from mesh.client._history import (
    FINAL_TYPES,
    HistoryCursor,
    WorkflowRun,
    follow_history,
    follow_key,
    history_cursor,
    key_cursor,
    new_workflow_id,
)
from mesh.client._oneshot import send_command, submit_plan
from mesh.client._planfile import PlanRequest, load_plan_file
from mesh.errors import CallFailed, NoAnswer

__all__ = [
    "DEFAULT_TIMEOUT",
    "FINAL_TYPES",
    "AgentReport",
    "CallFailed",
    "Client",
    "CommandKind",
    "HistoryCursor",
    "NoAnswer",
    "PlanRequest",
    "WorkflowRun",
    "agent_states",
    "follow_history",
    "follow_key",
    "history_cursor",
    "key_cursor",
    "load_plan_file",
    "new_workflow_id",
    "send_command",
    "submit_plan",
]
