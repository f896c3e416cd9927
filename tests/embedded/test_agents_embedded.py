"""The agents' contract (tests/contract/agents.py) on the embedded broker, and real ``mesh agent
run`` processes on their own, run here only: a task from assignment to result, output cut to fit
an event, cancellation by pid, graceful and hurried shutdowns, dead letters. They check the agent
process, the same on any broker; the Kafka tier runs real agents under the Agent Manager in its
own cases (placement, reassignment, breakers, lifecycle)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    DeadLetter,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskStarted,
)
from mesh.settings import Settings
from tests._agents_support import (
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
)
from tests.contract.agents import AgentsContract, finished, registered
from tests.contract.brokers import OnEmbedded

PY = sys.executable
PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def long_sleep(pidfile: Path) -> str:
    """A command's code that writes its pid to ``pidfile`` and then sleeps for five minutes."""
    return f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)"


class TestAgentsOnEmbedded(OnEmbedded, AgentsContract):
    """The Agent Manager and agent processes on the embedded broker."""

    async def test_assigned_task_is_started_run_and_completed(
        self, settings: Settings, tmp_path: Path
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
        self, broker_settings: Settings, tmp_path: Path
    ) -> None:
        """A command that prints more than an event may hold still completes, its output cut."""
        settings = broker_settings.model_copy(update={"max_event_bytes": 8_192})
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

    async def test_cancel_task_kills_the_running_command(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        """CancelTask for a running attempt kills its process (checked by pid) and reports a
        non-retriable TaskFailed "cancelled"."""
        pidfile = tmp_path / "child.pid"
        code = long_sleep(pidfile)
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
        self, settings: Settings, tmp_path: Path
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
        self, settings: Settings, tmp_path: Path
    ) -> None:
        args = ["--kind", "python", "--module", "mesh.agents.demo", "--grace-period", "30"]
        with agent_process(settings, "py-grace", args, tmp_path) as agent:
            await registered(settings, agent)
            async with producer(settings) as out, reader(settings, "tasks.results") as results:
                task = spec("NAP", "sleep", inputs={"seconds": 1.0})
                await publish(out, settings, "tasks.assigned", task_assigned("py-grace", task))
                await results.until(
                    lambda evs: bool(of_task(evs, "NAP", TaskStarted)), what="start"
                )
                # Ctrl-C in a terminal and then a supervisor's SIGTERM: still one graceful stop.
                agent.process.send_signal(signal.SIGINT)
                agent.process.send_signal(signal.SIGTERM)
                events = await results.until(finished("NAP"), what="the result of NAP")
            assert of_task(events, "NAP", TaskCompleted)
            assert agent.exited() == 0, agent.output()

    async def test_shutdown_cancels_what_outlasts_the_grace_period(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        """An attempt still running when the grace period ends is killed and reported as a
        retriable ``agent_stopping`` failure, so the retry policy can run it elsewhere."""
        pidfile = tmp_path / "long.pid"
        code = long_sleep(pidfile)
        args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
        with agent_process(
            settings, "shell-g", [*args, "--grace-period", "0.5"], tmp_path
        ) as agent:
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
        self, settings: Settings, tmp_path: Path
    ) -> None:
        """The first Ctrl-C drains (here it would wait up to 300 s for the command); the second
        cuts the shutdown short: exit 130, and the running command does not outlive the agent."""
        pidfile = tmp_path / "long.pid"
        code = long_sleep(pidfile)
        args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
        with agent_process(
            settings, "shell-i", [*args, "--grace-period", "300"], tmp_path
        ) as agent:
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

    async def test_garbage_addressed_to_the_agent_is_skipped_and_the_next_task_runs(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        """The agent steps over a record it cannot read and runs the one behind it. It writes
        no dead letter: the Agent Manager owns the topic's (one per bad record, checked with
        every component running in tests/contract/poison.py)."""
        args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
        with agent_process(settings, "shell-d", args, tmp_path) as agent:
            await registered(settings, agent)
            async with producer(settings) as out, reader(settings, "dlq", "tasks.results") as seen:
                await out.send_and_wait(settings.topic("tasks.assigned"), b"{nope", key=b"shell-d")
                task = spec("OK", "shell", command=[PY, "-c", "print('fine')"])
                await publish(out, settings, "tasks.assigned", task_assigned("shell-d", task))
                events = await seen.until(finished("OK"), what="the next task's result")
            assert not [e for e in events if isinstance(e, DeadLetter)]
            assert agent.stop() == 0, agent.output()
