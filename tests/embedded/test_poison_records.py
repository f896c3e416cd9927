"""The poison-record contract (tests/contract/poison.py) on the embedded broker."""

from __future__ import annotations

from tests.contract.brokers import OnEmbedded
from tests.contract.poison import PoisonRecordsContract


class TestPoisonRecordsOnEmbedded(OnEmbedded, PoisonRecordsContract):
    """Each poison record dead-lettered once, the record behind it processed: embedded broker."""
