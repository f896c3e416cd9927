"""Page load of a 2,000-task workflow in the console, in Debian's headless Chromium.

    python -m bench.bench_console [--tasks 2000] [--loads 3] [--json]

On a fresh embedded broker it runs the Workflow Manager and the Agent Manager (``mesh dev``'s
processes, no agents: the tasks stay queued) and ``mesh ui``, submits one plan of ``--tasks``
tasks in layers (each task depends on up to three of the 60 tasks before it), and opens the
workflow page ``--loads`` times. Each load is measured from navigation start to the DAG
rendered (the page's ``dag-rendered`` mark: the SVG is in the page and every node coloured),
with the layout computed once before (the console lays a plan out on its first SVG request and
caches it). Also printed: the server's answers for the view and the SVG (laid out and cached),
the SVG's size, and the browser's first paint. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, broker, console, report
from mesh.client import load_plan_file, submit_plan
from mesh.dev import DevMesh, DevOptions
from mesh.settings import Settings
from tooling.browser.chromium import chrome


def plan(tasks: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    specs = []
    for i in range(tasks):
        window = list(range(max(0, i - 60), i))
        deps = [f"t{j:04d}" for j in rng.sample(window, min(len(window), rng.randint(1, 3)))]
        specs.append(
            {
                "id": f"t{i:04d}",
                "name": f"step {i} of the pipeline",
                "capabilities": ["shell"],
                "depends_on": deps if i >= 20 else [],
                "command": ["true"],
            }
        )
    return {"description": f"{tasks} tasks in layers", "workflow_type": "dag", "tasks": specs}


def _load(driver: Any, url: str) -> dict[str, float]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, 120, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.body.dataset.dagRendered")
    )
    marks = driver.execute_script(
        "const m = performance.getEntriesByName('dag-rendered')[0];"
        "const p = performance.getEntriesByName('first-contentful-paint')[0];"
        "return [m.startTime, p ? p.startTime : null,"
        " document.querySelectorAll('svg.dag g.node').length];"
    )
    return {"dag_rendered_ms": marks[0], "first_paint_ms": marks[1] or 0.0, "nodes": marks[2]}


async def run(tasks: int, loads: int) -> dict[str, Any]:
    with broker("embedded") as servers:
        settings = Settings(bootstrap_servers=servers, topic_prefix="bench.")
        options = DevOptions(
            bootstrap=servers,
            shell_agents=0,
            python_agents=0,
            planner=False,
            resources=False,
            topics_dir=ROOT / "topics",
        )
        async with DevMesh(settings, options):
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "plan.json"
                path.write_text(json.dumps(plan(tasks)))
                submitted = await submit_plan(settings, load_plan_file(path))
            ui = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "mesh", "ui", "--port", "0", "--json"],
                env={**os.environ, **settings.to_env()},
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert ui.stdout is not None
                url = json.loads(await asyncio.to_thread(ui.stdout.readline))["url"]
                page = f"{url}workflows/{submitted.workflow_id}"
                api = f"{url}api/workflows/{submitted.workflow_id}"
                async with httpx.AsyncClient(timeout=60) as client:
                    # The Workflow Manager records workflow.started shortly: ask until it has.
                    while not (await client.get(api)).json().get("started"):  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                    began = time.perf_counter()
                    svg = await client.get(f"{api}/dag.svg")
                    svg_first = time.perf_counter() - began
                    began = time.perf_counter()
                    await client.get(f"{api}/dag.svg")
                    svg_cached = time.perf_counter() - began
                    began = time.perf_counter()
                    await client.get(api)
                    view = time.perf_counter() - began
                with chrome() as driver:
                    results = [await asyncio.to_thread(_load, driver, page) for _ in range(loads)]
            finally:
                ui.terminate()
                ui.wait(timeout=15)
    return {
        "tasks": tasks,
        "svg_bytes": len(svg.content),
        "svg_first_seconds": svg_first,
        "svg_cached_seconds": svg_cached,
        "view_seconds": view,
        "loads": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args.tasks, args.loads))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    rows = [
        [i + 1, f"{r['dag_rendered_ms']:.0f}", f"{r['first_paint_ms']:.0f}", r["nodes"]]
        for i, r in enumerate(figures["loads"])
    ]
    report(
        f"console: workflow page of {figures['tasks']} tasks "
        f"(SVG {figures['svg_bytes'] / 1024:.0f} KiB; server: view "
        f"{figures['view_seconds']:.2f} s, SVG {figures['svg_first_seconds']:.2f} s laid out, "
        f"{figures['svg_cached_seconds']:.2f} s cached)",
        ["load", "navigation → DAG rendered (ms)", "first paint (ms)", "nodes"],
        rows,
        as_json=False,
    )
    console.print("the layout was computed once (the first SVG answer); every load uses it")


if __name__ == "__main__":
    main()
