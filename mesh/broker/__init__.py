"""Local brokers that mesh starts itself: the embedded Tansu broker."""

from mesh.broker._probe import first_free_port, wait_until_ready
from mesh.broker.embedded import EmbeddedBroker, EmbeddedBrokerState, find_tansu_binary

__all__ = [
    "EmbeddedBroker",
    "EmbeddedBrokerState",
    "find_tansu_binary",
    "first_free_port",
    "wait_until_ready",
]
