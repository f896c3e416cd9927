"""The diamond on the embedded broker: at-least-once path, same outcome as on real Kafka."""

from __future__ import annotations

from mesh.settings import Settings
from tests.e2e import check_diamond


async def test_diamond_completes_on_the_embedded_broker(embedded_settings: Settings) -> None:
    await check_diamond(embedded_settings)
