"""The Resource Allocator's contract (tests/contract/resources.py) on the embedded broker, and the
cases run here only: requests and releases over Kafka, the task path, quotas set over Kafka, dead
letters and the ``mesh resources`` commands. They check the allocator's own handling, the same on
any broker (Apache Kafka adds its restart under load and two replicas in one group)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mesh.events import (
    DeadLetter,
    Mapper,
    QuotaSet,
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    Resources,
    TaskCompleted,
    meta,
)
from mesh.kafka.dlq import DLQ_HEADERS
from mesh.resources import Decision, request_for_ready
from mesh.settings import Settings
from tests._resources_support import (
    GB,
    TEST,
    create_topics,
    eventually,
    pools_config,
    publisher,
    replayed,
    request,
    running,
    wait_for_records,
)
from tests.contract.brokers import OnEmbedded
from tests.contract.resources import ResourceAllocatorContract
from tests.helpers import run_mesh
from tests.unit.test_resources_tasks import ready

POOLS = pools_config({"id": "p", "nodes": [{"id": "n", "count": 2, "cpu": 2, "memory_mb": 4096}]})


def decisions(settings: Settings, records: list[Any]) -> dict[str, Decision]:
    """The last decision per allocation id among ``resources`` records."""
    mapper, found = Mapper(), dict[str, Decision]()
    for record in records:
        event = mapper.decode(record.value, record.headers)
        if isinstance(event, ResourceAllocated | ResourceQueued | ResourceDenied):
            found[event.allocation_id] = event
    return found


class TestResourcesOnEmbedded(OnEmbedded, ResourceAllocatorContract):
    """The Resource Allocator on the embedded broker."""

    async def test_requests_are_decided_and_task_results_release_them(
        self,
        settings: Settings,
    ) -> None:
        """Four CPUs, three requests for two: two are granted and one waits; when a granted task
        completes, its resources are released and the waiting request gets them."""
        await create_topics(settings)
        asks = [request("t", 2, GB, workflow_id="wf", task_id=f"t{i}", attempt=1) for i in range(3)]
        async with (
            running(settings, pools=POOLS) as service,
            publisher(settings) as pub,
        ):
            await pub.send("resources", *asks)
            ledger = service.allocator.ledger
            await eventually(
                lambda: len(ledger.held) == 2 and len(ledger.waiting) == 1, what="2 + 1"
            )
            [waiting] = ledger.waiting
            first = sorted(set(ledger.held))[0]
            done = ledger.held[first].event
            await pub.send(
                "tasks.results",
                TaskCompleted(
                    **meta(TEST, correlation_id="c"),
                    workflow_id="wf",
                    task_id=done.task_id or "",
                    attempt=1,
                    agent_id="a1",
                ),
            )
            await eventually(lambda: waiting in ledger.held, what="the queued request to get in")
        rebuilt = await replayed(settings)
        assert sorted(rebuilt.ledger.held) == sorted(ledger.held)
        assert rebuilt.get_resource_usage().used == Resources(cpu=4, memory_mb=2 * GB)

    async def test_the_task_path_turns_a_ready_task_into_an_allocation(
        self,
        settings: Settings,
    ) -> None:
        await create_topics(settings)
        async with (
            running(settings, pools=POOLS, consume_ready=True),
            publisher(settings) as pub,
        ):
            await pub.send("tasks.ready", ready("t1", cpu=1))
            found = await wait_for_records(
                settings,
                "resources",
                lambda rs: "wf/t1/1" in decisions(settings, rs),
                what="the ready task's allocation",
            )
        granted = decisions(settings, found)["wf/t1/1"]
        assert isinstance(granted, ResourceAllocated)
        assert granted.task is not None
        assert granted.task.task_id == "t1"
        assert granted.tenant == "acme"

    async def test_quotas_set_over_kafka_deny_a_breach_with_its_reason(
        self,
        settings: Settings,
    ) -> None:
        await create_topics(settings)
        quota = QuotaSet(**meta(TEST, correlation_id="q"), tenant="acme", limits=Resources(cpu=1))
        over = request("acme", 2, GB, allocation_id="over")
        async with (
            running(settings, pools=POOLS) as service,
            publisher(settings) as pub,
        ):
            await pub.send("resources", quota)
            await eventually(lambda: "acme" in service.allocator.ledger.quotas, what="the quota")
            await pub.send("resources", over)
            await eventually(lambda: "over" in service.allocator.ledger.records, what="a decision")
        denied = service.allocator.ledger.records["over"]
        assert isinstance(denied, ResourceDenied)
        assert denied.reason == (
            "quota exceeded: tenant 'acme' may hold at most 1 CPU core at once; "
            "the request asks for 2 CPU cores"
        )
        env = {
            "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "MESH_TOPIC_PREFIX": settings.topic_prefix,
        }
        run = run_mesh("resources", "quotas", "--json", env=env)
        assert run.code == 0, run.stderr
        [row] = json.loads(run.stdout)["quotas"]
        assert row["tenant"] == "acme"
        assert row["limits"]["cpu"] == 1.0
        assert row["limits"]["memory_mb"] is None

    async def test_undecodable_records_go_to_the_dead_letter_topic(
        self, settings: Settings
    ) -> None:
        """On the topics whose dead letters the allocator owns (``DLQ_OWNERS``): the ledger and
        the history (the Workflow Manager owns tasks.results', the Agent Manager tasks.ready's)."""
        await create_topics(settings)
        mapper = Mapper()
        wanted = {settings.topic("workflow.events"), settings.topic("resources")}

        def origins(records: list[Any]) -> set[str]:
            events = [mapper.decode(r.value, r.headers) for r in records]
            return {e.original_topic for e in events if isinstance(e, DeadLetter)}

        async with running(settings, pools=POOLS), publisher(settings) as pub:
            await pub.raw("workflow.events", b"not json", key=b"wf-x")
            await pub.raw("resources", b'{"type": "nope"}', key=b"allocation:x")
            letters = await wait_for_records(
                settings,
                "dlq",
                lambda rs: origins(rs) == wanted,  # at least once: a re-read may add a second copy
                what="a dead letter from each topic",
            )
        events = [mapper.decode(r.value, r.headers) for r in letters]
        assert all(isinstance(e, DeadLetter) for e in events)
        first = next(e for e in events if isinstance(e, DeadLetter))
        assert first.component == "resource-allocator"
        assert first.error_message
        assert {name for name, _ in letters[0].headers} >= set(DLQ_HEADERS)

    async def test_the_resources_commands_read_the_ledger(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        await create_topics(settings)
        pools_file = tmp_path / "pools.yaml"
        pools_file.write_text(
            "pools:\n"
            "  - id: p\n"
            "    nodes: [{id: n, count: 2, cpu: 2, memory_mb: 4096}]\n"
            "  - id: later\n"
            "    nodes: [{id: m, cpu: 1}]\n"
        )
        async with (
            running(settings, pools=POOLS) as service,
            publisher(settings) as pub,
        ):
            await pub.send("resources", request_for_ready(ready("t1", cpu=1), TEST))
            await eventually(lambda: len(service.allocator.ledger.held) == 1, what="an allocation")
        env = {
            "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "MESH_TOPIC_PREFIX": settings.topic_prefix,
            "MESH_RESOURCE_POOLS": str(pools_file),
        }
        usage = run_mesh("resources", "usage", "--json", env=env)
        assert usage.code == 0, usage.stderr
        data = json.loads(usage.stdout)
        assert data["allocations"] == 1
        assert data["used"]["cpu"] == 1.0
        assert [t["tenant"] for t in data["tenants"]] == ["acme"]
        assert [w["workflow_id"] for w in data["workflows"]] == ["wf"]
        pools = run_mesh("resources", "pools", "--json", env=env)
        assert pools.code == 0, pools.stderr
        sources = {p["pool_id"]: p["source"] for p in json.loads(pools.stdout)["pools"]}
        assert sources == {"p": "file+ledger", "later": "file"}
        table = run_mesh("resources", "usage", env=env)
        assert table.code == 0, table.stderr
        assert "acme" in table.stdout
