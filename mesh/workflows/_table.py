"""The tasks of a workflow state, shared bucket by bucket between a state and the next one.

A decision changes a handful of tasks, but each state is immutable, so the next state needs its
own table of tasks. Copying the whole table per decision is C-speed but O(tasks): 0.2 ms a
decision at 10,000 tasks and ~2 ms at 100,000, which made a 100,000-task workflow cost its
Workflow Manager ten minutes of CPU in copies alone. A :class:`TaskTable` keeps its tasks in
buckets of :data:`BUCKET` consecutive tasks (plan order); an :class:`TaskEdits` copies only the
buckets it writes to, and freezing it shares every other bucket with the state it came from.

Iteration is in the order the tasks were given (plan order), whatever the process: bucket
membership is by position, never by hash, so replay and live iterate alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

if TYPE_CHECKING:
    from mesh.workflows._state import TaskState

BUCKET = 128
"""Tasks per bucket: what one write copies."""


class TaskTable(Mapping[str, "TaskState"]):
    """An immutable mapping task id → task, cheap to derive a changed copy of."""

    __slots__ = ("_buckets", "_len", "_slot")

    def __init__(
        self, slot: Mapping[str, int], buckets: tuple[dict[str, TaskState], ...], size: int
    ) -> None:
        self._slot = slot
        """Task id → bucket number; shared by every table derived from the first one."""
        self._buckets = buckets
        self._len = size

    @classmethod
    def of(cls, tasks: Mapping[str, TaskState]) -> TaskTable:
        """A table of ``tasks`` (in their order)."""
        if isinstance(tasks, TaskTable):
            return tasks
        slot: dict[str, int] = {}
        buckets: list[dict[str, TaskState]] = []
        for i, (task_id, task) in enumerate(tasks.items()):
            if i % BUCKET == 0:
                buckets.append({})
            buckets[-1][task_id] = task
            slot[task_id] = len(buckets) - 1
        return cls(slot, tuple(buckets), len(slot))

    def __getitem__(self, task_id: str) -> TaskState:
        return self._buckets[self._slot[task_id]][task_id]

    def __contains__(self, task_id: object) -> bool:
        bucket = self._slot.get(task_id) if isinstance(task_id, str) else None
        return bucket is not None and task_id in self._buckets[bucket]

    def __iter__(self) -> Iterator[str]:
        for bucket in self._buckets:
            yield from bucket

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TaskTable) and other._buckets is self._buckets:
            return True
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # a mapping, like dict

    def __repr__(self) -> str:
        return f"TaskTable({dict(self)!r})"

    def edit(self) -> TaskEdits:
        """A mutable copy that copies a bucket only when it first writes to it."""
        return TaskEdits(self)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from mesh.workflows._state import TaskState

        as_dict = core_schema.dict_schema(core_schema.str_schema(), handler(TaskState))
        return core_schema.no_info_after_validator_function(
            cls.of,
            as_dict,
            serialization=core_schema.plain_serializer_function_ser_schema(
                dict, return_schema=as_dict
            ),
        )


class TaskEdits(MutableMapping[str, "TaskState"]):
    """A working copy of a :class:`TaskTable` for one decision or one fold."""

    __slots__ = ("_buckets", "_len", "_owned", "_slot")

    def __init__(self, table: TaskTable) -> None:
        self._slot: Mapping[str, int] = table._slot
        self._buckets = list(table._buckets)
        self._owned: set[int] = set()
        self._len = table._len

    def __getitem__(self, task_id: str) -> TaskState:
        return self._buckets[self._slot[task_id]][task_id]

    def __contains__(self, task_id: object) -> bool:
        bucket = self._slot.get(task_id) if isinstance(task_id, str) else None
        return bucket is not None and task_id in self._buckets[bucket]

    def __setitem__(self, task_id: str, task: TaskState) -> None:
        bucket = self._slot.get(task_id)
        if bucket is None:  # a task the table never had: its own bucket, a new slot map
            self._slot = {**self._slot, task_id: len(self._buckets)}
            self._buckets.append({})
            bucket = len(self._buckets) - 1
            self._owned.add(bucket)
        elif bucket not in self._owned:
            self._buckets[bucket] = dict(self._buckets[bucket])
            self._owned.add(bucket)
        if task_id not in self._buckets[bucket]:
            self._len += 1
        self._buckets[bucket][task_id] = task

    def __delitem__(self, task_id: str) -> None:
        raise TypeError("a workflow's tasks are never removed")

    def __iter__(self) -> Iterator[str]:
        for bucket in self._buckets:
            yield from bucket

    def __len__(self) -> int:
        return self._len

    def freeze(self) -> TaskTable:
        """The table as it stands; later writes here copy their bucket again."""
        self._owned.clear()
        return TaskTable(self._slot, tuple(self._buckets), self._len)

    def changed_since(self, table: TaskTable) -> list[TaskState]:
        """The tasks that are no longer the objects they were in ``table`` (a freeze of this
        working copy): only the buckets written since are looked at."""
        changed: list[TaskState] = []
        old = table._buckets
        for number, bucket in enumerate(self._buckets):
            before = old[number] if number < len(old) else {}
            if bucket is not before:
                changed.extend(t for k, t in bucket.items() if before.get(k) is not t)
        return changed


__all__ = ["BUCKET", "TaskEdits", "TaskTable"]
