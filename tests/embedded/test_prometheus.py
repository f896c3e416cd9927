"""Prometheus, the real server from Debian's ``prometheus`` package, scrapes every process ``mesh
dev`` starts while the example diamond runs, and its HTTP API then shows what an operator's
dashboard would: four tasks completed, a consumer lag series for every component's group, and no
series labelled with a workflow id.

The binary comes from ``tooling/prometheus/install`` (run by ``make test``); without it the test
skips, except under ``CI=true``, where a missing binary is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mesh.broker._probe import free_port
from mesh.settings import Settings
from tests.e2e import ROOT, eventually, running_mesh, submit, wait_final

WITHIN = 120.0


def prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "prometheus is not installed; `make test` installs it (tooling/prometheus/install)"
            )
        pytest.skip("prometheus is not installed (tooling/prometheus/install installs it as root)")
    return path


@contextlib.contextmanager
def prometheus_server(binary: str, tmp_path: Path, targets: dict[str, int]) -> Iterator[str]:
    """A Prometheus on loopback scraping ``targets`` (process name → metrics port) every second;
    yields its base URL."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {
                "job_name": "mesh",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"process": name}}
                    for name, port in targets.items()
                ],
            }
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/query", params={"query": promql})
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_prometheus_scrapes_every_process_of_mesh_dev_through_the_diamond(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    binary = prometheus()
    settings = embedded_settings
    async with running_mesh(
        settings, shell_agents=2, python_agents=0, metrics_port=free_port()
    ) as mesh:
        ports = mesh.metrics_ports
        assert {"workflows", "agent-manager", "planner", "resources", "shell-1"} <= set(ports)
        assert len(set(ports.values())) == len(ports), ports
        with prometheus_server(binary, tmp_path, ports) as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:

                async def ready() -> bool:
                    with contextlib.suppress(httpx.HTTPError):
                        return (await client.get("/-/ready")).status_code == 200
                    return False

                await eventually(ready, within=WITHIN, what="Prometheus ready")

                async def all_up() -> bool:
                    up = await query(client, "up == 1")
                    return {s["metric"]["process"] for s in up} == set(ports)

                await eventually(all_up, within=WITHIN, what="every process scraped")

                run = await submit(settings, ROOT / "examples" / "diamond.yaml")
                state, _ = await wait_final(settings, run)
                assert state.status == "completed"
                workflow_id = str(run.workflow_id)

                async def completed() -> float | None:
                    found = await query(
                        client, 'sum(mesh_task_transitions_total{state="completed"})'
                    )
                    return float(found[0]["value"][1]) if found else None

                await eventually(
                    lambda: _equals(completed, 4.0), within=WITHIN, what="4 tasks completed"
                )

                groups = {
                    settings.group("workflows"): "workflows",
                    settings.group("agent-manager"): "agent-manager",
                    settings.group("planner"): "planner",
                    settings.group("resources"): "resources",
                }

                async def lag_groups() -> set[str] | None:
                    series = await query(
                        client,
                        "count by (messaging_consumer_group_name) (mesh_consumer_lag_records)",
                    )
                    seen = {s["metric"]["messaging_consumer_group_name"] for s in series}
                    return seen if set(groups) <= seen else None

                seen = await eventually(
                    lag_groups, within=WITHIN, what=f"lag series of every group {sorted(groups)}"
                )
                assert any(g.startswith(settings.group("agent.")) for g in seen), seen

                labelled = await client.get(
                    "/api/v1/series", params={"match[]": '{__name__=~".+",job="mesh"}'}
                )
                labelled.raise_for_status()
                series = labelled.json()["data"]
                assert len(series) > 50, len(series)  # the scrape really holds mesh's metrics
                with_id = [s for s in series if any(workflow_id in v for v in s.values())]
                assert with_id == []
                task_labels = {k for s in series for k in s} & {"workflow_id", "task_id"}
                assert task_labels == set()


async def _equals(check: Any, expected: float) -> bool:
    return bool(await check() == expected)
