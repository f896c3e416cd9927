"""The task path's contract (tests/contract/task_path.py) on the embedded broker: the at-least-once
path, with the same outcome as on real Kafka."""

from __future__ import annotations

from tests.contract.brokers import OnEmbedded
from tests.contract.task_path import TaskPathContract


class TestTaskPathOnEmbedded(OnEmbedded, TaskPathContract):
    """The example diamond end to end on the embedded broker."""
