"""The one error the workflow aggregate raises: an input or history event that cannot apply."""

from __future__ import annotations

from mesh.errors import MeshError


class DecisionError(MeshError):
    """An input the workflow cannot apply: unknown workflow or task, or an impossible transition.

    Not retriable: the same input against the same state always fails the same way, so the
    runtime sends it to the dead-letter topic. The message is one line (it becomes a DLQ header).
    """
