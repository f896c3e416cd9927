"""Capability matching, load balancing and health classification of the Agent Manager (pure).

Seeded ``random.Random`` drives power-of-two choices so runs repeat (not cryptography).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from mesh.agentmanager import (
    AgentState,
    Candidate,
    HealthPolicy,
    Requirements,
    choose,
    classify,
    match_capabilities,
    missed_heartbeats,
    why_not,
)
from mesh.errors import ConfigError
from mesh.events import Capability, CapabilityRequirement, Resources

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def agent(
    agent_id: str,
    *caps: str,
    outstanding: int = 0,
    capacity: int = 1,
    health: str = "healthy",
    breaker: str = "closed",
    status: str = "ready",
    free: Resources | None = None,
) -> AgentState:
    return AgentState(
        agent_id=agent_id,
        kind="command",
        capabilities=tuple(Capability(name=c) for c in caps),
        max_concurrency=capacity,
        outstanding=outstanding,
        health=health,  # type: ignore[arg-type]
        missed_heartbeats=0,
        last_seen=NOW,
        status=status,
        breaker=breaker,  # type: ignore[arg-type]
        resources_free=free,
    )


def needs(*required: str, preferred: tuple[str, ...] = (), **resources: float) -> Requirements:
    return Requirements(
        required=tuple(CapabilityRequirement(name=r) for r in required),
        preferred=tuple(CapabilityRequirement(name=p) for p in preferred),
        resources=Resources(**resources),  # type: ignore[arg-type]
    )


def ids(candidates: Sequence[Candidate]) -> list[str]:
    return [c.agent.agent_id for c in candidates]


def test_only_agents_with_every_required_capability_match() -> None:
    agents = [agent("a", "code"), agent("b", "code", "test"), agent("c", "test")]
    assert ids(match_capabilities(needs("code", "test"), agents)) == ["b"]
    assert set(ids(match_capabilities(needs("test"), agents))) == {"b", "c"}
    assert match_capabilities(needs("deploy"), agents) == []


def test_preferred_capabilities_rank_first_then_load_weighted_by_capacity() -> None:
    agents = [
        agent("busy-big", "code", outstanding=2, capacity=8),
        agent("idle-small", "code", outstanding=0, capacity=1),
        agent("preferred", "code", "rust", outstanding=3, capacity=4),
    ]
    ranked = ids(match_capabilities(needs("code", preferred=("rust",)), agents))
    # (outstanding + 1) / capacity: busy-big 3/8 beats idle-small 1/1.
    assert ranked == ["preferred", "busy-big", "idle-small"]


def test_unavailable_agents_do_not_match() -> None:
    agents = [
        agent("ok", "x"),
        agent("sick", "x", health="unhealthy"),
        agent("gone", "x", health="offline"),
        agent("draining", "x", status="draining"),
        agent("open", "x", breaker="open"),
        agent("probing", "x", breaker="half_open", outstanding=1, capacity=4),
        agent("probe-free", "x", breaker="half_open"),
        agent("slow", "x", health="degraded"),
    ]
    assert set(ids(match_capabilities(needs("x"), agents))) == {"ok", "probe-free", "slow"}


def test_resource_needs_exclude_agents_without_them_free() -> None:
    agents = [
        agent("gpu", "ml", free=Resources(gpu=1, cpu=2)),
        agent("cpu", "ml", free=Resources(cpu=8)),
        agent("unknown", "ml"),
    ]
    assert set(ids(match_capabilities(needs("ml", gpu=1), agents))) == {"gpu", "unknown"}


@pytest.mark.parametrize("strategy", ["least_loaded", "power_of_two"])
def test_both_strategies_spread_uniform_load_within_the_fair_share(strategy: str) -> None:
    agents = {name: agent(name, "w", capacity=2) for name in "abcd"}
    rng = random.Random(7)  # noqa: S311
    counts: Counter[str] = Counter()
    for _ in range(400):
        chosen = choose(match_capabilities(needs("w"), agents.values()), strategy, rng)  # type: ignore[arg-type]
        assert chosen is not None
        name = chosen.agent.agent_id
        counts[name] += 1
        agents[name] = agent(name, "w", capacity=2, outstanding=agents[name].outstanding + 1)
    assert max(counts.values()) <= 1.3 * 100, counts


def test_power_of_two_is_not_deterministic_but_least_loaded_is() -> None:
    agents = [agent(n, "w") for n in "abcdef"]
    ranked = match_capabilities(needs("w"), agents)
    assert {choose(ranked, "least_loaded").agent.agent_id for _ in range(20)} == {"a"}  # type: ignore[union-attr]
    rng = random.Random(1)  # noqa: S311
    picks = {choose(ranked, "power_of_two", rng).agent.agent_id for _ in range(50)}  # type: ignore[union-attr]
    assert len(picks) > 1


def test_no_match_has_a_reason() -> None:
    kind, reason, _ = why_not(needs("deploy"), [agent("a", "code")])
    assert kind == "no_capable_agent"
    assert "deploy" in reason
    kind, reason, ruled_out = why_not(needs("code"), [agent("a", "code", breaker="open")])
    assert (kind, ruled_out) == ("breaker_open", ("a",))
    assert "breaker open" in reason
    kind, _, ruled_out = why_not(needs("code"), [agent("a", "code", health="unhealthy")])
    assert (kind, ruled_out) == ("no_healthy_agent", ("a",))


def test_missed_heartbeats_and_health_thresholds() -> None:
    policy = HealthPolicy(degraded_after=1, unhealthy_after=2, offline_after=5)
    beat = NOW - timedelta(seconds=1)
    assert missed_heartbeats(beat, 1.0, NOW) == 0
    assert missed_heartbeats(NOW - timedelta(seconds=3), 1.0, NOW) == 2
    assert classify(0, "healthy", policy) == ("healthy", False)
    assert classify(0, "degraded", policy) == ("degraded", False)
    assert classify(1.2, "healthy", policy) == ("degraded", False)
    assert classify(0, "unhealthy", policy) == ("unhealthy", False)  # alive: keeps its work
    assert classify(2, "healthy", policy) == ("unhealthy", True)  # silent: presumed dead
    assert classify(6, None, policy) == ("offline", True)
    assert HealthPolicy.after(3).unhealthy_after == 3
    with pytest.raises(ConfigError):
        HealthPolicy(degraded_after=3, unhealthy_after=2)


def test_a_busy_cpu_does_not_exclude_an_agent_but_missing_memory_does() -> None:
    """CPU is compressible (free CPU comes from the load average); memory is not."""
    agents = [
        agent("busy", "x", free=Resources(cpu=0, memory_mb=4096)),
        agent("full", "x", free=Resources(cpu=8, memory_mb=100)),
    ]
    assert ids(match_capabilities(needs("x", cpu=1, memory_mb=1024), agents)) == ["busy"]
