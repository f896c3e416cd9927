"""Where a request goes: every candidate node scored in one vectorised numpy pass.

For a request, the mask of feasible nodes (open, allowed, with the request's amounts free and,
under a spending quota, cheap enough) is one comparison over an ``(nodes, 5)`` matrix; cost and
fit are two more array expressions over the feasible rows. Then:

- ``cheapest``: the lowest cost among nodes that finish before the deadline (cost = rate x the
  estimated duration on that node, whose ``speed`` divides it); if none can, the one that finishes
  first; ties go to the tighter fit.
- ``best_fit``: the node left with the least free capacity (summed over resources, each as a
  fraction of the node's size), which keeps big holes free for big requests; ties go to cost.

:class:`PythonPlacer` is the same scoring as a plain loop: the reference the tests compare with
and the baseline the benchmark measures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from mesh.events import PlacementName, PoolDeclared, PoolNode
from mesh.resources._vectors import DIMS, EPSILON, Vector, stack

CLOSED_LABEL = "mesh.closed"
"""A node labelled ``mesh.closed: "true"`` keeps its allocations but takes no new ones."""

Mask = npt.NDArray[np.bool_]


def pool_nodes(pool: PoolDeclared) -> tuple[PoolNode, ...]:
    """A pool's nodes; a pool declared without nodes is one node holding its whole capacity."""
    if pool.nodes:
        return tuple(pool.nodes)
    return (
        PoolNode(node_id=pool.pool_id, capacity=pool.capacity, cost_per_hour=pool.cost_per_hour),
    )


@dataclass(frozen=True)
class NodeTable:
    """Every node of every pool as arrays, one row per node (rebuilt when pools change)."""

    pools: tuple[str, ...]
    keys: tuple[tuple[str, str], ...]
    pool_of: npt.NDArray[np.int64]
    capacity: Vector
    unit_costs: Vector
    node_cost: npt.NDArray[np.float64]
    speed: npt.NDArray[np.float64]
    open: Mask
    inv_scale: Vector
    capacity_t: Vector
    """``capacity`` transposed, ``(5, nodes)`` and contiguous: a reduction over the five
    resources is then an elementwise operation over five long rows, many times faster than
    reducing ``(nodes, 5)`` along its short axis."""
    inv_scale_t: Vector
    unit_costs_t: Vector
    priced: tuple[bool, ...]
    """Resources that have a unit cost on some node."""
    pool_rows: Mapping[str, Mask]
    pool_sizes: Mapping[str, Vector]

    @classmethod
    def build(cls, pools: Sequence[PoolDeclared]) -> NodeTable:
        """The table of ``pools`` (in the given order)."""
        rows: list[tuple[int, PoolNode]] = [
            (p, node) for p, pool in enumerate(pools) for node in pool_nodes(pool)
        ]
        nodes = [node for _, node in rows]
        capacity = stack(n.capacity for n in nodes)
        unit_costs = stack(n.unit_costs for n in nodes)
        inv_scale = 1.0 / np.where(capacity > 0, capacity, 1.0)
        pool_of = np.array([p for p, _ in rows], dtype=np.int64)
        masks = {pool.pool_id: pool_of == p for p, pool in enumerate(pools)}
        return cls(
            pools=tuple(pool.pool_id for pool in pools),
            keys=tuple((pools[p].pool_id, node.node_id) for p, node in rows),
            pool_of=pool_of,
            capacity=capacity,
            unit_costs=unit_costs,
            node_cost=np.array([n.cost_per_hour for n in nodes], dtype=np.float64),
            speed=np.array([n.speed for n in nodes], dtype=np.float64),
            open=np.array([n.labels.get(CLOSED_LABEL) != "true" for n in nodes], dtype=np.bool_),
            inv_scale=inv_scale,
            capacity_t=np.ascontiguousarray(capacity.T),
            inv_scale_t=np.ascontiguousarray(inv_scale.T),
            unit_costs_t=np.ascontiguousarray(unit_costs.T),
            priced=tuple(bool(x) for x in np.asarray((unit_costs > 0).any(axis=0)).tolist()),
            pool_rows=masks,
            pool_sizes={p: capacity[m].sum(axis=0) for p, m in masks.items()},
        )

    def big_enough(self, need: Vector) -> Mask:
        """Nodes whose whole capacity could hold ``need`` (used or not)."""
        return np.asarray(
            (self.capacity_t >= (need - EPSILON)[:, None]).all(axis=0), dtype=np.bool_
        )

    def __len__(self) -> int:
        return len(self.keys)

    def in_pool(self, pool_id: str) -> Mask:
        """Rows of one pool (do not modify)."""
        found = self.pool_rows.get(pool_id)
        return found if found is not None else np.zeros(len(self), dtype=np.bool_)

    def pool_capacity(self, pool_id: str) -> Vector:
        """Sum of a pool's node capacities."""
        found = self.pool_sizes.get(pool_id)
        return found.copy() if found is not None else np.zeros(DIMS)


@dataclass(frozen=True)
class Ask:
    """One request as placement sees it."""

    need: Vector
    placement: PlacementName = "best_fit"
    hours: float | None = None
    """Estimated duration on a node of speed 1, if known."""
    hours_left: float | None = None
    """Time to the deadline, if there is one."""
    cost_room: float = math.inf
    """Most the allocation may cost per hour (the tenant's spending quota minus its rate)."""


@dataclass(frozen=True)
class Choice:
    """The chosen node and what it costs there."""

    index: int
    rate: float
    """Cost per hour of the allocation on that node."""
    on_time: bool
    """False when no feasible node meets the deadline (the earliest finish was taken)."""


class Placer(Protocol):
    """Chooses nodes for requests while tracking what a round has taken."""

    def choose(self, ask: Ask, allowed: Mask | None = None) -> Choice | None:
        """The best feasible node for ``ask`` among ``allowed`` rows, or None."""

    def take(self, index: int, need: Vector) -> None:
        """Count ``need`` as used on node ``index``."""

    def free(self) -> Vector:
        """What is free on every node now (a copy)."""


class NumpyPlacer:
    """The vectorised placer: one pass over all candidate rows per request.

    It keeps free capacity transposed, ``(5, nodes)``, like the table's ``*_t`` arrays.
    """

    def __init__(self, table: NodeTable, used: Vector) -> None:
        self.table = table
        self._free = np.ascontiguousarray(table.capacity_t - used.T)
        self._most: list[float] | None = None

    def free(self) -> Vector:
        return np.asarray(self._free.T.copy(), dtype=np.float64)

    def take(self, index: int, need: Vector) -> None:
        # Free capacity only shrinks, so the largest free amounts seen stay an upper bound for
        # ``_hopeless`` (a request it lets through finds no feasible row): not recomputed.
        self._free[:, index] -= need

    def _hopeless(self, need: Vector) -> bool:
        """No node has this much of some resource free: no need to score anything."""
        if self._most is None:
            self._most = self._free.max(axis=1).tolist() if self._free.size else [0.0] * DIMS
        return any(n > m + EPSILON for n, m in zip(need.tolist(), self._most, strict=True))

    def choose(self, ask: Ask, allowed: Mask | None = None) -> Choice | None:
        t, need, free = self.table, ask.need, self._free
        if self._hopeless(need):
            return None
        # Whole ``(5, rows)`` operations reduced along the first axis (row by row, in the same
        # order as the reference's loop over resources, so the sums are the same to the bit):
        # a decision is a few dozen numpy calls, whatever the number of nodes.
        usable = t.open if allowed is None else t.open & allowed
        feasible = (free >= (need - EPSILON)[:, None]).all(axis=0)
        feasible &= usable
        rows = np.flatnonzero(feasible)
        if rows.size == 0:
            return None
        inv = t.inv_scale_t.take(rows, axis=1)
        column = need[:, None]
        share = (column * inv).max(axis=0)
        leftover = ((free.take(rows, axis=1) - column) * inv).sum(axis=0)
        rate = t.node_cost.take(rows) * share
        priced = [d for d in range(DIMS) if t.priced[d] and need[d] > 0]
        if priced:
            extra = need[priced[0]] * t.unit_costs_t[priced[0]].take(rows)
            for d in priced[1:]:
                extra += need[d] * t.unit_costs_t[d].take(rows)
            rate = extra + rate
        if math.isfinite(ask.cost_room):
            cheap = rate <= ask.cost_room + EPSILON
            if not cheap.all():
                rows, rate, leftover = rows[cheap], rate[cheap], leftover[cheap]
                if rows.size == 0:
                    return None
        runtime: Vector | None = None
        on_time: Mask | None = None
        cost = rate
        if ask.hours is not None:
            runtime = ask.hours / t.speed.take(rows)
            cost = rate * runtime
            if ask.hours_left is not None:
                on_time = runtime <= ask.hours_left + EPSILON
        late = on_time is not None and not bool(on_time.any())
        if late:
            assert runtime is not None
            primary, secondary = runtime, cost
        elif ask.placement == "cheapest":
            primary, secondary = cost, leftover
        else:
            primary, secondary = leftover, cost
        if on_time is not None and not late and not bool(on_time.all()):
            primary = np.where(on_time, primary, np.inf)
        best = float(primary.min())
        ties = primary <= best + EPSILON * max(1.0, abs(best))
        pick = int(np.argmin(np.where(ties, secondary, np.inf)))
        return Choice(int(rows[pick]), float(rate[pick]), not late)


class PythonPlacer:
    """The same scoring as :class:`NumpyPlacer`, node by node in plain Python."""

    def __init__(self, table: NodeTable, used: Vector) -> None:
        self._capacity = table.capacity.tolist()
        self._free = (table.capacity - used).tolist()
        self._costs = table.unit_costs.tolist()
        self._node_cost = table.node_cost.tolist()
        self._speed = table.speed.tolist()
        self._open = table.open.tolist()
        self._most: list[float] | None = None

    def free(self) -> Vector:
        return np.array(self._free, dtype=np.float64).reshape(-1, DIMS)

    def take(self, index: int, need: Vector) -> None:
        row = self._free[index]
        for d in range(DIMS):
            row[d] -= float(need[d])
        self._most = None

    def _hopeless(self, need: list[float]) -> bool:
        if self._most is None:
            self._most = [max((f[d] for f in self._free), default=0.0) for d in range(DIMS)]
        return any(need[d] > self._most[d] + EPSILON for d in range(DIMS))

    def choose(self, ask: Ask, allowed: Mask | None = None) -> Choice | None:
        need = [float(x) for x in ask.need]
        if self._hopeless(need):
            return None
        ok = allowed.tolist() if allowed is not None else None
        found: list[tuple[int, float, float, float, float]] = []  # index, rate, left, run, cost
        for i, free in enumerate(self._free):
            if not self._open[i] or (ok is not None and not ok[i]):
                continue
            if any(free[d] < need[d] - EPSILON for d in range(DIMS)):
                continue
            cap, costs = self._capacity[i], self._costs[i]
            share, rate, left = 0.0, 0.0, 0.0
            for d in range(DIMS):
                inv = 1.0 / cap[d] if cap[d] > 0 else 1.0
                share = max(share, need[d] * inv)
                rate += costs[d] * need[d]
                left += (free[d] - need[d]) * inv
            rate += self._node_cost[i] * share
            if rate > ask.cost_room + EPSILON:
                continue
            run = ask.hours / self._speed[i] if ask.hours is not None else 0.0
            found.append((i, rate, left, run, rate * run if ask.hours is not None else rate))
        if not found:
            return None

        def on_time(run: float) -> bool:
            return ask.hours is None or ask.hours_left is None or run <= ask.hours_left + EPSILON

        late = not any(on_time(f[3]) for f in found)
        candidates = found if late else [f for f in found if on_time(f[3])]

        def keys(f: tuple[int, float, float, float, float]) -> tuple[float, float]:
            _, _, left, run, cost = f
            if late:
                return run, cost
            return (cost, left) if ask.placement == "cheapest" else (left, cost)

        best = min(keys(f)[0] for f in candidates)
        tolerance = EPSILON * max(1.0, abs(best))
        ties = [f for f in candidates if keys(f)[0] <= best + tolerance]
        pick = min(ties, key=lambda f: (keys(f)[1], f[0]))
        return Choice(pick[0], pick[1], not late)


def hold_target(table: NodeTable, free: Vector, need: Vector, allowed: Mask) -> int | None:
    """The node a waiting request is closest to fitting on (only nodes big enough count)."""
    big = table.big_enough(need) & allowed & table.open
    rows = np.flatnonzero(big)
    if rows.size == 0:
        return None
    short = np.sum(np.maximum(need - free[rows], 0.0) * table.inv_scale[rows], axis=1)
    return int(rows[int(np.argmin(short))])
