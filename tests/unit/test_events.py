"""The event models: envelope, ids, immutability, strictness, validators, registry and catalog."""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

import pytest
from pydantic import ValidationError

import mesh.events as events
from mesh.errors import UnknownEventType
from mesh.events import (
    CHANNELS,
    COMPONENTS,
    REGISTRY,
    Backoff,
    Event,
    EventRegistry,
    ExecutionPlan,
    Producer,
    Reply,
    ReplyError,
    TaskCompleted,
    TaskSpec,
    WorkflowEvent,
    _ids,
    channels_of,
    meta,
    uuid7,
    uuid7_time,
)
from tests.unit.test_events_samples import PRODUCER, WHEN, sample_event, sample_request

DESIGN_CHANNELS = [
    "requests",
    "plans",
    "commands",
    "workflow.events",
    "workflow.state",
    "tasks.ready",
    "tasks.assigned",
    "tasks.results",
    "agents",
    "agents.heartbeats",
    # Not in DESIGN.md's table: lifecycle requests to the Agent Manager (mesh agents spawn),
    # answered on replies. `commands` is keyed by workflow id and read by the Workflow Manager.
    "agents.commands",
    "resources",
    "breakers",
    # Not in DESIGN.md's table: calls of the client API (mesh.Client) to any component,
    # answered on replies like the commands.
    "calls",
    "tasks.output",
    "payloads",
    "replies",
    "dlq",
]


def completed(**overrides: Any) -> TaskCompleted:
    fields: dict[str, Any] = {
        **meta(PRODUCER, correlation_id="req-1", occurred_at=WHEN),
        "workflow_id": "wf-1",
        "task_id": "t1",
        "attempt": 1,
        "agent_id": "agent-1",
        "output": {"answer": 42},
    }
    return TaskCompleted(**{**fields, **overrides})


# --- UUIDv7 ---------------------------------------------------------------------------------


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Let a test drive the generator's clock; its memory of the last id is restored after."""
    monkeypatch.setattr(_ids, "_last_ms", _ids._last_ms)
    monkeypatch.setattr(_ids, "_counter", _ids._counter)
    return monkeypatch


def test_uuid7_sets_version_and_variant_bits() -> None:
    """Generated ids are RFC 9562 version 7, variant 10."""
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_carries_the_current_millisecond() -> None:
    """The 48-bit prefix is the Unix time in ms, readable back with uuid7_time."""
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    made = uuid7_time(uuid7())
    assert before <= made <= datetime.now(UTC) + timedelta(milliseconds=5)


def test_uuid7_is_strictly_increasing_within_one_millisecond(
    fake_clock: pytest.MonkeyPatch,
) -> None:
    """Thousands of ids in the same ms still sort in creation order (the counter, then a borrow)."""
    fake_clock.setattr(_ids, "_now_ms", lambda: 1_900_000_000_000)
    made = [uuid7() for _ in range(10_000)]  # > 4096: forces borrowing later milliseconds
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert uuid7_time(made[-1]) > uuid7_time(made[0])  # the 12-bit counter ran out: next ms


def test_uuid7_sorts_by_time_across_milliseconds(fake_clock: pytest.MonkeyPatch) -> None:
    """An id made later sorts after, whatever the random bits are."""
    clock = iter((2_000_000_000_000, 2_000_000_000_001, 2_000_000_000_900))
    fake_clock.setattr(_ids, "_now_ms", lambda: next(clock))
    first, second, third = uuid7(), uuid7(), uuid7()
    assert first < second < third
    assert uuid7_time(third) - uuid7_time(first) == timedelta(milliseconds=900)


def test_uuid7_stays_monotonic_when_the_clock_steps_back(fake_clock: pytest.MonkeyPatch) -> None:
    """A wall-clock step backwards (NTP) must not produce an id that sorts earlier."""
    clock = iter((2_100_000_000_000, 2_099_999_999_000))
    fake_clock.setattr(_ids, "_now_ms", lambda: next(clock))
    first, second = uuid7(), uuid7()
    assert second > first


def test_uuid7_time_rejects_other_versions() -> None:
    with pytest.raises(ValueError, match="version 4"):
        uuid7_time(uuid.uuid4())


# --- envelope -------------------------------------------------------------------------------


def test_meta_carries_correlation_and_causation_from_the_cause() -> None:
    """A follow-up event keeps the request's correlation id and points at its cause."""
    request = sample_request()
    follow_up = completed(**meta(PRODUCER, causation=request))
    assert follow_up.correlation_id == request.correlation_id == "req-1"
    assert follow_up.causation_id == request.event_id
    assert follow_up.event_id.version == 7
    assert follow_up.occurred_at.tzinfo is UTC


def test_meta_explicit_correlation_wins_and_one_source_is_required() -> None:
    request = sample_request()
    assert meta(PRODUCER, causation=request, correlation_id="other")["correlation_id"] == "other"
    with pytest.raises(ValueError, match="correlation_id"):
        meta(PRODUCER)


def test_event_fixes_type_and_version_and_key() -> None:
    event = completed()
    assert (event.type, event.schema_version) == ("task.completed", 1)
    assert (TaskCompleted.event_type(), TaskCompleted.event_version()) == ("task.completed", 1)
    assert event.key == "wf-1"
    with pytest.raises(ValidationError, match=r"task\.completed"):
        completed(type="task.failed")
    with pytest.raises(ValidationError):
        completed(schema_version=2)


def test_events_are_frozen() -> None:
    """Once made, an event cannot change (replay depends on it)."""
    event = completed()
    with pytest.raises(ValidationError, match="frozen"):
        event.attempt = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempt", "1"),  # no str -> int coercion
        ("attempt", 1.0),  # no float -> int coercion
        ("agent_id", 7),  # no int -> str coercion
        ("output", [("a", 1)]),  # no pairs -> dict coercion
    ],
)
def test_events_are_strict(field: str, value: object) -> None:
    """Strict mode: Python values are not coerced, so a producer bug fails where it is made."""
    with pytest.raises(ValidationError, match=field):
        completed(**{field: value})


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        completed(colour="blue")


def test_naive_datetimes_are_rejected_and_aware_ones_normalised_to_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        completed(occurred_at=datetime(2030, 1, 1))  # naive on purpose
    paris = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=1)))
    event = completed(occurred_at=paris)
    assert event.occurred_at == paris
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.hour == 11


def test_event_id_must_be_a_uuid7() -> None:
    """Only time-ordered ids are accepted, so ids sort by creation everywhere."""
    with pytest.raises(ValidationError, match="version 7"):
        completed(event_id=uuid.uuid4())


def test_lists_are_accepted_for_sequences_and_frozen_into_tuples() -> None:
    task = TaskSpec(task_id="t", name="T", depends_on=[], command=["echo", "hi"])
    assert task.command == ("echo", "hi")


def test_strict_models_still_read_json_strings_for_uuids_and_datetimes() -> None:
    """JSON has no UUID or datetime type: model_validate_json accepts their string forms."""
    event = completed()
    assert TaskCompleted.model_validate_json(event.model_dump_json()) == event
    with pytest.raises(ValidationError):  # the same data as a Python dict is (rightly) too loose
        TaskCompleted.model_validate(event.model_dump(mode="json"))


def test_the_bare_envelope_cannot_be_instantiated() -> None:
    """``Event`` has no subject key; only concrete events can be made."""
    with pytest.raises(TypeError, match="abstract"):
        Event(**meta(PRODUCER, correlation_id="r"), type="x.y", schema_version=1)  # type: ignore[abstract]


# --- model validators -----------------------------------------------------------------------


def _plan(*tasks: TaskSpec) -> ExecutionPlan:
    return ExecutionPlan(plan_id="p", workflow_type="dag", tasks=tasks)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([TaskSpec(task_id="a", name="A"), TaskSpec(task_id="a", name="B")], "more than once"),
        ([TaskSpec(task_id="a", name="A", depends_on=["zz"])], "unknown task 'zz'"),
        ([TaskSpec(task_id="a", name="A", depends_on=["a"])], "depends on itself"),
    ],
)
def test_plans_must_reference_their_own_tasks(tasks: list[TaskSpec], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _plan(*tasks)


def test_plan_needs_at_least_one_task_and_finds_tasks_by_id() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        _plan()
    plan = _plan(TaskSpec(task_id="a", name="A"), TaskSpec(task_id="b", name="B", depends_on=["a"]))
    assert plan.task("b").depends_on == ("a",)
    with pytest.raises(KeyError):
        plan.task("c")


def test_reply_has_an_error_exactly_when_it_failed() -> None:
    envelope = meta(PRODUCER, correlation_id="call-1")
    assert Reply(**envelope, ok=True, result={"id": "wf"}).key == "call-1"
    with pytest.raises(ValidationError, match="must carry an error"):
        Reply(**envelope, ok=False)
    with pytest.raises(ValidationError, match="carries no error"):
        Reply(**envelope, ok=True, error=ReplyError(kind="X", message="m"))


def test_backoff_max_cannot_be_below_initial() -> None:
    with pytest.raises(ValidationError, match="max_seconds"):
        Backoff(initial_seconds=10, max_seconds=1)


# --- registry and catalog -------------------------------------------------------------------


class _Probe(WorkflowEvent):
    """A test-only event."""

    type: Literal["test.probe"] = "test.probe"
    schema_version: Literal[1] = 1


class _ProbeClash(WorkflowEvent):
    type: Literal["test.probe"] = "test.probe"
    schema_version: Literal[1] = 1


class _BadName(WorkflowEvent):
    type: Literal["Probe"] = "Probe"
    schema_version: Literal[1] = 1


def test_registry_registers_by_type_and_version() -> None:
    registry = EventRegistry([_Probe])
    assert registry.register(_Probe) is _Probe  # idempotent, usable as a decorator
    assert registry.model("test.probe", 1) is _Probe
    assert registry.latest("test.probe") is _Probe
    assert _Probe in registry
    assert TaskCompleted not in registry
    assert registry.types() == ["test.probe"]
    assert len(registry) == 1


def test_registry_refuses_clashes_bad_names_and_abstract_classes() -> None:
    registry = EventRegistry([_Probe])
    with pytest.raises(ValueError, match="bump"):
        registry.register(_ProbeClash)
    with pytest.raises(ValueError, match="dotted"):
        registry.register(_BadName)
    with pytest.raises(TypeError, match="Literal"):
        registry.register(WorkflowEvent)  # a base without a fixed type
    with pytest.raises(TypeError, match="abstract"):
        registry.register(_Keyless)


def test_registry_lookups_of_unknown_types_suggest_a_close_match() -> None:
    with pytest.raises(UnknownEventType, match=r"did you mean 'task\.completed'"):
        REGISTRY.latest("task.complted")
    with pytest.raises(UnknownEventType, match=r"no model for task\.completed v9"):
        REGISTRY.model("task.completed", 9)


def test_the_default_registry_is_consistent() -> None:
    """Every registered type reads all its versions (no upcaster gaps)."""
    assert REGISTRY.problems() == []
    assert len(REGISTRY) >= 40


def test_channels_are_the_design_topics_and_cover_every_event() -> None:
    """The catalog names DESIGN.md's topics, and every registered event travels somewhere."""
    assert list(CHANNELS) == DESIGN_CHANNELS
    on_channels = {cls for channel in CHANNELS.values() for cls in channel.events}
    assert on_channels == set(REGISTRY)
    assert CHANNELS["workflow.events"].address() == "mesh.workflow.events"
    assert CHANNELS["agents"].cleanup == "compact"


def test_components_only_use_known_channels() -> None:
    for component in COMPONENTS.values():
        assert set(component.sends) | set(component.receives) <= set(CHANNELS), component.name
    sent = {name for c in COMPONENTS.values() for name in c.sends}
    received = {name for c in COMPONENTS.values() for name in c.receives}
    assert sent == set(CHANNELS)  # every channel has a writer
    assert received >= set(CHANNELS) - {"dlq"}  # and a reader (the DLQ is read by people)


def test_channels_of_lists_every_channel_of_a_type() -> None:
    assert channels_of(TaskCompleted) == ("workflow.events", "tasks.results")
    assert channels_of("task.assigned") == ("workflow.events", "tasks.assigned", "tasks.results")
    assert channels_of(completed()) == channels_of(TaskCompleted)


@pytest.mark.parametrize("cls", list(REGISTRY), ids=lambda c: c.event_type())
def test_every_event_documents_its_key_and_fields(cls: type[Event]) -> None:
    """Schemas are read by non-Python producers: every field and key says what it is."""
    assert cls.key_doc
    assert cls.__doc__
    assert cls.__doc__.strip()
    for name, field in cls.model_fields.items():
        if name not in ("type", "schema_version"):
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_event_keys_follow_their_channel() -> None:
    """Keys: workflow id for workflow topics, agent id for assignments, prefixed ledger keys."""
    assert sample_event(events.TaskAssigned).key == sample_event(events.TaskAssigned).agent_id
    assert sample_event(events.PoolDeclared).key.startswith("pool:")
    assert sample_event(events.ResourceReleased).key.startswith("allocation:")
    assert sample_event(events.QuotaSet).key.startswith("quota:")
    dead = sample_event(events.DeadLetter, original_key=None)
    assert dead.key == f"{dead.original_topic}/{dead.original_partition}/{dead.original_offset}"


def test_exported_names_are_pinned() -> None:
    """The public API is exactly __all__, and every concrete event class is in it."""
    exported = set(events.__all__)
    assert len(exported) == len(events.__all__)
    for name in exported:
        assert hasattr(events, name), name
    concrete = {
        name
        for name, value in vars(events).items()
        if inspect.isclass(value) and issubclass(value, Event) and not inspect.isabstract(value)
    }
    assert concrete <= exported
    assert {cls.__name__ for cls in REGISTRY} <= exported


class _Keyless(Event):
    type: Literal["test.keyless"] = "test.keyless"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "nothing"


def test_an_event_without_a_key_is_abstract() -> None:
    with pytest.raises(TypeError):
        _Keyless(**meta(PRODUCER, correlation_id="r"))  # type: ignore[abstract]
    assert Producer(component="a", instance="b").component == "a"
