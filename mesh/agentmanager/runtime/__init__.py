"""The Agent Manager's runtime: assignment on ``tasks.ready``, the registry guard, the
lifecycle of local agent processes from templates, and the API; its policies are the pure
:mod:`mesh.agentmanager`."""

from mesh.agentmanager.runtime._manager import (
    COMPONENT,
    AgentManager,
    run_agent_manager,
)
from mesh.agentmanager.runtime._templates import (
    Templates,
    load_templates,
    parse_capability,
)

__all__ = [
    "COMPONENT",
    "AgentManager",
    "Templates",
    "load_templates",
    "parse_capability",
    "run_agent_manager",
]
