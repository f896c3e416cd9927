"""Agent Manager figures: placement decisions per second with 10, 100 and 1,000 registered agents,
and how soon a dead agent is noticed (the reassignment threshold) at given heartbeat settings.

The decision path is the one the Agent Manager runs for each waiting attempt: the agents'
health at the round's instant (once per round) indexed by a ``Placer``, then the strategy's
choice among the capable ones. Placement updates the chosen agent's load as the component does. No
Kafka: the figure is the ceiling the component's placement can reach, separate from produce
cost (measured by the Kafka benchmarks).

With ``--broker kafka`` (or ``embedded``) it also *measures* death → reassignment: a real agent
process running four attempts is killed with SIGKILL under an in-process Agent Manager, and the
clock stops at the last ``TaskReassigned`` read back from ``tasks.results``.

    python -m bench.bench_agent_manager [--broker kafka|embedded] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime

from bench._common import report
from mesh.agentmanager import HealthPolicy, Placer, Registry, Requirements
from mesh.agentmanager._matching import Strategy
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    Capability,
    CapabilityRequirement,
    Producer,
    meta,
)

ME = Producer(component="bench", instance="bench")
CAPS = ("code", "test", "review", "docs", "shell")


def registry_of(agents: int, now: datetime) -> Registry:
    registry = Registry()
    rng = random.Random(agents)  # noqa: S311 - a benchmark's fixture, not cryptography
    for i in range(agents):
        agent_id = f"agent-{i}"
        caps = rng.sample(CAPS, 2)
        registry.fold_registry(
            (0, i),
            agent_id,
            AgentRegistered(
                **meta(ME, correlation_id=agent_id),
                agent_id=agent_id,
                kind="command",
                capabilities=[Capability(name=c) for c in caps],
                max_concurrency=4,
            ),
        )
        registry.on_heartbeat(
            AgentHeartbeat(
                **meta(ME, correlation_id=agent_id),
                agent_id=agent_id,
                health="healthy",
                running_tasks=0,
                load=0,
                interval_seconds=5,
            )
        )
    return registry


def decisions_per_second(agents: int, strategy: Strategy, seconds: float = 1.0) -> float:
    now = datetime.now(UTC)
    registry = registry_of(agents, now)
    rng = random.Random(1)  # noqa: S311 - load balancing, not cryptography
    needs = [Requirements(required=(CapabilityRequirement(name=c),)) for c in CAPS]
    made = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        # One round as the component runs it: the view once, then up to 500 placements (the
        # component's batch size) by its Placer.
        placer = Placer(registry.agents(now))
        for i in range(500):
            chosen = placer.place(needs[i % len(needs)], strategy, rng)
            made += 1
            if chosen is not None:
                placer.took(chosen.agent.agent_id)
    return made / (time.perf_counter() - began)


def detection_bound(interval: float, policy: HealthPolicy) -> float:
    """Worst case from death to TaskReassigned: the beat the agent was about to send, the
    threshold, and one placement round (the component re-evaluates at least every second)."""
    return interval * (1 + policy.unhealthy_after) + 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--broker", choices=["kafka", "embedded"], default=None)
    args = parser.parse_args()
    rows: list[list[object]] = []
    for agents in (10, 100, 1_000):
        for strategy in ("least_loaded", "power_of_two"):
            rows.append([agents, strategy, decisions_per_second(agents, strategy)])
    report(
        "Agent Manager placement decisions per second",
        ["agents", "strategy", "decisions/s"],
        rows,
        as_json=args.json,
    )
    policy = HealthPolicy()
    report(
        "Death → reassignment, upper bound (default policy: unhealthy after 2 missed beats)",
        ["heartbeat s", "bound s"],
        [[i, detection_bound(i, policy)] for i in (0.5, 1.0, 5.0)],
        as_json=args.json,
    )
    if args.broker is not None:
        from bench._am_death import death_to_reassignment
        from bench._common import aiokafka_baseline, broker
        from mesh.settings import Settings

        measured: list[list[object]] = []
        with broker(args.broker) as servers:
            raw = asyncio.run(aiokafka_baseline(Settings(bootstrap_servers=servers), 2_000))
            for interval in (0.5, 1.0, 5.0):
                first, last = asyncio.run(death_to_reassignment(servers, interval, policy))
                bound = detection_bound(interval, policy)
                measured.append([interval, first, last, bound, first / raw["p50"]])
        report(
            f"Death → reassignment, measured on {args.broker} (kill -9, 4 attempts); raw "
            f"aiokafka produce→consume in the same run: p50 {raw['p50'] * 1000:.1f} ms, "
            f"p99 {raw['p99'] * 1000:.1f} ms",
            ["heartbeat s", "first s", "last s", "bound s", "first / raw p50"],
            measured,
            as_json=args.json,
        )


if __name__ == "__main__":
    main()
