"""The decision function: the ledger's waiting requests → allocations, queue entries, denials.

:func:`decide` is pure: it reads the ledger and the node table and returns events; the caller
folds them back into the ledger (and publishes them). One call is one *round* over every waiting
request, so that requests which arrive together contend fairly (DRF needs to see both tenants'
demand to reproduce the paper's 3 + 2), and so that a release lets queued work through.

A round:

1. Deny what can never be met: over the tenant's quota on its own, larger than every node,
   costlier than the tenant's spending limit, or pinned to an unknown pool.
2. Route every other request to the pool of its best feasible node (one vectorised scoring).
3. In each pool, serve the routed requests in the order of the pool's policy (see
   ``_policies``); each is checked against its tenant's quota and placed on the pool's best node.
   Requests that lost a node to an earlier one in the same round are routed again (a bounded
   number of times: a later round serves them anyway).
4. Whatever is left waits; a request that was not queued yet gets a ``ResourceQueued`` with why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import numpy as np

from mesh.events import Producer, ResourceDenied
from mesh.resources._decisions import AgentLookup, allocated, denied, no_room, queued
from mesh.resources._ledger import Decision, Ledger, Waiting
from mesh.resources._placement import (
    Ask,
    Choice,
    Mask,
    NodeTable,
    NumpyPlacer,
    Placer,
    hold_target,
)
from mesh.resources._policies import AllocatorConfig, Contender, Turns
from mesh.resources._quotas import Quota, must_wait, never_fits, too_costly
from mesh.resources._round import Round, pool_policy, reservations
from mesh.resources._vectors import EPSILON, Vector, describe, fits

PlacerFactory = Callable[[NodeTable, Vector], Placer]
_PASSES = 3
"""Routing passes per round: the first routes everything; the next ones route again what lost
its node to another request in its pool (with several pools it may still fit elsewhere).
Bounded, so that a round costs O(requests), not O(requests x grants)."""


def decide(
    ledger: Ledger,
    table: NodeTable,
    *,
    now: datetime,
    producer: Producer,
    config: AllocatorConfig | None = None,
    placer: PlacerFactory = NumpyPlacer,
    agent_of: AgentLookup = lambda _pool, _node: None,
) -> list[Decision]:
    """One round over every waiting request of ``ledger``; see the module docstring."""
    config = config or AllocatorConfig()
    if not ledger.waiting:
        return []
    used, _counts = ledger.used_on(table.keys)
    quotas = {t: Quota.from_event(q, default=config.default) for t, q in ledger.quotas.items()}
    state = Round(ledger, table, config, now, placer(table, used), quotas)
    state.held_nodes = np.zeros(len(table), dtype=np.bool_)
    state.reserved = reservations(ledger, config, quotas, now)
    out: list[Decision] = []
    left: list[Waiting] = []
    granted: set[str] = set()
    dropped: set[str] = set()
    at_most = _at_their_count(state)
    for waiting in sorted(ledger.waiting.values(), key=lambda w: w.arrival):
        memo = (waiting.need.tobytes(), waiting.request.pool_id, waiting.request.tenant)
        if memo not in state.denials:
            state.denials[memo] = _denial(state, waiting)
        denial = state.denials[memo]
        if denial is not None:
            out.append(denied(producer, now, waiting, *denial))
        elif (why := at_most.get(waiting.request.tenant)) is not None:
            state.why[waiting.request.allocation_id] = (why, "quota")
            dropped.add(waiting.request.allocation_id)  # only its tenant's releases can help it
        else:
            left.append(waiting)
    for _spill in range(_PASSES):
        if not left:
            break
        routed, retry = _route(state, left)
        progress = False
        for pool_id in sorted(routed):
            for waiting, choice_rate, index in _serve(state, pool_id, routed[pool_id], dropped):
                pool, node = table.keys[index]
                out.append(allocated(producer, now, waiting, pool, node, choice_rate, agent_of))
                granted.add(waiting.request.allocation_id)
                progress = True
        done = granted | dropped
        left = [w for w in retry if w.request.allocation_id not in done]
        if not progress:
            break
    position = 0
    refused = {d.allocation_id for d in out if isinstance(d, ResourceDenied)}
    for waiting in sorted(ledger.waiting.values(), key=lambda w: w.arrival):
        allocation_id = waiting.request.allocation_id
        if allocation_id in granted or allocation_id in refused:
            continue
        if not waiting.queued:
            reason, code = state.why.get(allocation_id, no_room(waiting))
            out.append(queued(producer, now, waiting, position, reason, code))
        position += 1
    return out


def _at_their_count(state: Round) -> dict[str, str]:
    """Tenants that hold as many allocations as their quota allows, with why: none of their
    requests can be granted in this round (grants only add), so they are not routed and
    scored one by one (a long queue behind a full quota made every round cost O(queue) in
    placement). Not under the demand policy, whose weights count all queued demand."""
    config = state.config
    policies = [config.default.kind]
    policies += [pool_policy(config, pool).kind for pool in state.ledger.pools.values()]
    policies += [q.policy.kind for q in state.quotas.values() if q.policy is not None]
    if "demand" in policies:
        return {}
    full: dict[str, str] = {}
    for tenant, quota in state.quotas.items():
        if quota.max_allocations is None:
            continue
        used, count, _rate = state.tenant(tenant)
        why = must_wait(quota, used, count, np.zeros_like(used))
        if why is not None and count >= quota.max_allocations:
            full[tenant] = why
    return full


def _denial(state: Round, waiting: Waiting) -> tuple[str, str] | None:
    request, need, table = waiting.request, waiting.need, state.table
    quota = state.quotas.get(request.tenant)
    reason = never_fits(quota, need)
    if reason is not None:
        return reason, "quota"
    rows = _allowed(state, waiting)
    if request.pool_id is not None and request.pool_id not in table.pools:
        if request.pool_id == state.config.discovery_pool and state.config.discovery:
            return None  # its hosts may not have reported yet
        return f"unknown pool {request.pool_id!r}", "unknown_pool"
    big = table.big_enough(need)
    if rows is not None:
        big &= rows
    if not big.any():
        where = f"pool {request.pool_id!r}" if request.pool_id else "any pool"
        return f"no node in {where} can ever hold {describe(need)}", "too_large"
    if quota is not None and quota.max_cost_per_hour is not None:
        inv = table.inv_scale[big]
        rates = table.unit_costs[big] @ need + table.node_cost[big] * np.max(need * inv, axis=1)
        cheapest = float(rates.min())
        if cheapest > quota.max_cost_per_hour + EPSILON:
            return too_costly(quota, cheapest), "quota"
    return None


def _allowed(state: Round, waiting: Waiting) -> Mask | None:
    pool_id = waiting.request.pool_id
    return state.table.in_pool(pool_id) if pool_id is not None else None


def _ask(state: Round, waiting: Waiting, placement: str) -> Ask:
    request = waiting.request
    _used, _count, rate = state.tenant(request.tenant)
    quota = state.quotas.get(request.tenant)
    hours = request.estimated_duration_seconds
    left = (request.deadline - state.now).total_seconds() if request.deadline else None
    return Ask(
        need=waiting.need,
        placement="cheapest" if placement == "cheapest" else "best_fit",
        hours=hours / 3600.0 if hours is not None else None,
        hours_left=left / 3600.0 if left is not None else None,
        cost_room=quota.cost_room(rate) if quota is not None else float("inf"),
    )


def _route(state: Round, left: Sequence[Waiting]) -> tuple[dict[str, list[Waiting]], list[Waiting]]:
    """Each request to the pool of its best feasible node now; the rest stay where they are."""
    table = state.table
    routed: dict[str, list[Waiting]] = {}
    retry: list[Waiting] = []
    single = len(table.pools) == 1
    # Nothing is granted while routing, so equal asks get the same node: scored once (unless a
    # reservation makes the nodes open to a request depend on its workflow).
    scored: dict[tuple[object, ...], Choice | None] = {}
    for waiting in left:
        pinned = waiting.request.pool_id
        if pinned is not None or single:
            pool_id = pinned if pinned is not None else table.pools[0]
            routed.setdefault(pool_id, []).append(waiting)
            continue
        ask = _ask(state, waiting, state.config.default.placement)
        choice = None
        same = (
            (ask.need.tobytes(), ask.placement, ask.hours, ask.hours_left, ask.cost_room)
            if not state.reserved
            else None
        )
        if same is not None and same in scored:
            choice = scored[same]
        elif not state.doomed(None, ask):
            choice = state.placer.choose(ask, _open_for(state, waiting, None))
        if same is not None:
            scored[same] = choice
        if choice is None:
            state.no_fit(None, ask)
            state.why.setdefault(waiting.request.allocation_id, no_room(waiting))
            continue
        routed.setdefault(table.pools[int(table.pool_of[choice.index])], []).append(waiting)
        state.routes[waiting.request.allocation_id] = (choice, ask, state.grants, len(state.held))
    if not single:  # a request that loses its node to another may still fit in another pool
        retry.extend(w for found in routed.values() for w in found if w.request.pool_id is None)
    return routed, retry


def _same_round_ask(route: tuple[Choice, Ask, int, int], ask: Ask, state: Round) -> bool:
    _choice, routed, grants, holds = route
    return (routed.placement, routed.cost_room, routed.hours, routed.hours_left) == (
        ask.placement,
        ask.cost_room,
        ask.hours,
        ask.hours_left,
    ) and (grants, holds) == (state.grants, len(state.held))


def _open_for(state: Round, waiting: Waiting, pool_id: str | None) -> Mask:
    """Rows the request may use: its pool, not held for others, not in a reserved pool."""
    table = state.table
    allowed = ~state.held_nodes
    pinned = pool_id or waiting.request.pool_id
    if pinned is not None:
        allowed = allowed & table.in_pool(pinned)
    if state.reserved:
        free = state.placer.free()
        workflow = waiting.request.workflow_id
        for p, name in enumerate(table.pools):
            if pinned is not None and name != pinned:
                continue
            others = _reserved_for_others(state, name, workflow)
            if others is None:
                continue
            rows = table.pool_of == p
            if not fits(waiting.need + others, free[rows].sum(axis=0)):
                allowed = allowed & ~rows
                state.why[waiting.request.allocation_id] = (
                    f"capacity in pool {name!r} is reserved for forecast work",
                    "reserved",
                )
        others = _reserved_for_others(state, None, workflow)
        if others is not None and not fits(waiting.need + others, free[allowed].sum(axis=0)):
            state.why[waiting.request.allocation_id] = (
                "capacity is reserved for forecast work",
                "reserved",
            )
            return np.zeros(len(table), dtype=np.bool_)
    return allowed


def _reserved_for_others(state: Round, pool: str | None, workflow: str | None) -> Vector | None:
    total = state.reserved.get((pool, None))
    if total is None:
        return None
    own = state.reserved.get((pool, workflow)) if workflow is not None else None
    return total - own if own is not None else total


def _serve(
    state: Round, pool_id: str, routed: Sequence[Waiting], dropped: set[str]
) -> Iterable[tuple[Waiting, float, int]]:
    """Grant what fits in one pool, in the order of its policy."""
    policy = pool_policy(state.config, state.ledger.pools.get(pool_id))
    by_id = {w.request.allocation_id: w for w in routed}
    contenders = [
        Contender(
            w.request.allocation_id,
            w.request.tenant,
            w.request.priority,
            w.need,
            w.arrival,
            w.queued,
        )
        for w in routed
    ]
    turns = Turns(
        contenders,
        policy=policy,
        capacity=state.table.pool_capacity(pool_id),
        held=state.pool_tenants(pool_id),
        tenant_policy=lambda t: q.policy if (q := state.quotas.get(t)) else None,
    )
    while (contender := turns.next()) is not None:
        waiting = by_id[contender.allocation_id]
        used, count, _rate = state.tenant(contender.tenant)
        wait = must_wait(state.quotas.get(contender.tenant), used, count, contender.need)
        if wait is not None:
            state.why[contender.allocation_id] = (wait, "quota")
            dropped.add(contender.allocation_id)  # only its own releases can help it
            turns.passed(contender)
            continue
        ask = _ask(state, waiting, policy.placement)
        choice = None
        route = state.routes.pop(contender.allocation_id, None)
        if route is not None and _same_round_ask(route, ask, state):
            choice = route[0]  # routing chose it among all nodes and nothing moved since
        elif not state.doomed(pool_id, ask):
            choice = state.placer.choose(ask, _open_for(state, waiting, pool_id))
        if choice is None:
            state.no_fit(pool_id, ask)
            reason = state.why.get(contender.allocation_id)
            if reason is None or reason[1] != "reserved":
                held = state.table.in_pool(pool_id) & state.held_nodes
                state.why[contender.allocation_id] = (
                    ("capacity is held for queued work ahead of it", "held")
                    if held.any() and policy.kind == "priority"
                    else no_room(waiting)
                )
            if policy.kind == "priority":
                target = hold_target(
                    state.table,
                    state.placer.free(),
                    contender.need,
                    _open_for(state, waiting, pool_id),
                )
                if target is not None:
                    state.held_nodes[target] = True
                    state.held.add(target)
            turns.passed(contender)
            continue
        state.placer.take(choice.index, contender.need)
        state.grant(contender.tenant, pool_id, contender.need, choice.rate)
        turns.granted(contender)
        yield waiting, choice.rate, choice.index
