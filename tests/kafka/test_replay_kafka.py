"""Replay for debugging, status, watch and list on real Apache Kafka (transactions, exact
offsets by time), on workflows a real mesh ran (see ``tests._replay_support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests import _replay_support as cases
from tests._replay_support import World
from tooling.kafka.kafka_broker import ApacheKafka


@pytest.fixture(scope="module")
async def w(
    real_kafka: ApacheKafka, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("replay")
    async with cases.world(real_kafka.bootstrap_servers, tmp) as world:
        yield world


async def test_replay_shows_a_timeline_and_equals_live(w: World) -> None:
    await cases.check_timeline_and_equality(w)


async def test_until_event_and_until_offset(w: World) -> None:
    await cases.check_until_event_and_offset(w)


async def test_until_time_replays_the_prefix_up_to_that_time(w: World) -> None:
    await cases.check_until_time(w)


async def test_export_then_from_file_gives_the_same_final_state(w: World) -> None:
    await cases.check_export_round_trip(w)


async def test_step_through_stdin(w: World) -> None:
    await cases.check_step(w)


async def test_diff_live_and_shadow_replay_report_a_tampered_snapshot(w: World) -> None:
    await cases.check_diff_live_and_shadow(w)


async def test_shadow_replay_is_bounded_by_its_window(w: World) -> None:
    """--since/--until are looked up by timestamp on every partition."""
    await cases.check_shadow_window(w)


async def test_status_list_and_watch_a_running_workflow(w: World) -> None:
    await cases.check_status_list_and_watch(w)


async def test_unknown_workflow_is_one_line(w: World) -> None:
    await cases.check_unknown_workflow_is_one_line(w)
