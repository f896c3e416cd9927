"""Real ``mesh agent run`` processes on the embedded broker: registration, a task from
assignment to result, cancellation by pid, graceful shutdown, and the dispatcher routing tasks
to the agent with the capability."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mesh.agentmanager.runtime import AgentManager
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    DeadLetter,
    Event,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskStarted,
)
from mesh.settings import Settings
from tests._agents_support import (
    WAIT,
    AgentProcess,
    agent_process,
    cancel_task,
    create_topics,
    eventually,
    mesh_process,
    of_task,
    pid_gone,
    producer,
    publish,
    read_pid,
    reader,
    spec,
    task_assigned,
    task_ready,
)
from tests.helpers import assert_one_line_error, run_mesh

PY = sys.executable
PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


@pytest.fixture
async def settings(embedded_settings: Settings) -> Settings:
    await create_topics(embedded_settings)
    return embedded_settings


async def registered(settings: Settings, *agents: AgentProcess) -> None:
    """Wait until every agent announced itself (and fail with its log if it died)."""
    ids = {agent.agent_id for agent in agents}
    async with reader(settings, "agents") as agents_topic:
        try:
            await agents_topic.until(
                lambda evs: ids <= {e.agent_id for e in evs if isinstance(e, AgentRegistered)},
                what=f"registration of {sorted(ids)}",
            )
        except AssertionError:
            logs = "\n".join(f"--- {a.agent_id}\n{a.output()}" for a in agents)
            raise AssertionError(f"agents did not register:\n{logs}") from None


def finished(task_id: str) -> Callable[[list[Event]], bool]:
    def done(events: list[Event]) -> bool:
        return bool(of_task(events, task_id, TaskCompleted) or of_task(events, task_id, TaskFailed))

    return done


async def test_assigned_task_is_started_run_and_completed(
    settings: Settings, tmp_path: Path
) -> None:
    """An assignment keyed by the agent id reaches exactly that agent; its result appears on
    tasks.results keyed by the workflow id, after TaskStarted."""
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    args += ["--heartbeat-interval", "0.5"]
    with agent_process(settings, "shell-1", args, tmp_path) as agent:
        await registered(settings, agent)
        task = spec("A", "shell", command=[PY, "-c", PRINT_ARGV, "{inputs.word}", "; rm -rf ~"])
        task = task.model_copy(update={"inputs": {"word": "hello world"}})
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            await publish(out, settings, "tasks.assigned", task_assigned("shell-1", task))
            events = await results.until(finished("A"), what="the result of A")

        started = of_task(events, "A", TaskStarted)
        [done] = of_task(events, "A", TaskCompleted)
        assert started
        assert events.index(started[0]) < events.index(done)
        assert done.agent_id == "shell-1"
        assert done.output["exit_code"] == 0
        assert json.loads(done.output["stdout"]) == ["hello world", "; rm -rf ~"]
        assert [key for _, key, e in results.seen if e is done] == [b"wf-1"]

        async with reader(settings, "agents.heartbeats") as beats:
            await beats.until(
                lambda evs: any(isinstance(e, AgentHeartbeat) for e in evs), what="a heartbeat"
            )
        assert agent.stop() == 0, agent.output()

    async with reader(settings, "agents") as registry:
        events = await registry.until(
            lambda evs: any(isinstance(e, AgentTerminated) for e in evs),
            what="AgentTerminated",
        )
    [joined] = [e for e in events if isinstance(e, AgentRegistered)]
    assert joined.kind == "command"
    assert [c.name for c in joined.capabilities] == ["shell"]
    assert joined.resources.cpu > 0
    assert joined.resources.memory_mb > 0
    assert any(isinstance(e, AgentUpdated) and e.status == "draining" for e in events)
    assert registry.seen[-1][2] is None  # a tombstone follows AgentTerminated


async def test_output_over_the_event_limit_is_cut_to_fit(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """A command that prints more than an event may hold still completes, its output cut."""
    settings = embedded_settings.model_copy(update={"max_event_bytes": 8_192})
    await create_topics(settings)
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    with mesh_process(
        settings,
        "shell-big",
        ["agent", "run", "--id", "shell-big", *args],
        tmp_path,
        env={"MESH_MAX_EVENT_BYTES": "8192"},
    ) as agent:
        await registered(settings, agent)
        task = spec("BIG", "shell", command=[PY, "-c", "print('x' * 50000)"])
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            await publish(out, settings, "tasks.assigned", task_assigned("shell-big", task))
            events = await results.until(finished("BIG"), what="the result of BIG")
        [done] = of_task(events, "BIG", TaskCompleted)
        assert done.output["truncated"] is True
        assert 0 < len(done.output["stdout"]) < 8_192
        assert set(done.output["stdout"]) == {"x"}
        assert agent.stop() == 0, agent.output()


async def test_cancel_task_kills_the_running_command(settings: Settings, tmp_path: Path) -> None:
    """CancelTask for a running attempt kills its process (checked by pid) and reports a
    non-retriable TaskFailed "cancelled"."""
    pidfile = tmp_path / "child.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    with agent_process(settings, "shell-c", args, tmp_path) as agent:
        await registered(settings, agent)
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            task = spec("SLOW", "shell", command=[PY, "-c", code])
            await publish(out, settings, "tasks.assigned", task_assigned("shell-c", task))
            pid = await eventually(lambda: read_pid(pidfile), what="the command's pid")
            assert not pid_gone(pid)

            await publish(out, settings, "tasks.assigned", cancel_task("shell-c", "SLOW"))
            events = await results.until(finished("SLOW"), what="the cancellation")

        [failed] = of_task(events, "SLOW", TaskFailed)
        assert (failed.error_kind, failed.retriable) == ("cancelled", False)
        assert "test cancels it" in failed.message
        await eventually(lambda: pid_gone(pid), what=f"pid {pid} to be gone")
        assert agent.stop() == 0, agent.output()


async def test_python_agent_runs_functions_and_reports_progress(
    settings: Settings, tmp_path: Path
) -> None:
    args = ["--kind", "python", "--module", "examples.agents", "--max-concurrency", "2"]
    with agent_process(settings, "py-1", args, tmp_path) as agent:
        await registered(settings, agent)
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            shout = spec("S", "shout", prompt="quiet please")
            failing = spec("F", "fail", prompt="on purpose")
            for task in (shout, failing):
                await publish(out, settings, "tasks.assigned", task_assigned("py-1", task))
            events = await results.until(
                lambda evs: finished("S")(evs) and finished("F")(evs),
                what="both results",
            )
        [done] = of_task(events, "S", TaskCompleted)
        assert done.output == {"text": "QUIET PLEASE"}
        assert of_task(events, "S", TaskProgress)
        [failed] = of_task(events, "F", TaskFailed)
        assert (failed.error_kind, failed.retriable, failed.message) == (
            "demo_failure",
            False,
            "TaskError: on purpose",
        )
        assert agent.stop() == 0, agent.output()


async def test_shutdown_lets_running_attempts_finish_within_the_grace_period(
    settings: Settings, tmp_path: Path
) -> None:
    args = ["--kind", "python", "--module", "mesh.agents.demo", "--grace-period", "30"]
    with agent_process(settings, "py-grace", args, tmp_path) as agent:
        await registered(settings, agent)
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            task = spec("NAP", "sleep", inputs={"seconds": 1.0})
            await publish(out, settings, "tasks.assigned", task_assigned("py-grace", task))
            await results.until(lambda evs: bool(of_task(evs, "NAP", TaskStarted)), what="start")
            # Ctrl-C in a terminal and then a supervisor's SIGTERM: still one graceful stop.
            agent.process.send_signal(signal.SIGINT)
            agent.process.send_signal(signal.SIGTERM)
            events = await results.until(finished("NAP"), what="the result of NAP")
        assert of_task(events, "NAP", TaskCompleted)
        assert agent.exited() == 0, agent.output()


async def test_shutdown_cancels_what_outlasts_the_grace_period(
    settings: Settings, tmp_path: Path
) -> None:
    """An attempt still running when the grace period ends is killed and reported as a
    retriable ``agent_stopping`` failure, so the retry policy can run it elsewhere."""
    pidfile = tmp_path / "long.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    with agent_process(settings, "shell-g", [*args, "--grace-period", "0.5"], tmp_path) as agent:
        await registered(settings, agent)
        async with producer(settings) as out, reader(settings, "tasks.results") as results:
            task = spec("LONG", "shell", command=[PY, "-c", code])
            await publish(out, settings, "tasks.assigned", task_assigned("shell-g", task))
            pid = await eventually(lambda: read_pid(pidfile), what="the command's pid")
            agent.process.terminate()
            events = await results.until(finished("LONG"), what="the result of LONG")
        [failed] = of_task(events, "LONG", TaskFailed)
        assert (failed.error_kind, failed.retriable) == ("agent_stopping", True)
        await eventually(lambda: pid_gone(pid), what=f"pid {pid} to be gone")
        assert agent.exited() == 0, agent.output()


async def test_a_second_ctrl_c_stops_at_once_and_kills_the_command(
    settings: Settings, tmp_path: Path
) -> None:
    """The first Ctrl-C drains (here it would wait up to 300 s for the command); the second
    cuts the shutdown short: exit 130, and the running command does not outlive the agent."""
    pidfile = tmp_path / "long.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    with agent_process(settings, "shell-i", [*args, "--grace-period", "300"], tmp_path) as agent:
        await registered(settings, agent)
        async with producer(settings) as out:
            task = spec("LONG", "shell", command=[PY, "-c", code])
            await publish(out, settings, "tasks.assigned", task_assigned("shell-i", task))
        pid = await eventually(lambda: read_pid(pidfile), what="the command's pid")
        agent.process.send_signal(signal.SIGINT)
        await eventually(lambda: "agent draining" in agent.output(), what="the drain")
        agent.process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(agent.exited) == 130, agent.output()
        await eventually(lambda: pid_gone(pid), what=f"pid {pid} to be gone")
        assert "Unclosed" not in agent.output()


async def test_garbage_addressed_to_the_agent_goes_to_the_dlq(
    settings: Settings, tmp_path: Path
) -> None:
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    with agent_process(settings, "shell-d", args, tmp_path) as agent:
        await registered(settings, agent)
        async with producer(settings) as out, reader(settings, "dlq", "tasks.results") as seen:
            await out.send_and_wait(settings.topic("tasks.assigned"), b"{nope", key=b"shell-d")
            task = spec("OK", "shell", command=[PY, "-c", "print('fine')"])
            await publish(out, settings, "tasks.assigned", task_assigned("shell-d", task))
            events = await seen.until(
                lambda evs: any(isinstance(e, DeadLetter) for e in evs) and finished("OK")(evs),
                what="a dead letter and the next task's result",
            )
        [letter] = [e for e in events if isinstance(e, DeadLetter)]
        assert (letter.component, letter.error_class) == ("agent", "InvalidEvent")
        assert letter.original_topic == settings.topic("tasks.assigned")
        assert agent.stop() == 0, agent.output()


@contextlib.asynccontextmanager
async def running_manager(settings: Settings, group: str) -> AsyncIterator[AgentManager]:
    """The Agent Manager's assignment, in-process (no local agent lifecycle)."""
    dispatcher = AgentManager(settings, group_id=group)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            await task


async def test_the_agent_manager_routes_each_task_to_the_agent_with_the_capability(
    settings: Settings, tmp_path: Path
) -> None:
    """Two agents with different capabilities; each TaskReady reaches the capable one, and a
    task nobody can run waits until an agent with its capability registers."""
    base = ["--kind", "command", "--allow-task-command", "--heartbeat-interval", "1"]
    hello = [PY, "-c", "import os; print(os.environ['MESH_AGENT_ID'])"]
    with (
        agent_process(settings, "alpha-1", [*base, "--capability", "alpha"], tmp_path) as alpha,
        agent_process(settings, "beta-1", [*base, "--capability", "beta"], tmp_path) as beta,
    ):
        await registered(settings, alpha, beta)
        async with (
            running_manager(settings, f"{settings.topic_prefix}agent-manager") as dispatcher,
            producer(settings) as out,
            reader(settings, "tasks.results") as results,
        ):
            for task in (spec("B", "beta", command=hello), spec("A", "alpha", command=hello)):
                await publish(out, settings, "tasks.ready", task_ready(task))
            await publish(
                out, settings, "tasks.ready", task_ready(spec("G", "gamma", command=hello))
            )
            events = await results.until(
                lambda evs: finished("A")(evs) and finished("B")(evs),
                what="results of A and B",
            )
            assert dispatcher.transactional is False  # the embedded broker has none
            for task_id, agent_id in (("A", "alpha-1"), ("B", "beta-1")):
                [assigned] = of_task(events, task_id, TaskAssigned)
                [done] = of_task(events, task_id, TaskCompleted)
                assert assigned.agent_id == done.agent_id == agent_id
                assert done.output["stdout"] == f"{agent_id}\n"
            assert not of_task(events, "G", TaskAssigned)

            gamma_args = [*base, "--capability", "gamma"]
            with agent_process(settings, "gamma-1", gamma_args, tmp_path) as gamma:
                events = await results.until(finished("G"), what="the waiting task G")
                [done] = of_task(events, "G", TaskCompleted)
                assert done.agent_id == "gamma-1"
                assert gamma.stop() == 0, gamma.output()
        assert alpha.stop() == 0, alpha.output()
        assert beta.stop() == 0, beta.output()


async def test_the_agent_manager_dead_letters_garbage_and_goes_on(
    settings: Settings, tmp_path: Path
) -> None:
    args = ["--kind", "python", "--module", "mesh.agents.demo", "--heartbeat-interval", "1"]
    with agent_process(settings, "py-d", args, tmp_path) as agent:
        await registered(settings, agent)
        async with (
            running_manager(settings, f"{settings.topic_prefix}agent-manager"),
            producer(settings) as out,
            reader(settings, "tasks.results", "dlq") as seen,
        ):
            await out.send_and_wait(settings.topic("tasks.ready"), b"\xff\x00", key=b"wf-1")
            await publish(out, settings, "tasks.ready", task_ready(spec("N", "noop")))
            events = await seen.until(
                lambda evs: any(isinstance(e, DeadLetter) for e in evs) and finished("N")(evs),
                what="a dead letter and the next task's result",
            )
        [letter] = [e for e in events if isinstance(e, DeadLetter)]
        assert letter.component == "agent-manager"
        assert letter.original_topic == settings.topic("tasks.ready")
        assert of_task(events, "N", TaskCompleted)
        assert agent.stop() == 0, agent.output()


async def test_an_agent_without_its_topics_says_to_apply_them(
    embedded_settings: Settings,
) -> None:
    """Tansu creates a topic when asked for its metadata; the agent must not, so that topics
    only ever come from ``mesh topics apply`` with their declared partitions."""
    env = {
        "MESH_BOOTSTRAP_SERVERS": embedded_settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": embedded_settings.topic_prefix,
        "MESH_REQUEST_TIMEOUT_MS": "2000",
    }
    args = ["agent", "run", "--kind", "command", "--id", "lonely", "--capability", "x"]
    run = await asyncio.to_thread(run_mesh, *args, env=env, timeout=120)
    line = assert_one_line_error(run)
    assert "does not exist; create it with 'mesh topics apply'" in line
    async with producer(embedded_settings) as lookup:
        topics = (await lookup.client.fetch_all_metadata()).topics()
    assert not any(t.startswith(embedded_settings.topic_prefix) for t in topics)
