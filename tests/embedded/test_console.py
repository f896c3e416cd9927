"""The console against a real mesh on the embedded broker: live streams addressed by Kafka
positions that resume after a console restart with nothing missed or repeated; the API's
views; and off loopback, a token or nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx

from mesh.replay import read_history
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from tests._console_support import console, read_events
from tests.e2e import ROOT, running_mesh, submit, wait_final


def _final(events: list[tuple[str | None, str, dict[str, object]]]) -> bool:
    return any(data.get("type") == "workflow.completed" for _, _, data in events)


async def test_a_reconnect_after_a_restart_resumes_with_nothing_missed_or_repeated(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings
    async with running_mesh(settings, shell_agents=2, python_agents=0):
        submitted = await submit(settings, ROOT / "examples" / "diamond.yaml")
        wid = submitted.workflow_id
        path = f"/api/workflows/{wid}/stream?after=-1"
        with console(settings.to_env()) as first:
            async with httpx.AsyncClient(base_url=first.url) as client:
                before = await read_events(client, path, stop=lambda e: len(e) >= 5)
        await wait_final(settings, submitted)  # the rest happens while no console runs
        last_id = before[-1][0]
        assert last_id is not None
        with console(settings.to_env()) as second:  # a new process: nothing kept in memory
            async with httpx.AsyncClient(base_url=second.url) as client:
                after = await read_events(
                    client, path, headers={"Last-Event-ID": last_id}, stop=_final
                )
                view = (await client.get(f"/api/workflows/{wid}")).json()
                task = (await client.get(f"/api/workflows/{wid}/tasks/D")).json()
                replay = (await client.get(f"/api/workflows/{wid}/replay?event=1")).json()
                history = (await client.get(f"/api/workflows/{wid}/history")).json()
        recorded = (await read_history(settings, wid)).records
    seen = before + after
    topic = settings.topic("workflow.events")
    partition = view["partition"]
    # Every history event exactly once, in order, each id its own Kafka position.
    assert [d["sequence"] for _, _, d in seen] == [r.event.sequence for r in recorded]
    assert [i for i, _, _ in seen] == [f"{topic}:{partition}:{r.offset}" for r in recorded]
    assert {n for _, n, _ in seen} == {"history"}
    assert seen[-1][2]["workflow"]["done"] == 4
    assert all(after_id != last_id for after_id, _, _ in after)
    assert view["workflow"]["status"] == "completed"
    assert {t: b["status"] for t, b in view["tasks"].items()} == dict.fromkeys("ABCD", "succeeded")
    assert task["output"]["json"] == {"joined": "HELLO olleh"}
    assert [a["outcome"] for a in task["attempts"]] == ["succeeded"]
    assert replay["tasks"]["A"]["status"] == "pending"  # after workflow.started only
    assert replay["difference_count"] > 0  # live has moved on from there
    assert [s["position"] for s in history["steps"]] == [
        f"{partition}:{r.offset}" for r in recorded
    ]


async def test_the_workflows_stream_resumes_from_its_positions(embedded_settings: Settings) -> None:
    settings = embedded_settings
    async with running_mesh(settings, shell_agents=2, python_agents=0):
        with console(settings.to_env()) as ui:
            async with httpx.AsyncClient(base_url=ui.url) as client:
                empty = (await client.get("/api/workflows")).json()
                assert empty["rows"] == []
                submitted = await submit(settings, ROOT / "examples" / "diamond.yaml")
                await wait_final(settings, submitted)
                done = await read_events(
                    client,
                    "/api/workflows/stream",
                    headers={"Last-Event-ID": empty["after"]},
                    stop=lambda e: True,
                )
                rows = done[0][2]["rows"]
                assert [(r["workflow_id"], r["status"], r["done"]) for r in rows] == [
                    (submitted.workflow_id, "completed", 4)
                ]
                again = await read_events(
                    client,
                    "/api/workflows/stream",
                    headers={"Last-Event-ID": str(done[0][0])},
                    stop=lambda e: True,
                )
                assert again[0][2]["rows"] == []  # nothing changed since: nothing repeated


async def test_off_loopback_the_console_needs_a_token_and_refuses_requests_without_it(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings
    await apply_topics(settings, load_topics(ROOT / "topics", prefix=settings.topic_prefix).topics)
    env = settings.to_env()
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mesh", "ui", "--host", "0.0.0.0", "--port", "0"],
        env={**env, "MESH_UI_TOKEN": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "MESH_UI_TOKEN" in refused.stderr
    token = "t0ken-for-the-test"
    with console({**env, "MESH_UI_TOKEN": token}, "--host", "0.0.0.0") as ui:
        port = ui.url.rsplit(":", 1)[1].strip("/")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in (
                "/workflows",
                "/api/workflows",
                "/api/workflows/stream",
                "/static/console.js",
            ):
                assert (await client.get(path)).status_code == 401, path
            control = await client.post("/api/workflows/wf-x/control", json={"action": "cancel"})
            assert control.status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/workflows", headers=auth)).status_code == 200
            assert (await client.get("/api/workflows", headers=auth)).json()["rows"] == []
