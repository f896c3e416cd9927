"""The embedded Tansu broker, started once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mesh.broker.embedded import FETCH_MAX_WAIT_MS, EmbeddedBroker
from mesh.errors import EmbeddedBrokerError
from mesh.settings import Settings


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker on a free loopback port for the whole session."""
    broker = EmbeddedBroker()
    try:
        broker.start()
    except EmbeddedBrokerError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"embedded broker did not start: {exc}")
        pytest.skip(f"embedded broker did not start: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def embedded_settings(embedded_broker: EmbeddedBroker, topic_prefix: str) -> Settings:
    """Settings pointing at the embedded broker under a fresh topic prefix (with the short
    fetch wait its clients need, as mesh dev sets it)."""
    return Settings(
        bootstrap_servers=embedded_broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
