"""Kafka client plumbing: ``stop_clients`` stops every client even when its caller is cancelled
half-way; partition lookups tell a slow broker from a missing topic."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaError

from mesh._aio import cancel_and_wait
from mesh.errors import BrokerError, ConfigError
from mesh.kafka.clients import stop_clients
from mesh.kafka.partitions import topic_partitions
from mesh.settings import Settings


class _Client:
    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails
        self.started_stopping = asyncio.Event()
        self.release = asyncio.Event()
        self.stopped = False

    async def stop(self) -> None:
        self.started_stopping.set()
        await self.release.wait()
        if self.fails:
            raise RuntimeError("broker gone")
        self.stopped = True


class _Admin:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_every_client_stops_although_the_caller_is_cancelled_meanwhile() -> None:
    first, second = _Client(), _Client()
    second.release.set()
    owner = asyncio.create_task(stop_clients(first, None, second))
    await asyncio.wait_for(first.started_stopping.wait(), 5)
    owner.cancel()
    owner.cancel()  # a second cancel (a timeout on top of a shutdown) changes nothing
    await asyncio.sleep(0)
    assert not owner.done()  # still waiting for the first client
    first.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(owner, 5)
    assert first.stopped
    assert second.stopped


async def test_a_failing_stop_does_not_leave_the_others_open() -> None:
    failing, other, admin = _Client(fails=True), _Client(), _Admin()
    failing.release.set()
    other.release.set()
    await asyncio.wait_for(stop_clients(failing, other, admin), 5)
    assert other.stopped
    assert admin.closed
    assert not failing.stopped


class _Cluster:
    def __init__(self, topics: dict[str, set[int]]) -> None:
        self._topics = topics

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._topics.get(topic)


class _Metadata:
    """An ``AIOKafkaClient`` whose first ``failures`` metadata requests time out."""

    def __init__(self, failures: int, topics: dict[str, set[int]]) -> None:
        self.failures, self.asked, self.topics = failures, 0, topics

    async def fetch_all_metadata(self) -> _Cluster:
        self.asked += 1
        if self.asked <= self.failures:
            raise KafkaError("Unable to get cluster metadata over all known brokers")
        return _Cluster(self.topics)


async def test_a_slow_metadata_answer_is_asked_again_not_taken_for_a_missing_topic() -> None:
    client = _Metadata(failures=2, topics={"t.dlq": {2, 0, 1}})
    assert await topic_partitions(client, Settings(), "t.dlq") == [0, 1, 2]
    assert client.asked == 3


async def test_a_broker_that_never_answers_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match="could not read the cluster's metadata") as caught:
        await topic_partitions(_Metadata(failures=99, topics={}), Settings(), "t.dlq")
    assert not isinstance(caught.value, ConfigError)


async def test_a_missing_topic_says_how_to_create_it() -> None:
    with pytest.raises(ConfigError, match=r"topic t\.dlq does not exist; create it with"):
        await topic_partitions(_Metadata(failures=0, topics={}), Settings(), "t.dlq")


async def test_cancel_and_wait_ends_helpers_but_never_swallows_the_owners_cancel() -> None:
    release = asyncio.Event()
    ended: list[str] = []

    async def stubborn() -> None:  # takes a while to end once cancelled
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()
            ended.append("stubborn")

    async def failing() -> None:
        raise RuntimeError("helper failed")

    helpers = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    owner = asyncio.create_task(cancel_and_wait(*helpers, None))
    await asyncio.sleep(0)
    owner.cancel()
    await asyncio.sleep(0)
    assert not owner.done()  # waits for the stubborn helper to end
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(owner, 5)
    assert ended == ["stubborn"]
    assert all(task.done() for task in helpers)


async def test_cancel_and_wait_returns_quietly_when_only_the_helpers_fail() -> None:
    async def failing() -> None:
        raise RuntimeError("helper failed")

    helper = asyncio.create_task(failing())
    await asyncio.wait_for(cancel_and_wait(helper), 5)
    assert helper.done()
