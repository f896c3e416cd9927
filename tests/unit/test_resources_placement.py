"""Placement: feasibility, cost and fit, scored in one numpy pass and by the Python reference."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.events import ResourceAllocated, ResourceQueued, Resources, UnitCosts
from mesh.resources import CLOSED_LABEL, Ask, NodeTable, NumpyPlacer, PythonPlacer, to_vector
from mesh.resources._placement import hold_target
from tests._resources_support import GB, allocator, node, pool, request


def _table(*nodes: tuple[float, int, float, float]) -> NodeTable:
    """Nodes as (cpu, memory, cost per hour, speed)."""
    return NodeTable.build(
        [pool("p", *(node(f"n{i}", c, m, cost=k, speed=s) for i, (c, m, k, s) in enumerate(nodes)))]
    )


def test_best_fit_takes_the_tightest_node() -> None:
    table = _table((16, 16 * GB, 0, 1), (4, 4 * GB, 0, 1), (8, 8 * GB, 0, 1))
    choice = NumpyPlacer(table, np.zeros((3, 5))).choose(
        Ask(to_vector(Resources(cpu=3, memory_mb=3 * GB)))
    )
    assert choice is not None
    assert choice.index == 1


def test_cheapest_takes_the_lowest_cost_node() -> None:
    table = _table((16, 16 * GB, 1.6, 1), (4, 4 * GB, 0.8, 1), (8, 8 * GB, 0.4, 1))
    ask = Ask(to_vector(Resources(cpu=2, memory_mb=2 * GB)), placement="cheapest")
    choice = NumpyPlacer(table, np.zeros((3, 5))).choose(ask)
    # A node's cost is paid by dominant share: 2/16*1.6=0.2, 2/4*0.8=0.4, 2/8*0.4=0.1.
    assert choice is not None
    assert (choice.index, choice.rate) == (2, 0.1)


def test_cheapest_keeps_to_the_deadline() -> None:
    """A 2-hour task due in 1.5 hours: the cheap slow node would be late, so the faster (dearer)
    node wins; with no deadline the cheap one does; with an impossible one, the fastest."""
    table = _table((4, 4 * GB, 1.0, 1.0), (4, 4 * GB, 3.0, 2.0), (4, 4 * GB, 9.0, 4.0))
    need = to_vector(Resources(cpu=4))
    placer = NumpyPlacer(table, np.zeros((3, 5)))
    on_time = placer.choose(Ask(need, "cheapest", hours=2, hours_left=1.5))
    relaxed = placer.choose(Ask(need, "cheapest", hours=2))
    hopeless = placer.choose(Ask(need, "cheapest", hours=2, hours_left=0.1))
    assert on_time is not None
    assert (on_time.index, on_time.on_time) == (1, True)
    assert relaxed is not None
    assert relaxed.index == 0
    assert hopeless is not None
    assert (hopeless.index, hopeless.on_time) == (2, False)


def test_unit_costs_price_each_resource() -> None:
    gpu = node("g", 8, 32 * GB, gpu=1, unit_costs=UnitCosts(cpu=0.1, gpu=2.0))
    table = NodeTable.build([pool("p", gpu)])
    choice = NumpyPlacer(table, np.zeros((1, 5))).choose(Ask(to_vector(Resources(cpu=2, gpu=1))))
    assert choice is not None
    assert math.isclose(choice.rate, 2.2)


def test_infeasible_closed_too_costly_and_disallowed_nodes_are_never_chosen() -> None:
    closed = node("closed", 64, 64 * GB, labels={CLOSED_LABEL: "true"})
    table = NodeTable.build(
        [pool("p", node("small", 1, GB), closed, node("dear", 8, 8 * GB, cost=8))]
    )
    placer = NumpyPlacer(table, np.zeros((3, 5)))
    need = to_vector(Resources(cpu=4))
    assert placer.choose(Ask(need, cost_room=1.0)) is None  # dear costs 4/8 * 8 = 4 per hour
    assert placer.choose(Ask(need), allowed=np.array([True, True, False])) is None
    choice = placer.choose(Ask(need))
    assert choice is not None
    assert table.keys[choice.index] == ("p", "dear")


def test_a_waiting_request_holds_the_node_it_is_closest_to_fitting() -> None:
    table = _table((8, 8 * GB, 0, 1), (8, 8 * GB, 0, 1), (2, 2 * GB, 0, 1))
    used = np.array([[6, 0, 0, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=float)
    free = table.capacity - used
    assert hold_target(table, free, to_vector(Resources(cpu=8)), np.ones(3, dtype=bool)) == 1


def test_best_fit_limits_fragmentation() -> None:
    """Small requests go to the small node, so a large request still finds a whole node."""
    alloc = allocator(pool("p", node("big", 8, 8 * GB), node("small", 2, 2 * GB)))
    for _ in range(2):
        small = alloc.allocate_resources(request("t", 1, GB))
        assert isinstance(small, ResourceAllocated)
        assert small.node_id == "small"
    big = alloc.allocate_resources(request("t", 8, 8 * GB))
    assert isinstance(big, ResourceAllocated)
    assert big.node_id == "big"


def test_a_request_pinned_to_a_pool_stays_there() -> None:
    alloc = allocator(pool("a", node("a1", 8, 8 * GB)), pool("b", node("b1", 1, GB)))
    first = alloc.allocate_resources(request("t", 1, GB, pool_id="b"))
    second = alloc.allocate_resources(request("t", 1, GB, pool_id="b"))
    assert isinstance(first, ResourceAllocated)
    assert first.pool_id == "b"
    assert isinstance(second, ResourceQueued)
    assert "pool 'b'" in second.reason


_nodes = st.lists(
    st.tuples(
        st.integers(0, 16),  # cpu
        st.integers(0, 8),  # memory GB
        st.sampled_from([0.0, 0.5, 1.0, 2.0]),  # cost per hour
        st.sampled_from([0.5, 1.0, 2.0]),  # speed
        st.integers(0, 16),  # cpu used
        st.booleans(),  # open
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    nodes=_nodes,
    cpu=st.integers(0, 8),
    memory=st.integers(0, 4),
    placement=st.sampled_from(["cheapest", "best_fit"]),
    hours=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 3.0])),
    hours_left=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0])),
    room=st.sampled_from([math.inf, 0.5, 2.0]),
)
def test_numpy_and_python_placers_agree(
    nodes: list[tuple[int, int, float, float, int, bool]],
    cpu: int,
    memory: int,
    placement: str,
    hours: float | None,
    hours_left: float | None,
    room: float,
) -> None:
    """The vectorised scoring and the plain loop choose the same node for any input."""
    labels = [{} if is_open else {CLOSED_LABEL: "true"} for *_, is_open in nodes]
    table = NodeTable.build(
        [
            pool(
                "p",
                *(
                    node(f"n{i}", c, m * GB, cost=k, speed=s, labels=labels[i])
                    for i, (c, m, k, s, _, _) in enumerate(nodes)
                ),
            )
        ]
    )
    used = np.array([[min(u, c), 0, 0, 0, 0] for c, _, _, _, u, _ in nodes], dtype=float)
    ask = Ask(
        to_vector(Resources(cpu=cpu, memory_mb=memory * GB)),
        "cheapest" if placement == "cheapest" else "best_fit",
        hours=hours,
        hours_left=hours_left,
        cost_room=room,
    )
    fast = NumpyPlacer(table, used).choose(ask)
    slow = PythonPlacer(table, used).choose(ask)
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert (fast.index, fast.on_time) == (slow.index, slow.on_time)
        assert math.isclose(fast.rate, slow.rate, rel_tol=1e-9, abs_tol=1e-12)
