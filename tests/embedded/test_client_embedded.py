"""The client contract (tests/contract/client.py) on the embedded broker."""

from __future__ import annotations

from tests.contract.brokers import OnEmbedded
from tests.contract.client import ClientContract


class TestClientOnEmbedded(OnEmbedded, ClientContract):
    """``Client.submit`` through a real mesh on the embedded broker."""
