"""A bounded cache of plans for identical requests.

Identical means: same type, description, requirements, constraints, priority, tenant and
context, the same template version (a digest of every definition the type reaches), and the same
learned state (``Learning.version``). The last part is what keeps caching honest with learning:
once a new completion arrives, estimates and method choices may differ, so older entries simply
stop matching and age out of the LRU. Deadlines are not part of the key; they are checked
against every request afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from mesh.events import TaskRequest

V = TypeVar("V")


def request_key(request: TaskRequest, template_version: str, learned_version: int) -> str:
    """A digest of everything about a request that shapes its plan (not its ids or deadline)."""
    shape = {
        "type": request.task_type,
        "description": request.description,
        "requirements": [r.model_dump(mode="json") for r in request.requirements],
        "constraints": sorted(
            (c.name, json.dumps(c.value)) for c in request.constraints if c.name != "deadline"
        ),
        "priority": request.priority,
        "tenant": request.tenant,
        "context": request.context,
        "template": template_version,
        "learned": learned_version,
    }
    blob = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class PlanCache(Generic[V]):
    """Least-recently-used mapping with a fixed capacity (0 disables caching)."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.capacity == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
