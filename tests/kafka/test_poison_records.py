"""The poison-record contract (tests/contract/poison.py) on real Apache Kafka, where a 1 MiB record
limit, group coordination and committed offsets are as in production."""

from __future__ import annotations

from tests.contract.brokers import OnKafka
from tests.contract.poison import PoisonRecordsContract


class TestPoisonRecordsOnKafka(OnKafka, PoisonRecordsContract):
    """Each poison record dead-lettered once, the record behind it processed: Apache Kafka."""
