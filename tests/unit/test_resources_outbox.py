"""The allocator's outbox knows its own records when they come back on ``resources``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.events import Mapper
from mesh.resources.runtime._outbox import Outbox
from mesh.settings import Settings
from tests._resources_support import TEST, request


@dataclass
class Record:
    topic: str
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = None
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


def test_an_echo_of_a_sent_record_is_known_once_and_others_never() -> None:
    """The allocator folded what it sent when it made it: reading it back is skipped (once),
    while the same request from anyone else (another event id) is folded as usual."""
    settings = Settings()
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    outbox = Outbox(settings, mapper, TEST)
    ours = request("t", 1, 1024)
    outbox.event(ours)
    _key, value, headers = mapper.encode(ours)
    echo = Record(settings.topic("resources"), value, list(headers))
    theirs = request("t", 1, 1024, allocation_id=ours.allocation_id)
    _key, value, headers = mapper.encode(theirs)
    assert not outbox.echo(Record(settings.topic("resources"), value, list(headers)))
    assert outbox.echo(echo)
    assert not outbox.echo(echo), "a second copy (a redelivery) is folded: the ledger ignores it"
