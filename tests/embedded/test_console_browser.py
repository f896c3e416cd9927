"""The console in a real headless Chromium against a running mesh (embedded broker, real
processes): the diamond's nodes turn succeeded live, task D's panel shows its joined output,
and cancel on a running workflow cancels it. A screenshot of the workflow page is written
under ``$MESH_ARTIFACTS`` (default: a temporary folder) on every run.

One browser and one mesh for the module; browser calls run in a thread so that the mesh's
supervisor keeps reading its children meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.broker.embedded import EmbeddedBroker
from mesh.settings import Settings
from tests._console_support import Console, artifacts_dir, browser_or_skip, chrome, console
from tests.e2e import ROOT, plan_file, running_mesh, submit

WAIT = 90.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    browser_or_skip()
    with chrome() as driver:
        yield driver


@pytest.fixture(scope="module")
def mesh_settings(embedded_broker: EmbeddedBroker) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    return Settings(bootstrap_servers=embedded_broker.bootstrap_servers, topic_prefix=prefix)


@pytest.fixture(scope="module")
async def ui(mesh_settings: Settings) -> AsyncIterator[Console]:
    async with running_mesh(mesh_settings, shell_agents=2, python_agents=0):
        with console(mesh_settings.to_env()) as served:
            yield served


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition)
    except Exception as exc:
        problems = [entry["message"] for entry in driver.get_log("browser")]
        raise AssertionError(f"timed out waiting for {what}; browser said {problems}") from exc


def _statuses(driver: Any) -> dict[str, str]:
    nodes = driver.find_elements("css selector", "svg.dag g.node")
    return {n.get_attribute("data-task"): n.get_attribute("data-status") for n in nodes}


def _diamond_in_the_browser(driver: Any, url: str, shot: Path) -> dict[str, Any]:
    driver.get(url)
    driver.execute_script("window.meshMarker = 'no reload';")
    _wait(
        driver,
        lambda d: _statuses(d) == dict.fromkeys("ABCD", "succeeded"),
        "the four nodes to turn succeeded",
    )
    driver.save_screenshot(str(shot))
    node = driver.find_element("css selector", 'svg.dag g.node[data-task="D"]')
    node.click()
    output = _wait(
        driver,
        lambda d: d.find_elements("css selector", "#panel #output pre.out-json"),
        "task D's output in its panel",
    )[0].text
    return {
        "marker": driver.execute_script("return window.meshMarker;"),
        "output": output,
        "panel": driver.find_element("id", "panel").text,
        "status": driver.find_element("id", "wf-status").text,
    }


async def test_the_diamond_turns_succeeded_live_and_d_shows_its_joined_output(
    ui: Console, mesh_settings: Settings, browser: Any
) -> None:
    submitted = await submit(mesh_settings, ROOT / "examples" / "diamond.yaml")
    shot = artifacts_dir() / "console-workflow.png"
    seen = await asyncio.to_thread(
        _diamond_in_the_browser, browser, f"{ui.url}workflows/{submitted.workflow_id}", shot
    )
    assert seen["marker"] == "no reload"  # the page was never reloaded: it went live
    assert '"joined": "HELLO olleh"' in seen["output"]
    assert "join B and C" in seen["panel"]
    assert seen["status"] == "completed"
    assert shot.stat().st_size > 10_000


def _cancel_in_the_browser(driver: Any, url: str) -> dict[str, Any]:
    driver.get(url)
    _wait(
        driver,
        lambda d: _statuses(d).get("sleep") in ("assigned", "running"),
        "the sleeping task to run",
    )
    driver.find_element("id", "cancel").click()
    _wait(
        driver,
        lambda d: d.find_element("tag name", "body").get_attribute("data-status") == "cancelled",
        "the workflow to show cancelled",
    )
    _wait(driver, lambda d: _statuses(d).get("sleep") == "cancelled", "the task cancelled")
    _wait(
        driver,
        lambda d: "accepted" in d.find_element("id", "reply").text,
        "the Workflow Manager's answer in the page",
    )
    return {"reply": driver.find_element("id", "reply").text, "statuses": _statuses(driver)}


async def test_cancel_on_a_running_workflow_cancels_it(
    ui: Console, mesh_settings: Settings, browser: Any, tmp_path: Path
) -> None:
    plan = {
        "description": "one long task to cancel",
        "workflow_type": "dag",
        "tasks": [
            {
                "id": "sleep",
                "name": "sleep a long time",
                "capabilities": ["shell"],
                "command": ["python3", "-c", "import time; time.sleep(600)"],
            },
            {
                "id": "after",
                "name": "never runs",
                "capabilities": ["shell"],
                "depends_on": ["sleep"],
                "command": ["python3", "-c", "print('too late')"],
            },
        ],
    }
    submitted = await submit(mesh_settings, plan_file(tmp_path, plan))
    seen = await asyncio.to_thread(
        _cancel_in_the_browser, browser, f"{ui.url}workflows/{submitted.workflow_id}"
    )
    assert "cancel: accepted" in seen["reply"]
    assert seen["statuses"] == {"sleep": "cancelled", "after": "cancelled"}
