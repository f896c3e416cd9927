"""The real Apache Kafka broker (KRaft, from Maven Central jars), started once per test session.

Without Java or Maven the ``kafka`` tier is skipped with the reason, except in CI (``CI=true``),
where a real broker that cannot start fails the run: the integration tier must never pass by
quietly running nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mesh.settings import Settings
from tooling.kafka.kafka_broker import ApacheKafka, KafkaToolingError

_STARTED = pytest.StashKey[ApacheKafka]()


@pytest.fixture(scope="session")
def real_kafka(request: pytest.FixtureRequest) -> Iterator[ApacheKafka]:
    """One Apache Kafka broker on free loopback ports for the whole session."""
    broker = ApacheKafka()
    reason = None
    try:
        broker.start()
    except KafkaToolingError as exc:
        reason = f"real Apache Kafka broker did not start: {exc}"
    if reason is not None:  # outside the except block: the report shows the reason, no chain
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    request.config.stash[_STARTED] = broker
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(real_kafka: ApacheKafka, topic_prefix: str) -> Settings:
    """Settings pointing at the real broker's PLAINTEXT listener under a fresh topic prefix."""
    return Settings(bootstrap_servers=real_kafka.bootstrap_servers, topic_prefix=topic_prefix)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show how long the broker took, so CI logs track it."""
    broker = terminalreporter.config.stash.get(_STARTED, None)
    if broker is None:
        return
    terminalreporter.write_sep("-", "real Apache Kafka")
    terminalreporter.write_line(
        f"Apache Kafka {broker.version} on {broker.bootstrap_servers} "
        f"(SASL_PLAINTEXT {broker.sasl_bootstrap_servers}): "
        f"jars {broker.fetch_seconds or 0:.2f} s, "
        f"storage format {broker.format_seconds or 0:.2f} s, "
        f"broker start {broker.start_seconds or 0:.2f} s"
    )
