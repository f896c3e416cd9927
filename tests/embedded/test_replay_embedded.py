"""The replay contract (tests/contract/replay.py) on the embedded broker. It cannot look offsets
up by time: ``--until TIME`` still works, by record timestamps."""

from __future__ import annotations

from tests.contract.brokers import OnEmbedded
from tests.contract.replay import ReplayContract


class TestReplayOnEmbedded(OnEmbedded, ReplayContract):
    """Replay, status, list and watch on the embedded broker."""
