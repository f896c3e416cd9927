"""Fixtures the real-Kafka topic modules share outside the topics contract's class (whose own
fixtures take precedence inside it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from mesh.settings import Settings
from tests.contract.topics import admin_client, copy_shipped


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    return copy_shipped(tmp_path)


@pytest.fixture
async def admin(kafka_settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    async with admin_client(kafka_settings) as client:
        yield client
