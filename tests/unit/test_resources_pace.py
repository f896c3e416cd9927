"""The allocator's pace: a round costs in proportion to what waits, so after a round over a
queue the next one waits a multiple of its cost (the loop comes back for it) instead of running
after every input batch; a cheap round is due again at once."""

from __future__ import annotations

import time

from mesh.resources.runtime._app import ResourceService
from mesh.settings import Settings
from tests._resources_support import pools_config, request


def service() -> ResourceService:
    pools = pools_config(
        {"id": "small", "nodes": [{"id": "n", "count": 1, "cpu": 1, "memory_mb": 1024}]},
        discovery={"enabled": False},
    )
    return ResourceService(Settings(topic_prefix="t."), pools=pools)


def test_a_round_over_a_queue_puts_the_next_one_off_and_the_loop_owes_it() -> None:
    svc = service()
    svc.leader = True
    for pool in svc.pools.pools(svc.me):
        svc.allocator.apply(pool)
    for _ in range(300):  # one fits; 299 wait for it
        svc.allocator.apply(request(cpu=1))
        svc._new_requests = True
    svc._round(tick=False)
    assert len(svc.allocator.ledger.held) == 1
    assert len(svc.allocator.ledger.waiting) == 299
    assert svc._next_round > 0.0  # paced after what the round cost

    svc._next_round = time.monotonic() + 60  # as if that round had been slow
    late = request(cpu=1)
    svc.allocator.apply(late)
    svc._new_requests = True
    svc._round(tick=False)
    assert svc._round_owed  # put off, not dropped
    assert not svc.allocator.ledger.waiting[late.allocation_id].queued

    svc._next_round = 0.0  # due: the loop's next pass runs it
    svc._round(tick=False)
    assert not svc._round_owed
    assert svc.allocator.ledger.waiting[late.allocation_id].queued  # decided: it queues
