"""The real Apache Kafka broker the integration tier runs on does what that tier relies on.

Plain produce/consume, transactions (committed records and offsets visible to read_committed
readers, aborted records not) and SASL PLAIN logins, each on fresh topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from mesh.kafka.clients import stop_clients
from tooling.kafka.kafka_broker import ApacheKafka

WAIT = 30.0  # seconds any single broker interaction may take before the test fails


def sasl(kafka: ApacheKafka, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": kafka.sasl_bootstrap_servers,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


async def create_topics(*names: str, **client: Any) -> None:
    admin = AIOKafkaAdminClient(**client)
    try:
        await admin.start()
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=1, replication_factor=1) for name in names]
        )
    finally:
        await stop_clients(admin)


@asynccontextmanager
async def producer(**config: Any) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(**config)
    try:
        await client.start()
        yield client
    finally:
        await stop_clients(client)


@asynccontextmanager
async def consumer(*topics: str, **config: Any) -> AsyncIterator[AIOKafkaConsumer]:
    client = AIOKafkaConsumer(*topics, auto_offset_reset="earliest", **config)
    try:
        await client.start()
        yield client
    finally:
        await stop_clients(client)


async def read_values(client: AIOKafkaConsumer, until: bytes) -> list[bytes]:
    """Values in order up to and including ``until``; fails the test if it never comes."""
    values: list[bytes] = []
    async with asyncio.timeout(WAIT):
        while not values or values[-1] != until:
            record = await client.getone()
            values.append(record.value)
    return values


async def test_records_round_trip_through_the_plaintext_listener(
    real_kafka: ApacheKafka, topic_prefix: str
) -> None:
    """A record produced on PLAINTEXT is consumed by a group with its key, value and headers."""
    topic = f"{topic_prefix}round-trip"
    await create_topics(topic, bootstrap_servers=real_kafka.bootstrap_servers)
    async with producer(bootstrap_servers=real_kafka.bootstrap_servers) as out:
        await out.send_and_wait(topic, b"hello", key=b"k1", headers=[("h", b"v")])

    async with consumer(
        topic, bootstrap_servers=real_kafka.bootstrap_servers, group_id=f"{topic_prefix}group"
    ) as reader:
        async with asyncio.timeout(WAIT):
            record = await reader.getone()

    assert (record.topic, record.key, record.value) == (topic, b"k1", b"hello")
    assert list(record.headers) == [("h", b"v")]


async def test_committed_transaction_is_visible_and_aborted_one_is_not(
    real_kafka: ApacheKafka, topic_prefix: str
) -> None:
    """Consume-transform-produce: a committed transaction's records and consumer offsets count;
    an aborted transaction's record reaches only read_uncommitted readers."""
    source, sink = f"{topic_prefix}source", f"{topic_prefix}sink"
    group = f"{topic_prefix}transformer"
    bootstrap = real_kafka.bootstrap_servers
    await create_topics(source, sink, bootstrap_servers=bootstrap)
    async with producer(bootstrap_servers=bootstrap) as out:
        await out.send_and_wait(source, b"input")

    async with (
        consumer(
            source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        ) as reader,
        producer(bootstrap_servers=bootstrap, transactional_id=f"{topic_prefix}tx") as tx,
    ):
        async with asyncio.timeout(WAIT):
            consumed = await reader.getone()
        input_partition = TopicPartition(source, consumed.partition)

        async with tx.transaction():
            await tx.send(sink, b"committed")
            await tx.send_offsets_to_transaction({input_partition: consumed.offset + 1}, group)

        await tx.begin_transaction()
        await (await tx.send(sink, b"aborted"))
        await tx.abort_transaction()

        async with tx.transaction():
            await tx.send(sink, b"last")

        async with asyncio.timeout(WAIT):
            committed_offset = await reader.committed(input_partition)

    async with consumer(sink, bootstrap_servers=bootstrap, isolation_level="read_committed") as rc:
        committed_view = await read_values(rc, until=b"last")
    async with consumer(
        sink, bootstrap_servers=bootstrap, isolation_level="read_uncommitted"
    ) as ru:
        uncommitted_view = await read_values(ru, until=b"last")

    assert committed_view == [b"committed", b"last"]
    assert uncommitted_view == [b"committed", b"aborted", b"last"]
    assert committed_offset == consumed.offset + 1


async def test_sasl_plain_login_with_the_right_password_works(
    real_kafka: ApacheKafka, topic_prefix: str
) -> None:
    """A client logged in on the SASL listener creates a topic and produces to it; the record is
    the same one a PLAINTEXT reader sees, so both listeners serve one cluster."""
    topic = f"{topic_prefix}sasl"
    [(user, password)] = real_kafka.sasl_users.items()
    login = sasl(real_kafka, user, password)
    await create_topics(topic, **login)
    async with producer(**login) as out:
        await out.send_and_wait(topic, b"over sasl")

    async with consumer(topic, bootstrap_servers=real_kafka.bootstrap_servers) as reader:
        assert await read_values(reader, until=b"over sasl") == [b"over sasl"]


async def test_sasl_plain_login_with_a_wrong_password_is_refused(real_kafka: ApacheKafka) -> None:
    """The broker refuses a wrong password: a connection fails with SaslAuthenticationFailed, and a
    client (which tries every bootstrap server) fails to start with KafkaConnectionError."""
    host, port = real_kafka.sasl_bootstrap_servers.rsplit(":", 1)
    [user] = real_kafka.sasl_users
    with pytest.raises(SaslAuthenticationFailed, match="Invalid username or password"):
        async with asyncio.timeout(WAIT):
            await create_conn(
                host,
                int(port),
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_plain_username=user,
                sasl_plain_password="not-the-password",
            )

    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        async with producer(**sasl(real_kafka, user, "not-the-password")):
            pass
