"""Local brokers that mesh starts itself: the embedded Tansu broker."""

from mesh.broker._probe import first_free_port, wait_until_ready
from mesh.broker.embedded import (
    FETCH_MAX_WAIT_MS,
    EmbeddedBroker,
    EmbeddedBrokerState,
    find_tansu_binary,
)

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "EmbeddedBroker",
    "EmbeddedBrokerState",
    "find_tansu_binary",
    "first_free_port",
    "wait_until_ready",
]
