"""The planner's FastStream handlers, in memory (TestKafkaBroker): requests in, plans out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from mesh.events import (
    DeadLetter,
    Mapper,
    PlanCreated,
    PlanRejected,
    Producer,
    TaskRequest,
    TaskSpec,
    meta,
)
from mesh.planner import workflow_id_for
from mesh.planner.runtime import PlannerService
from mesh.settings import Settings

ME = Producer(component="client", instance="c-1")
MAPPER = Mapper()


def request(task_type: str, request_id: str) -> TaskRequest:
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        description="Add a flag",
    )


class Sink:
    """Records what the service publishes, as a consumer would see it (key, value, headers)."""

    def __init__(self, service: PlannerService) -> None:
        self.records: dict[str, list[Any]] = {"plans": [], "dlq": []}
        for channel, records in self.records.items():
            subscriber = service.broker.subscriber(service.settings.topic(channel))
            subscriber(self._recorder(records))

    @staticmethod
    def _recorder(records: list[Any]) -> Any:
        async def record(message: KafkaMessage) -> None:
            records.append(message.raw_message)

        return record

    def events(self, channel: str) -> list[Any]:
        return [MAPPER.decode(r.value, r.headers) for r in self.records[channel]]


@pytest.fixture
async def service() -> AsyncIterator[tuple[PlannerService, Sink]]:
    settings = Settings(topic_prefix="unit.")
    planner_service = PlannerService(settings, group_id="unit-planner")
    planner_service.caught_up.set()  # nothing to replay in memory
    sink = Sink(planner_service)
    async with TestKafkaBroker(planner_service.broker):
        yield planner_service, sink


async def publish(
    service: PlannerService, value: bytes, key: bytes, headers: Sequence[Any]
) -> None:
    await service.broker.publish(
        value,
        service.settings.topic("requests"),
        key=key,
        headers={name: v.decode() for name, v in headers},
    )


async def test_a_request_becomes_a_plan_keyed_by_its_workflow(
    service: tuple[PlannerService, Sink],
) -> None:
    planner_service, sink = service
    key, value, headers = MAPPER.encode(request("feature", "r-1"))
    await publish(planner_service, value, key, headers)
    (event,) = sink.events("plans")
    assert isinstance(event, PlanCreated)
    assert event.workflow_id == workflow_id_for("r-1")
    assert event.producer.component == "task-planner"
    assert sink.records["plans"][0].key == event.workflow_id.encode()
    assert sink.events("dlq") == []


async def test_an_unknown_type_is_rejected_and_nothing_is_planned(
    service: tuple[PlannerService, Sink],
) -> None:
    planner_service, sink = service
    key, value, headers = MAPPER.encode(request("deploy", "r-2"))
    await publish(planner_service, value, key, headers)
    (event,) = sink.events("plans")
    assert isinstance(event, PlanRejected)
    assert event.reason.startswith("unknown_type: ")


async def test_an_unreadable_request_goes_to_the_dead_letter_queue(
    service: tuple[PlannerService, Sink],
) -> None:
    planner_service, sink = service
    await publish(planner_service, b'{"type": "request.submitted"}', b"k", [])
    assert sink.events("plans") == []
    (letter,) = sink.events("dlq")
    assert isinstance(letter, DeadLetter)
    assert letter.component == "task-planner"
    assert letter.error_class == "InvalidEvent"
    assert letter.original_topic == "unit.requests"
    assert sink.records["dlq"][0].key == b"k"


async def test_the_unknown_type_hook_can_supply_tasks() -> None:
    async def ask_an_agent(req: TaskRequest) -> Sequence[TaskSpec] | None:
        if req.task_type != "deploy":
            return None
        return [
            TaskSpec(task_id="ship", name="ship"),
            TaskSpec(task_id="tell", name="tell", depends_on=["ship"]),
        ]

    settings = Settings(topic_prefix="unit.")
    planner_service = PlannerService(settings, unknown_type_hook=ask_an_agent)
    planner_service.caught_up.set()
    sink = Sink(planner_service)
    async with TestKafkaBroker(planner_service.broker):
        for task_type, request_id in (("deploy", "r-3"), ("launch", "r-4")):
            key, value, headers = MAPPER.encode(request(task_type, request_id))
            await publish(planner_service, value, key, headers)
    created, rejected = sink.events("plans")
    assert isinstance(created, PlanCreated)
    assert created.plan is not None
    assert [t.task_id for t in created.plan.tasks] == ["ship", "tell"]
    assert isinstance(rejected, PlanRejected)


async def test_a_failing_hook_is_answered_and_the_request_kept_for_redrive() -> None:
    async def broken(req: TaskRequest) -> Sequence[TaskSpec] | None:
        raise ValueError("the planner agent answered nonsense")

    planner_service = PlannerService(Settings(topic_prefix="unit."), unknown_type_hook=broken)
    planner_service.caught_up.set()
    sink = Sink(planner_service)
    async with TestKafkaBroker(planner_service.broker):
        key, value, headers = MAPPER.encode(request("deploy", "r-5"))
        await publish(planner_service, value, key, headers)
    (rejected,) = sink.events("plans")
    assert isinstance(rejected, PlanRejected)
    assert rejected.reason == "internal: ValueError: the planner agent answered nonsense"
    (letter,) = sink.events("dlq")
    assert letter.error_class == "ValueError"
