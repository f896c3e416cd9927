"""Errors of the Workflow Manager's runtime (they extend the tree in ``mesh.errors``)::

MeshError
├── EventError
│   └── MisplacedInput   a valid event on the wrong topic, key or partition (dead-lettered)
└── UnknownWorkflow      replay found no history for the workflow id
"""

from __future__ import annotations

from mesh.errors import EventError, MeshError


class MisplacedInput(EventError):
    """A valid event the manager cannot take from where it was read: a type that does not
    belong on the topic, a record key that is not the event's workflow id, or a partition the
    key does not hash to (the workflow's state lives in the partition its id hashes to)."""


class UnknownWorkflow(MeshError):
    """``workflow.events`` holds no history for this workflow id."""
