"""Replay for debugging, status, watch and list on the embedded broker, on workflows a real
mesh ran (see ``tests._replay_support``). The embedded broker cannot look offsets up by time:
``--until TIME`` still works, by record timestamps, and says so."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mesh.broker.embedded import EmbeddedBroker
from tests import _replay_support as cases
from tests._replay_support import World


@pytest.fixture(scope="module")
async def w(
    embedded_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with cases.world(
        embedded_broker.bootstrap_servers, tmp_path_factory.mktemp("replay")
    ) as world:
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
    await cases.check_shadow_window(w)


async def test_status_list_and_watch_a_running_workflow(w: World) -> None:
    await cases.check_status_list_and_watch(w)


async def test_unknown_workflow_is_one_line(w: World) -> None:
    await cases.check_unknown_workflow_is_one_line(w)
