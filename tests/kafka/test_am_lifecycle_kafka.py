"""The Agent Manager's lifecycle on real Apache Kafka with real processes: ``mesh agents spawn``
and ``terminate`` start and stop agent processes (checked by pid) through a running
``mesh run agents``; a spawned LLM-CLI-style command agent gets a prompt holding ``; rm -rf ~``
as one argument, no shell; a crashed agent is restarted under a fresh id and its old id leaves
the registry; and with no Agent Manager the CLI says so in one line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.events import (
    AgentRegistered,
    Capability,
    TaskCompleted,
    TaskReassigned,
    TaskStarted,
    meta,
)
from mesh.settings import Settings
from tests._agents_support import (
    TEST,
    AgentProcess,
    create_topics,
    mesh_process,
    pid_gone,
    producer,
    publish,
    reader,
    spec,
    task_ready,
)
from tests.e2e import plan_file, running_mesh, submit, wait_final, wait_for
from tests.helpers import Run, assert_one_line_error, run_mesh

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"
PROMPT = "; rm -rf ~"


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    await create_topics(kafka_settings)
    return kafka_settings


def _templates(tmp_path: Path) -> Path:
    """A command agent shaped like an LLM coding CLI (``tool -p {prompt}``), and a shell one."""
    path = tmp_path / "templates.yaml"
    templates = {
        "templates": {
            "fake-llm": {
                "kind": "command",
                "role": "core",
                "capabilities": ["code#python"],
                "argv": [sys.executable, "-c", PRINT_ARGV, "-p", "{prompt}"],
                "heartbeat_interval": 0.5,
            },
            "shell": {
                "kind": "command",
                "capabilities": ["shell"],
                "allow_task_command": True,
                "heartbeat_interval": 0.5,
            },
        }
    }
    path.write_text(yaml.safe_dump(templates))
    return path


async def _mesh(settings: Settings, *args: str) -> Run:
    env = {"MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    env["MESH_TOPIC_PREFIX"] = settings.topic_prefix
    return await asyncio.to_thread(run_mesh, *args, env=env, timeout=120)


async def _json(settings: Settings, *args: str) -> Any:
    run = await _mesh(settings, *args, "--json")
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


async def _listed(settings: Settings) -> dict[str, dict[str, Any]]:
    return {a["agent_id"]: a for a in (await _json(settings, "agents", "list"))["agents"]}


async def _until_listed(settings: Settings, check: Any, what: str) -> dict[str, dict[str, Any]]:
    async with asyncio.timeout(60):
        while True:
            listed = await _listed(settings)
            if check(listed):
                return listed
            await asyncio.sleep(0.2)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


def _manager(settings: Settings, tmp_path: Path, home: Path) -> Any:
    args = ["run", "agents", "--templates", str(_templates(tmp_path)), "--max-restarts", "2"]
    return mesh_process(settings, "agent-manager", args, tmp_path, env={"HOME": str(home)})


async def test_spawn_and_terminate_start_and_stop_real_processes(
    settings: Settings, tmp_path: Path
) -> None:
    """``mesh agents spawn fake-llm --count 2`` answers with two pids that run and are
    registered; a task's prompt ``; rm -rf ~`` reaches the command as one argument (HOME
    untouched); ``mesh agents terminate`` stops one gracefully: its pid is gone, it exited 0,
    and it left the registry."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep-me").write_text("still here")
    with _manager(settings, tmp_path, home) as manager:
        spawned = (await _json(settings, "agents", "spawn", "fake-llm", "--count", "2"))["agents"]
        assert [a["agent_id"] for a in spawned] == ["fake-llm-1", "fake-llm-2"], manager.output()
        pids = {a["agent_id"]: a["pid"] for a in spawned}
        assert all(not pid_gone(pid) for pid in pids.values())
        listed = await _until_listed(settings, lambda got: set(pids) <= set(got), "listed")
        assert {listed[a]["pid"] for a in pids} == set(pids.values())
        assert {listed[a]["health"] for a in pids} == {"healthy"}

        health = await _json(settings, "agents", "health", "fake-llm-1")
        assert [a["agent_id"] for a in health["agents"]] == ["fake-llm-1"]

        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            task = spec("prompted", "code", prompt=PROMPT)
            await publish(out, settings, "tasks.ready", task_ready(task, "wf-prompt"))
            events = await results.until(
                lambda evs: any(isinstance(e, TaskCompleted) for e in evs), what="the result"
            )
        [done] = [e for e in events if isinstance(e, TaskCompleted)]
        assert json.loads(str(done.output["stdout"])) == ["-p", PROMPT]
        assert (home / "keep-me").read_text() == "still here"

        stopped = await _json(settings, "agents", "terminate", "fake-llm-1", "--grace", "20")
        assert stopped["pid"] == pids["fake-llm-1"]
        assert (stopped["exit_code"], stopped["forced"], stopped["supervised"]) == (0, False, True)
        assert pid_gone(pids["fake-llm-1"])
        assert not pid_gone(pids["fake-llm-2"])
        await _until_listed(settings, lambda got: "fake-llm-1" not in got, "deregistered")

        refused = await _mesh(settings, "agents", "terminate", "nobody-1")
        assert "no agent 'nobody-1' is registered" in assert_one_line_error(refused)
        unknown = await _mesh(settings, "agents", "spawn", "no-such-template")
        line = assert_one_line_error(unknown)
        assert "no agent template named 'no-such-template'" in line
        assert "fake-llm" in line
        assert _stop(manager) == 0, manager.output()
    assert pid_gone(pids["fake-llm-2"])  # the manager stopped what it started


async def test_a_crashed_agent_restarts_under_a_fresh_id(
    settings: Settings, tmp_path: Path
) -> None:
    """An id registered before the manager started is not reused (shell-1 is taken, so the
    spawn is shell-2). kill -9 of the spawned agent: the supervisor starts ``shell-2.r1`` (a new
    pid, registered) and deregisters ``shell-2``, which held no work, so no ghost remains.
    ``terminate --grace 1`` of an agent busy for longer kills it (forced) and its attempt is
    reassigned."""
    async with producer(settings) as out:
        taken = AgentRegistered(
            **meta(TEST, correlation_id="shell-1"),
            agent_id="shell-1",
            kind="command",
            capabilities=[Capability(name="other")],
        )
        await publish(out, settings, "agents", taken)
    with _manager(settings, tmp_path, tmp_path) as manager:
        [agent] = (await _json(settings, "agents", "spawn", "shell"))["agents"]
        assert agent["agent_id"] == "shell-2", manager.output()
        os.kill(agent["pid"], signal.SIGKILL)
        async with reader(settings, "agents") as registry:
            await registry.until(
                lambda evs: any(
                    isinstance(e, AgentRegistered) and e.agent_id == "shell-2.r1" for e in evs
                ),
                what="the restarted agent's registration",
            )
        listed = await _until_listed(
            settings, lambda got: "shell-2" not in got and "shell-2.r1" in got, "the new id only"
        )
        new_pid = listed["shell-2.r1"]["pid"]
        assert new_pid != agent["pid"]
        assert not pid_gone(new_pid)

        # Terminate while it runs an attempt longer than the grace period: killed, not drained;
        # the attempt is reassigned, then the manager deregisters the id the agent could not.
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            task = spec(
                "long", "shell", command=[sys.executable, "-c", "import time; time.sleep(60)"]
            )
            await publish(out, settings, "tasks.ready", task_ready(task, "wf-long"))
            await results.until(
                lambda evs: any(isinstance(e, TaskStarted) for e in evs), what="the long attempt"
            )
            stopped = await _json(settings, "agents", "terminate", "shell-2.r1", "--grace", "1")
            assert (stopped["pid"], stopped["forced"]) == (new_pid, True)
            assert pid_gone(new_pid)
            await results.until(
                lambda evs: any(isinstance(e, TaskReassigned) for e in evs),
                what="the killed agent's attempt to be reassigned",
            )
        await _until_listed(settings, lambda got: "shell-2.r1" not in got, "deregistered")
        assert _stop(manager) == 0, manager.output()


async def test_spawn_without_an_agent_manager_fails_in_one_line(settings: Settings) -> None:
    run = await _mesh(settings, "agents", "spawn", "shell", "--timeout", "2")
    assert "no Agent Manager answered within 2 s" in assert_one_line_error(run)


def _stop(process: AgentProcess) -> int:
    process.process.send_signal(signal.SIGTERM)
    return process.exited(timeout=60)


async def test_kill_9_of_an_agent_through_the_whole_mesh(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """mesh dev's processes (Workflow Manager, Agent Manager, two command agents) run six
    parallel tasks; the agent running some of them is killed with SIGKILL. Its attempts are
    reassigned (TaskReassigned in the history), the workflow completes, and the run log shows
    that no attempt ran twice and every task completed on the survivor after the kill."""
    run_log = tmp_path / "runs.log"
    script = (
        "import os, sys, time\n"
        "open(sys.argv[1], 'a').write(' '.join([os.environ['MESH_TASK_ID'], "
        "os.environ['MESH_ATTEMPT'], os.environ['MESH_AGENT_ID']]) + '\\n')\n"
        "time.sleep(3)\n"
    )
    command = ["python3", "-c", script, str(run_log)]
    plan = {
        "workflow_type": "parallel",
        "tasks": [{"id": f"p{i}", "capabilities": ["shell"], "command": command} for i in range(6)],
    }
    agent_args = ("--heartbeat-interval", "0.5", "--max-concurrency", "3")
    async with running_mesh(
        kafka_settings,
        shell_agents=2,
        python_agents=0,
        agent_args=agent_args,
        manager_args=("--missed-heartbeats", "2"),
    ) as mesh:
        submitted = await submit(kafka_settings, plan_file(tmp_path, plan))
        await wait_for(lambda: len(_runs(run_log)) >= 2, within=120, what="two attempts started")
        victim_id = _runs(run_log)[0][2]
        victim = next(
            c for n, c in mesh.supervisor.children.items() if mesh.agent_id(n) == victim_id
        )
        held = {task for task, _, agent in _runs(run_log) if agent == victim_id}
        os.kill(victim.pid, signal.SIGKILL)
        state, events = await wait_final(kafka_settings, submitted, idle_timeout=120)
    assert state.status == "completed", state.reason
    reassigned = {e.task_id for e in events if isinstance(e, TaskReassigned)}
    assert held <= reassigned, (held, reassigned)
    runs = _runs(run_log)
    attempts = [(task, attempt) for task, attempt, _ in runs]
    assert len(attempts) == len(set(attempts)), runs  # no attempt ran twice
    assert {task for task, _, _ in runs} == {f"p{i}" for i in range(6)}
    completed = {e.task_id: e for e in events if isinstance(e, TaskCompleted)}
    assert set(completed) == {f"p{i}" for i in range(6)}
    assert all(completed[task].agent_id != victim_id for task in held)


def _runs(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        task, attempt, agent = line.split()[:3]
        runs.append((task, attempt, agent))
    return runs
