"""No record stalls a consumer, and each bad record gets exactly one dead letter: a poison record
of each kind on every input topic of a running mesh (all components and an agent as real
processes) is dead-lettered once, by the topic's owner (``mesh.kafka.dlq.DLQ_OWNERS``), with its
reason and origin; the valid records behind it on the same partition are processed.

The kinds: JSON nested 100,000 deep (FastStream's own decoder raised ``RecursionError`` on it and
redelivered it forever), a value that is not UTF-8, a 2 MB value, a schema version this build
does not read, a record with no key (not on compacted topics, where Kafka refuses it), and a
mesh header that is not UTF-8 (FastStream's parser used to fail on that before any decoder ran).
A tombstone on a compacted topic is not bad: it gets no dead letter.

One mesh runs the whole case: the poisons go first, then the valid records (a request, a call,
a workflow's plan — whose ready task, assignment, results and history then follow on their
partitions — a command, an agent command, tombstones). "Exactly once" is checked only after
every consumer group that reads a poisoned partition has committed past everything on it, so
a second dead letter from a late consumer could not be missed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh.client import load_plan_file
from mesh.events import (
    CHANNELS,
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    ApiCall,
    CancelWorkflow,
    ConsumedRecord,
    DeadLetter,
    Event,
    Mapper,
    PlanCreated,
    Producer,
    Reply,
    TaskRequest,
    TerminateAgent,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.kafka.dlq import DLQ_OWNERS
from mesh.kafka.partitions import partition_for, partitions_of
from mesh.planner import workflow_id_for
from mesh.settings import Settings
from tests.contract.brokers import Contract
from tests.e2e import eventually, running_mesh

MAPPER = Mapper()
ME = Producer(component="test-client", instance="t-1")
WAIT = 180.0
WORKFLOW = "wf-poison"


@dataclass(frozen=True)
class Record:
    """One record as sent, and (for a poison) the dead letter it must get."""

    kind: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    error_class: str = ""
    reason: str = ""

    @property
    def poison(self) -> bool:
        return self.kind not in ("valid", "tombstone")


def poisons(base: Event, key: bytes, *, compacted: bool = False) -> list[Record]:
    """One poison record of each kind, made from the valid event ``base``, keyed ``key``."""
    _, value, headers = MAPPER.encode(base)
    data = json.loads(value)

    def changed(**fields: Any) -> bytes:
        return json.dumps({**data, **fields}).encode()

    def header(name: str, raw: bytes) -> list[tuple[str, bytes]]:
        return [(n, raw if n == name else v) for n, v in headers]

    deep = value[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    not_utf8 = value.replace(base.correlation_id.encode(), b"caf\xe9")
    kinds = [
        Record("deep", key, deep, headers, "InvalidEvent", "nests objects and arrays over 64"),
        Record("utf8", key, not_utf8, headers, "InvalidEvent", "the value is not UTF-8 text"),
        Record(
            "2MB",
            key,
            changed(note="x" * 2_000_000),
            headers,
            "EventTooLarge",
            "over the limit of 1000000 bytes",
        ),
        Record(
            "version",
            key,
            changed(schema_version=99),
            header(HEADER_SCHEMA_VERSION, b"99"),
            "UnknownEventType",
            "v99 is newer than this build reads",
        ),
        Record(
            "header",
            key,
            value,
            header(HEADER_TYPE, b"\xffnope"),
            "InvalidEvent",
            "header mesh-type is not UTF-8 text",
        ),
    ]
    if not compacted:  # Kafka refuses a record without a key on a compacted topic
        kinds.append(Record("no key", None, value, headers, "InvalidEvent", "has no key"))
    return kinds


def valid(event: Event) -> Record:
    key, value, headers = MAPPER.encode(event)
    return Record("valid", key, value, headers)


def tombstone(key: bytes) -> Record:
    return Record("tombstone", key, None, [])


@dataclass
class Sent:
    """What went to one partition of one channel: the records and their offsets."""

    channel: str
    partition: int
    records: list[Record]
    offsets: list[int]


async def send(
    producer: AIOKafkaProducer,
    settings: Settings,
    channel: str,
    partition: int,
    records: list[Record],
) -> Sent:
    """Send ``records`` in order to one partition of ``channel``."""
    offsets = []
    for r in records:
        sent = await producer.send_and_wait(
            settings.topic(channel), r.value, key=r.key, headers=r.headers, partition=partition
        )
        offsets.append(sent.offset)
    return Sent(channel, partition, records, offsets)


def compressed_producer(settings: Settings) -> AIOKafkaProducer:
    """Compressed, so that a 2 MB value fits a topic whose records are limited to 1 MiB on real
    Kafka (the limit applies to the compressed batch): it reaches the consumers whole."""
    return AIOKafkaProducer(
        **client_kwargs(settings),
        acks="all",
        compression_type="gzip",
        max_request_size=8 * 1024 * 1024,
    )


async def partition_counts(settings: Settings) -> dict[str, int]:
    """Channel → its number of partitions on the broker."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings))
    try:
        await consumer.start()
        return {c: len(await partitions_of(consumer, settings, c)) for c in CHANNELS}
    finally:
        await stop_clients(consumer)


async def raw_records(settings: Settings, channel: str, partition: int) -> list[ConsumedRecord]:
    """Every record of one partition right now (read up to its end offset)."""
    tp = TopicPartition(settings.topic(channel), partition)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        auto_offset_reset="earliest",  # no race with a reset to the end on assignment
    )
    found: list[ConsumedRecord] = []
    try:
        await consumer.start()
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + WAIT
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {tp} to {end} within {WAIT} s")
            batch = await consumer.getmany(tp, timeout_ms=200)
            found.extend(batch.get(tp, ()))
    finally:
        await stop_clients(consumer)
    return found


def readable(records: list[ConsumedRecord]) -> list[Event]:
    """The events among ``records`` (poison records are what this test sends: left out)."""
    events = []
    for record in records:
        if record.value is None:
            continue
        try:
            events.append(MAPPER.decode(record.value, record.headers))
        except Exception:  # noqa: S112 - a poison record of this test
            continue
    return events


async def committed(settings: Settings, group: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=group, enable_auto_commit=False)
    try:
        await consumer.start()
        return int(await consumer.committed(tp) or 0)
    finally:
        await stop_clients(consumer)


def readers(settings: Settings, agent_id: str) -> dict[str, tuple[str, ...]]:
    """Channel → the consumer groups of the running mesh that read it and commit."""
    g = settings.group
    return {
        "requests": (g("planner"),),
        "plans": (g("workflows"),),
        "commands": (g("workflows"),),
        "tasks.results": (g("workflows"), g("resources")),
        "tasks.ready": (g("agent-manager"), g("resources")),
        "tasks.assigned": (g("agent-manager-guard"), g(f"agent.{agent_id}")),
        "workflow.events": (g("resources"),),
        "calls": tuple(
            g(f"{c}-calls") for c in ("workflows", "planner", "agent-manager", "resources")
        ),
        "agents": (g("agent-manager-registry"),),
        "agents.heartbeats": (g("agent-manager-guard"), g("resources-ledger")),
        "agents.commands": (g("agent-manager-commands"),),
        "breakers": (g("agent-manager-guard"),),
        "resources": (g("resources-ledger"),),
    }


async def all_read(settings: Settings, groups: tuple[str, ...], sent: Sent, end: int) -> bool:
    tp = TopicPartition(settings.topic(sent.channel), sent.partition)
    return all([await committed(settings, group, tp) >= end for group in groups])


def check_letters(settings: Settings, letters: list[DeadLetter], everything: list[Sent]) -> None:
    """Each poison has exactly one dead letter, by its topic's owner, with its reason and
    origin; nothing else sent here has one."""
    by_origin: dict[tuple[str, int, int], list[DeadLetter]] = {}
    for letter in letters:
        origin = (letter.original_topic, letter.original_partition, letter.original_offset)
        by_origin.setdefault(origin, []).append(letter)
    problems: list[object] = []
    for sent in everything:
        topic = settings.topic(sent.channel)
        for record, offset in zip(sent.records, sent.offsets, strict=True):
            found = by_origin.get((topic, sent.partition, offset), [])
            what = (sent.channel, record.kind, [(x.component, x.error_message) for x in found])
            if not record.poison:
                if found:
                    problems.append(what)
                continue
            if len(found) != 1:
                problems.append(what)
                continue
            (letter,) = found
            # The registry guard refuses what the registry cannot read, saying why.
            expected = "RegistrationRefused" if sent.channel == "agents" else record.error_class
            if (
                letter.component != DLQ_OWNERS[sent.channel]
                or letter.error_class != expected
                or record.reason not in letter.error_message
                or letter.original_key != (record.key.decode() if record.key else None)
            ):
                problems.append((*what, letter.error_class))
    assert problems == [], problems


def plan_created(tmp_path: Path, marker: Path) -> PlanCreated:
    """A one-task workflow whose command leaves ``marker`` behind (no shell)."""
    command = ["python3", "-c", "import sys; open(sys.argv[1], 'w').write('ran')", str(marker)]
    path = tmp_path / "plan.yaml"
    task = {"id": "only", "capabilities": ["shell"], "command": command}
    path.write_text(json.dumps({"workflow_type": "dag", "tasks": [task]}))
    plan = load_plan_file(path).plan.model_copy(update={"plan_id": WORKFLOW})
    return PlanCreated(
        **meta(ME, correlation_id=f"req-{WORKFLOW}"),
        workflow_id=WORKFLOW,
        request_id=f"req-{WORKFLOW}",
        plan=plan,
    )


class PoisonRecordsContract(Contract):
    """Every input topic of a running mesh gets past every kind of poison record."""

    async def test_every_input_topic_dead_letters_each_poison_once_and_goes_on(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        async with running_mesh(settings, shell_agents=1, python_agents=0) as mesh:
            agent_id = mesh.agent_id("shell-1")
            base = TaskRequest(
                **meta(ME, correlation_id="req-ok"),
                request_id="req-ok",
                task_type="feature",
                description="Add a --json flag",
            )
            keys = {
                "requests": "req-ok",
                "calls": "call-ok",
                "plans": WORKFLOW,
                "commands": WORKFLOW,
                "tasks.ready": WORKFLOW,
                "tasks.results": WORKFLOW,
                "workflow.events": WORKFLOW,
                "tasks.assigned": agent_id,
                "agents.heartbeats": agent_id,
                "agents.commands": "nobody",
                "agents": "fake-agent",
                "breakers": "agent:fake-agent",
                "resources": "quota:poison",
            }
            assert set(keys) == set(DLQ_OWNERS)  # every input topic of the mesh
            counts = await partition_counts(settings)

            def where(key: str, channel: str) -> int:
                """The partition a key lands on, as the mesh's producers choose it."""
                return partition_for(key, counts[channel])

            part = {c: where(k, c) for c, k in keys.items()}
            everything: dict[str, Sent] = {}
            producer = compressed_producer(settings)
            await producer.start()
            try:
                # 1. The poisons, first on every partition the valid records take.
                for channel, key in keys.items():
                    compacted = CHANNELS[channel].cleanup == "compact"
                    records = poisons(base, key.encode(), compacted=compacted)
                    everything[channel] = await send(
                        producer, settings, channel, part[channel], records
                    )

                async def also(channel: str, *records: Record) -> None:
                    more = await send(producer, settings, channel, part[channel], list(records))
                    everything[channel].records.extend(more.records)
                    everything[channel].offsets.extend(more.offsets)

                # 2. The valid records behind them.
                call = ApiCall(
                    **meta(ME, correlation_id="call-ok"),
                    component="workflow-manager",
                    method="get_workflow_status",
                    args={"workflow_id": "wf-nobody"},
                    timeout_ms=600_000,
                )
                await also("requests", valid(base))
                await also("calls", valid(call))
                marker = tmp_path / "ran"
                await also("plans", valid(plan_created(tmp_path, marker)))
                terminate = TerminateAgent(
                    **meta(ME, correlation_id="terminate-nobody"), agent_id="nobody"
                )
                await also("agents.commands", valid(terminate))
                for channel in ("agents", "breakers", "resources"):
                    await also(channel, tombstone(keys[channel].encode()))
            finally:
                await stop_clients(producer)

            # The request is planned, the call answered, the workflow completed: its ready
            # task, assignment, results and history all came behind poisons.
            async def planned() -> bool:
                planned_as = where(workflow_id_for("req-ok"), "plans")
                events = readable(await raw_records(settings, "plans", planned_as))
                return any(getattr(e, "request_id", "") == "req-ok" for e in events)

            async def answered() -> bool:
                replies = await raw_records(settings, "replies", where("call-ok", "replies"))
                events = readable(replies)
                return any(isinstance(e, Reply) and e.correlation_id == "call-ok" for e in events)

            async def completed() -> bool:
                events = readable(
                    await raw_records(settings, "workflow.events", part["workflow.events"])
                )
                return any(
                    e.type == "workflow.completed" and getattr(e, "workflow_id", "") == WORKFLOW
                    for e in events
                )

            await eventually(planned, within=WAIT, what="the plan of req-ok")
            await eventually(answered, within=WAIT, what="the reply to call-ok")
            await eventually(completed, within=WAIT, what=f"{WORKFLOW} to complete")
            assert marker.read_text() == "ran"
            # A command behind the poisons on commands (the workflow has ended: no effect).
            producer = compressed_producer(settings)
            await producer.start()
            try:
                cancel = CancelWorkflow(**meta(ME, correlation_id="cancel"), workflow_id=WORKFLOW)
                await also("commands", valid(cancel))
            finally:
                await stop_clients(producer)

            # Every group that reads a poisoned partition has committed past all of it.
            groups = readers(settings, agent_id)
            for channel, sent in everything.items():
                # Past the last record (a transaction's marker after it is never committed).
                seen = await raw_records(settings, channel, sent.partition)
                last = seen[-1].offset
                end = max(last, sent.offsets[-1]) + 1

                async def done(channel: str = channel, sent: Sent = sent, end: int = end) -> bool:
                    return await all_read(settings, groups[channel], sent, end)

                await eventually(done, within=WAIT, what=f"every reader of {channel} past {end}")
            dlq = settings.topic("dlq")
            letters = [
                e
                for p in range(counts["dlq"])
                for e in readable(await raw_records(settings, "dlq", p))
                if isinstance(e, DeadLetter) and e.original_topic != dlq
            ]
            assert mesh.supervisor.children  # the mesh ran all along
            for name, child in mesh.supervisor.children.items():
                assert child.running, f"{name} exited"
        check_letters(settings, letters, list(everything.values()))
