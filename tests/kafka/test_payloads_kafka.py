"""Payloads by reference on Apache Kafka: chunks written, read back and checked by digest; a
corrupt or missing payload is an error, never used; chunks written in an aborted transaction
are never read."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from mesh.errors import PayloadCorrupt, PayloadMissing
from mesh.events import (
    Mapper,
    PayloadChunk,
    PayloadRef,
    Producer,
    TaskCompleted,
    TaskFailed,
    WorkflowStarted,
    encode_piece,
    meta,
    payload_ref_in,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import producer_kwargs
from mesh.kafka.history import read_history
from mesh.kafka.payloads import CHANNEL, PayloadStore, dumps
from mesh.replay import load_history, replay_workflow
from mesh.settings import Settings
from mesh.workflows import fold
from tests._agents_support import create_topics
from tests.e2e import plan_file, running_mesh, submit, wait_final
from tests.helpers import run_mesh

ME = Producer(component="test", instance="payloads")


@pytest.fixture
async def store(kafka_settings: Settings) -> AsyncIterator[PayloadStore]:
    await create_topics(kafka_settings)
    store = PayloadStore(kafka_settings, Mapper(max_event_bytes=kafka_settings.max_event_bytes), ME)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def producer(kafka_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**producer_kwargs(kafka_settings))
    await producer.start()
    try:
        yield producer
    finally:
        await stop_clients(producer)


async def test_a_5_mb_payload_round_trips_in_chunks_checked_by_digest(
    store: PayloadStore, producer: AIOKafkaProducer
) -> None:
    """5 MB of random bytes go out in 512 KiB chunks and come back equal, found by position and
    (with no position) by key; the reference carries size, digest and chunk count."""
    data = os.urandom(5_000_000)
    ref = await store.put(producer, data, correlation_id="c-1")
    assert ref.size == len(data)
    assert ref.chunks == 10
    assert ref.partition is not None
    assert ref.offset is not None
    assert await store.get(ref) == data
    unplaced = ref.model_copy(update={"partition": None, "offset": None})
    assert await store.get(unplaced) == data


async def test_resolve_replaces_references_inside_json(
    store: PayloadStore, producer: AIOKafkaProducer
) -> None:
    """A reference anywhere in a JSON value is replaced by the value it stands for."""
    big = {"stdout": "x" * 400_000, "exit_code": 0}
    ref = await store.put_json(producer, big, correlation_id="c-2")
    inputs = {"upstream": {"a": ref.as_value(), "b": {"stdout": "small"}}, "n": 1}
    assert await store.resolve(inputs) == {"upstream": {"a": big, "b": {"stdout": "small"}}, "n": 1}


async def test_a_corrupted_chunk_is_reported_not_used(
    kafka_settings: Settings, store: PayloadStore, producer: AIOKafkaProducer
) -> None:
    """A payload one of whose chunks was replaced by other bytes fails its digest check."""
    data = os.urandom(1_500_000)
    ref, outgoing = store.records(data, correlation_id="c-3")
    assert ref.chunks == 3
    bad = PayloadChunk(
        **meta(ME, correlation_id="c-3"),
        payload_id=ref.payload_id,
        index=1,
        count=ref.chunks,
        data=encode_piece(os.urandom(len(data[store.chunk_bytes : 2 * store.chunk_bytes]))),
    )
    key, value, headers = store.mapper.encode(bad)
    topic = kafka_settings.topic(CHANNEL)
    first = await (await producer.send(topic, outgoing[0].value, key=outgoing[0].key))
    await (await producer.send(topic, value, key=key, headers=headers))
    await (await producer.send(topic, outgoing[2].value, key=outgoing[2].key))
    placed = ref.model_copy(update={"partition": first.partition, "offset": first.offset})
    with pytest.raises(PayloadCorrupt, match="sha256"):
        await store.get(placed)
    with pytest.raises(PayloadCorrupt):
        await store.resolve({"upstream": {"a": placed.as_value()}})


async def test_a_missing_payload_is_reported(
    store: PayloadStore, producer: AIOKafkaProducer
) -> None:
    """A reference to chunks that were never written is ``payload_missing``."""
    ref = await store.put(producer, b"{}", correlation_id="c-4")
    ghost = PayloadRef(
        payload_id="never-written",
        size=2,
        sha256=ref.sha256,
        chunks=1,
        partition=ref.partition,
        offset=ref.offset,
    )
    with pytest.raises(PayloadMissing) as raised:
        await store.get(ghost)
    assert raised.value.kind == "payload_missing"


async def test_chunks_of_an_aborted_transaction_are_never_read(
    kafka_settings: Settings, store: PayloadStore
) -> None:
    """Chunks sent in a transaction that aborts are invisible: the reference reads as missing,
    so an event can never lead to an aborted payload."""
    producer = AIOKafkaProducer(
        **producer_kwargs(kafka_settings), transactional_id=f"{kafka_settings.topic_prefix}tx"
    )
    await producer.start()
    try:
        ref, outgoing = store.records(b'{"a": 1}', correlation_id="c-5")
        await producer.begin_transaction()
        sent = await (
            await producer.send(
                kafka_settings.topic(CHANNEL), outgoing[0].value, key=outgoing[0].key
            )
        )
        await producer.abort_transaction()
    finally:
        await stop_clients(producer)
    placed = ref.model_copy(update={"partition": sent.partition, "offset": sent.offset})
    with pytest.raises(PayloadMissing):
        await store.get(placed)


async def test_a_5_mb_output_goes_by_reference_to_its_dependant(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """A Python agent's 5 MB output is stored on ``payloads``; the history and the workflow's
    state carry only its reference (so does the dependant's TaskReady, made from the state),
    and the dependant (another agent process) receives the whole text: the sha256 it reports
    equals the stored payload's."""
    plan = {
        "workflow_type": "dag",
        "tasks": [
            {"id": "big", "capabilities": ["blob"], "inputs": {"bytes": 5_000_000}},
            {"id": "check", "capabilities": ["digest"], "depends_on": ["big"]},
        ],
    }
    async with running_mesh(kafka_settings, shell_agents=0, python_agents=2):
        submitted = await submit(kafka_settings, plan_file(tmp_path, plan))
        state, events = await wait_final(kafka_settings, submitted, idle_timeout=120)
    assert state.status == "completed", state.reason
    ref = payload_ref_in(state.tasks["big"].output)
    assert ref is not None, "the 5 MB output rode inline"
    assert ref.size > 5_000_000
    completed = [e for e in events if isinstance(e, TaskCompleted) and e.task_id == "big"]
    assert payload_ref_in(completed[0].output) == ref
    store = PayloadStore(kafka_settings, Mapper(max_event_bytes=kafka_settings.max_event_bytes), ME)
    try:
        output = await store.resolve(state.tasks["big"].output)
    finally:
        await store.close()
    text = output["text"].encode()
    assert len(text) == 5_000_000
    assert state.tasks["check"].output == {
        "big": {"sha256": hashlib.sha256(text).hexdigest(), "bytes": 5_000_000}
    }
    replay = await replay_workflow(kafka_settings, submitted.workflow_id)
    assert replay.equal is True, replay.differences
    exported = tmp_path / "wf.jsonl"
    done = run_mesh(
        "replay",
        submitted.workflow_id,
        "--export",
        str(exported),
        "--json",
        env=kafka_settings.to_env(),
    )
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["payloads"] == 1  # the 5 MB output travels with the file


async def test_an_agent_given_a_corrupt_or_missing_payload_fails_the_task(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Inputs that reference a payload with a bad chunk, or one never written, fail their task
    with ``payload_corrupt`` / ``payload_missing``, not retriable; the agent never runs it."""
    async with running_mesh(kafka_settings, shell_agents=0, python_agents=1):
        store = PayloadStore(
            kafka_settings, Mapper(max_event_bytes=kafka_settings.max_event_bytes), ME
        )
        producer = AIOKafkaProducer(**producer_kwargs(kafka_settings))
        await producer.start()
        try:
            good = await store.put_json(producer, "y" * 600_000, correlation_id="c")
            ref, outgoing = store.records(dumps("z" * 600_000), correlation_id="c")
            topic = kafka_settings.topic(CHANNEL)
            first = await (await producer.send(topic, outgoing[0].value, key=outgoing[0].key))
            bad = store.mapper.decode(outgoing[1].value)
            assert isinstance(bad, PayloadChunk)
            flipped = bad.model_copy(update={"data": encode_piece(b"z" * 5 + b"Z")})
            key, value, headers = store.mapper.encode(flipped)
            await (await producer.send(topic, value, key=key, headers=headers))
        finally:
            await stop_clients(producer)
        corrupt = ref.model_copy(update={"partition": first.partition, "offset": first.offset})
        missing = good.model_copy(update={"payload_id": "never-written"})
        plan = {
            "workflow_type": "parallel",
            "failure_policy": "continue",
            "tasks": [
                {"id": "ok", "capabilities": ["echo"], "inputs": {"text": good.as_value()}},
                {"id": "bad", "capabilities": ["echo"], "inputs": {"text": corrupt.as_value()}},
                {"id": "gone", "capabilities": ["echo"], "inputs": {"text": missing.as_value()}},
            ],
        }
        submitted = await submit(kafka_settings, plan_file(tmp_path, plan))
        state, events = await wait_final(kafka_settings, submitted, idle_timeout=120)
        try:
            echoed = await store.resolve(state.tasks["ok"].output)
        finally:
            await store.close()
    failed = {e.task_id: e for e in events if isinstance(e, TaskFailed)}
    assert set(failed) == {"bad", "gone"}
    assert failed["bad"].error_kind == "payload_corrupt"
    assert "sha256" in failed["bad"].message
    assert failed["gone"].error_kind == "payload_missing"
    assert not failed["bad"].retriable
    assert not failed["gone"].retriable
    assert state.tasks["ok"].status == "succeeded"
    assert payload_ref_in(state.tasks["ok"].output) is not None  # 600 kB: by reference too
    assert echoed == {"text": "y" * 600_000}, "the referenced input did not arrive whole"


async def test_a_plan_over_the_threshold_goes_by_reference_and_runs(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """A 2,500-task plan (1.1 MB of JSON, over the 1 MB event limit) is submitted by
    reference: PlanCreated and the recorded workflow.started carry only its PayloadRef, the
    Workflow Manager fetches it, every task runs, and replay (which fetches it too) equals the
    live snapshot."""
    tasks = [{"id": f"n{i:04d}", "capabilities": ["noop"]} for i in range(2_500)]
    path = plan_file(tmp_path, {"workflow_type": "parallel", "tasks": tasks})
    async with running_mesh(
        kafka_settings, shell_agents=0, python_agents=4, planner=False, resources=False
    ):
        submitted = await submit(kafka_settings, path)
        state, _ = await wait_final(kafka_settings, submitted, idle_timeout=180)
    assert state.status == "completed", state.reason
    assert len(state.tasks) == 2_500
    assert {task.status for task in state.tasks.values()} == {"succeeded"}
    history = await read_history(kafka_settings, submitted.workflow_id)
    started = history.records[0]
    assert isinstance(started.event, WorkflowStarted)
    assert started.event.plan is not None  # fetched by the reader
    assert started.raw is not None
    recorded = json.loads(started.raw)
    assert recorded["plan"] is None
    assert recorded["plan_ref"]["size"] > kafka_settings.max_event_bytes
    replay = await replay_workflow(kafka_settings, submitted.workflow_id)
    assert replay.equal is True, replay.differences
    # The export holds the plan's chunks, so the file alone replays to the live state.
    exported = tmp_path / "wf.jsonl"
    env = kafka_settings.to_env()
    done = run_mesh("replay", submitted.workflow_id, "--export", str(exported), "--json", env=env)
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["payloads"] == 1
    mapper = Mapper(max_event_bytes=kafka_settings.max_event_bytes)
    from_file = load_history(exported, mapper)
    assert fold(r.event for r in from_file) == state
    done = run_mesh("replay", "--from-file", str(exported), "--json", env=env)
    assert done.code == 0, done.stderr
