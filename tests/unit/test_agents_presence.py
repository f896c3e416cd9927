"""An agent's heartbeats keep their pace whatever happens to their acknowledgements."""

from __future__ import annotations

import asyncio
from typing import cast

from mesh.agents._attempts import Attempts
from mesh.agents._config import WorkerConfig
from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Runner
from mesh.agents._presence import Presence
from mesh.events import AgentHeartbeat, Event, Producer


class _StalledBroker:
    """An outbox whose acknowledgements never come, as while a partition's leader moves."""

    def __init__(self) -> None:
        self.sent: list[Event] = []
        self.more = asyncio.Event()

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        self.sent.append(event)
        self.more.set()
        if wait:
            await asyncio.Event().wait()  # never acknowledged


class _Idle:
    running = 0
    fatal = None


async def test_a_beat_never_acknowledged_does_not_hold_back_the_next() -> None:
    config = WorkerConfig(agent_id="a-1", kind="command", heartbeat_interval=0.01)
    runner = cast(Runner, type("R", (), {"capabilities": ("shell",)})())
    presence = Presence(config, runner, Producer(component="agent", instance="a-1"))
    broker = _StalledBroker()
    beating = asyncio.create_task(
        presence.heartbeats(cast(Outbox, broker), cast(Attempts, _Idle()))
    )
    try:
        async with asyncio.timeout(10):
            while len(broker.sent) < 3:
                broker.more.clear()
                await broker.more.wait()
    finally:
        beating.cancel()
    assert all(isinstance(e, AgentHeartbeat) for e in broker.sent)
    stamps = [e.occurred_at for e in broker.sent]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
