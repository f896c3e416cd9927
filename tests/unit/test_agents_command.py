"""Command agents with real subprocesses: exit codes, output caps, timeouts, cancellation,
missing executables, cwd and env, and argv that never passes through a shell."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mesh.agents import CommandConfig, CommandRunner, Failure, Success, run_command
from mesh.agents._command import child_environment, shrink_output
from mesh.errors import ConfigError
from mesh.events import Capability, Producer, TaskAssigned, TaskSpec, meta
from tests._agents_support import eventually, pid_gone, read_pid

PY = sys.executable
PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def assigned(
    *,
    command: list[str] | None = None,
    prompt: str | None = None,
    inputs: dict[str, Any] | None = None,
    timeout: float | None = None,
    deadline: datetime | None = None,
) -> TaskAssigned:
    return TaskAssigned(
        **meta(Producer(component="test", instance="t"), correlation_id="req-1"),
        workflow_id="wf-1",
        task_id="T",
        attempt=1,
        agent_id="agent-1",
        task=TaskSpec(
            task_id="T",
            name="test task",
            command=command,
            prompt=prompt,
            inputs=inputs or {},
            timeout_seconds=timeout,
        ),
        deadline=deadline,
    )


def same_directory(a: str | Path, b: str | Path) -> bool:
    return os.path.samefile(a, b)


async def no_progress(percent: float | None, message: str, details: dict[str, Any]) -> None:
    return None


def runner(tmp_path: Path, **overrides: Any) -> CommandRunner:
    config: dict[str, Any] = {
        "capabilities": (Capability(name="shell"),),
        "allow_task_command": True,
        "workdir": tmp_path,
        "kill_grace": 0.5,
    }
    config.update(overrides)
    return CommandRunner(CommandConfig(**config), agent_id="agent-1")


# -- run_command ---------------------------------------------------------------------------


async def test_exit_status_and_both_streams_are_captured() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = await run_command([PY, "-c", code])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.truncated
    assert not result.timed_out


async def test_each_stream_is_capped_and_truncation_noted() -> None:
    code = "import sys; sys.stdout.write('x' * 300000); sys.stderr.write('y' * 10)"
    result = await run_command([PY, "-c", code], max_output_bytes=1000)
    assert result.exit_code == 0
    assert result.stdout == "x" * 1000
    assert result.stderr == "y" * 10
    assert result.truncated


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A grandchild started by the command dies with it (it shares the process group)."""
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid));"
        "time.sleep(60)"
    )
    began = time.monotonic()
    result = await run_command([PY, "-c", code], timeout_seconds=1.0, kill_grace=0.5)
    assert result.timed_out
    assert time.monotonic() - began < 10
    grandchild = await eventually(lambda: read_pid(pidfile), what="the grandchild's pid")
    await eventually(lambda: pid_gone(grandchild), what="the grandchild to be killed")
    assert pid_gone(result.pid)


async def test_cancelling_kills_the_process_and_re_raises(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    task = asyncio.create_task(run_command([PY, "-c", code], kill_grace=0.5))
    pid = await eventually(lambda: read_pid(pidfile), what="the child's pid")
    assert not pid_gone(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pid_gone(pid)


async def test_missing_executable_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        await run_command(["definitely-not-a-mesh-program-4242"])


async def test_background_children_holding_the_pipes_do_not_hang_the_attempt() -> None:
    code = (
        "import subprocess, sys;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('done')"
    )
    began = time.monotonic()
    result = await run_command([PY, "-c", code])
    assert result.exit_code == 0
    assert result.stdout == "done\n"
    assert time.monotonic() - began < 10


# -- CommandRunner -------------------------------------------------------------------------


async def test_success_output_has_streams_and_parsed_json(tmp_path: Path) -> None:
    code = "import json; print(json.dumps({'answer': 42}))"
    outcome = await runner(tmp_path).run(assigned(command=[PY, "-c", code]), no_progress)
    assert isinstance(outcome, Success)
    assert outcome.output == {
        "exit_code": 0,
        "stdout": '{"answer": 42}\n',
        "stderr": "",
        "truncated": False,
        "json": {"answer": 42},
    }


async def test_stdout_that_is_not_a_json_object_has_no_json_key(tmp_path: Path) -> None:
    outcome = await runner(tmp_path).run(assigned(command=[PY, "-c", "print([1])"]), no_progress)
    assert isinstance(outcome, Success)
    assert "json" not in outcome.output


async def test_nonzero_exit_is_a_retriable_exit_code_failure(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('boom'); sys.exit(2)"
    outcome = await runner(tmp_path).run(assigned(command=[PY, "-c", code]), no_progress)
    expected = Failure(
        "exit_code",
        "the command exited 2: boom",
        True,
        infrastructure=False,
        output={"exit_code": 2, "stdout": "", "stderr": "boom", "truncated": False},
    )
    assert outcome == expected


async def test_a_failed_attempt_keeps_the_end_of_each_stream(tmp_path: Path) -> None:
    """What a failing program printed stays with its failure (the end: where it says why)."""
    code = "import sys; print('x' * 40000 + 'END'); sys.stderr.write('why'); sys.exit(1)"
    outcome = await runner(tmp_path).run(assigned(command=[PY, "-c", code]), no_progress)
    assert isinstance(outcome, Failure)
    assert outcome.output["stdout"].endswith("END\n")
    assert len(outcome.output["stdout"]) == 16 * 1024
    assert (outcome.output["stderr"], outcome.output["truncated"]) == ("why", True)


async def test_output_is_handed_on_while_the_program_runs(tmp_path: Path) -> None:
    """A line reaches ``output`` before the program ends: it waits for a file until then."""
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "print('first', flush=True)\n"
        "sys.stderr.write('to stderr\\n'); sys.stderr.flush()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('second')\n"
    )
    seen: list[tuple[str, str]] = []
    running = asyncio.ensure_future(
        runner(tmp_path).run(
            assigned(command=[PY, "-c", code]), no_progress, lambda s, t: seen.append((s, t))
        )
    )

    def printed(stream: str) -> str:
        return "".join(text for name, text in seen if name == stream)

    await eventually(lambda: printed("stdout") == "first\n", what="the first line")
    assert not running.done()
    assert printed("stderr") == "to stderr\n"
    go.touch()
    outcome = await asyncio.wait_for(running, 20)
    assert isinstance(outcome, Success)
    assert printed("stdout") == "first\nsecond\n"


async def test_streamed_text_is_decoded_across_reads(tmp_path: Path) -> None:
    """A UTF-8 character split between two reads of the pipe arrives whole."""
    code = (
        "import sys, time\n"
        "sys.stdout.buffer.write('é'.encode()[:1]); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stdout.buffer.write('é'.encode()[1:] + b'\\n')\n"
    )
    seen: list[str] = []
    await runner(tmp_path).run(
        assigned(command=[PY, "-c", code]), no_progress, lambda s, t: seen.append(t)
    )
    assert "".join(seen) == "é\n"


async def test_timeout_is_a_retriable_timeout_failure(tmp_path: Path) -> None:
    task = assigned(command=[PY, "-c", "import time; time.sleep(60)"], timeout=0.5)
    outcome = await runner(tmp_path).run(task, no_progress)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("timeout", True)


async def test_agent_timeout_applies_when_the_task_has_none(tmp_path: Path) -> None:
    task = assigned(command=[PY, "-c", "import time; time.sleep(60)"])
    outcome = await runner(tmp_path, timeout=0.5).run(task, no_progress)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "timeout"


async def test_a_passed_deadline_fails_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')"
    task = assigned(command=[PY, "-c", code], deadline=datetime.now(UTC) - timedelta(seconds=1))
    outcome = await runner(tmp_path).run(task, no_progress)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "timeout"
    assert not marker.exists()


async def test_missing_executable_is_a_non_retriable_not_found(tmp_path: Path) -> None:
    outcome = await runner(tmp_path).run(assigned(command=["no-such-tool-4242"]), no_progress)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("not_found", False)
    assert "no-such-tool-4242" in outcome.message


async def test_task_command_needs_allow_task_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    task = assigned(command=[PY, "-c", f"open({str(marker)!r}, 'w').write('x')"])
    closed = runner(tmp_path, allow_task_command=False, argv=(PY, "-c", "print(1)"))
    outcome = await closed.run(task, no_progress)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("command_not_allowed", False)
    assert "--allow-task-command" in outcome.message
    assert not marker.exists()


async def test_no_command_and_no_template_fails_clearly(tmp_path: Path) -> None:
    outcome = await runner(tmp_path).run(assigned(prompt="hi"), no_progress)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("no_command", False)


@pytest.mark.parametrize(
    "prompt",
    ["; rm -rf ~", "$(touch pwned)", "`touch pwned`", "a && touch pwned", "x' ; touch 'pwned"],
)
async def test_prompt_with_shell_syntax_is_one_argument(tmp_path: Path, prompt: str) -> None:
    """The configured template is exec'd directly: the prompt arrives as one argv element and
    nothing it spells is run."""
    template = (PY, "-c", PRINT_ARGV, "--prompt", "{prompt}", "{inputs.extra}")
    agent = runner(tmp_path, allow_task_command=False, argv=template)
    outcome = await agent.run(assigned(prompt=prompt, inputs={"extra": "a b"}), no_progress)
    assert isinstance(outcome, Success), outcome
    assert json.loads(outcome.output["stdout"]) == ["--prompt", prompt, "a b"]
    assert not (tmp_path / "pwned").exists()


async def test_missing_template_key_is_a_bad_template_failure(tmp_path: Path) -> None:
    agent = runner(tmp_path, allow_task_command=False, argv=(PY, "-c", PRINT_ARGV, "{inputs.x}"))
    outcome = await agent.run(assigned(prompt="p"), no_progress)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("bad_template", False)


async def test_upstream_output_reaches_the_command(tmp_path: Path) -> None:
    command = [PY, "-c", PRINT_ARGV, "{inputs.upstream.B.stdout}"]
    task = assigned(command=command, inputs={"upstream": {"B": {"stdout": "from B"}}})
    outcome = await runner(tmp_path).run(task, no_progress)
    assert isinstance(outcome, Success)
    assert json.loads(outcome.output["stdout"]) == ["from B"]


async def test_cwd_and_env_are_applied_and_mesh_settings_are_not_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("KEEP_ME", "kept")
    code = (
        "import json, os; print(json.dumps({'cwd': os.getcwd(), 'env': {k: os.environ.get(k) "
        "for k in ['GREETING', 'KEEP_ME', 'MESH_SASL_PASSWORD', 'MESH_TASK_ID', "
        "'MESH_WORKFLOW_ID', 'MESH_ATTEMPT', 'MESH_AGENT_ID']}}))"
    )
    outcome = await runner(tmp_path, env={"GREETING": "hi"}).run(
        assigned(command=[PY, "-c", code]), no_progress
    )
    assert isinstance(outcome, Success)
    seen = outcome.output["json"]
    assert same_directory(seen["cwd"], tmp_path)
    assert seen["env"] == {
        "GREETING": "hi",
        "KEEP_ME": "kept",
        "MESH_SASL_PASSWORD": None,
        "MESH_TASK_ID": "T",
        "MESH_WORKFLOW_ID": "wf-1",
        "MESH_ATTEMPT": "1",
        "MESH_AGENT_ID": "agent-1",
    }


def test_child_environment_drops_every_mesh_variable() -> None:
    env = child_environment(
        {"X": "1"}, inherit={"MESH_BOOTSTRAP_SERVERS": "k:9092", "PATH": "/bin"}
    )
    assert env == {"PATH": "/bin", "X": "1"}


def test_config_is_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="capability"):
        CommandConfig(capabilities=(), workdir=tmp_path)
    with pytest.raises(ConfigError, match="--argv"):
        CommandConfig(capabilities=(Capability(name="x"),), argv=("{nope}",), workdir=tmp_path)
    with pytest.raises(ConfigError, match="--workdir"):
        CommandConfig(capabilities=(Capability(name="x"),), workdir=tmp_path / "missing")


def test_shrink_output_halves_the_streams_and_drops_parsed_json() -> None:
    output = {"exit_code": 0, "stdout": "a" * 10, "stderr": "b" * 4, "truncated": False, "json": {}}
    assert shrink_output(output) == {
        "exit_code": 0,
        "stdout": "a" * 5,
        "stderr": "b" * 2,
        "truncated": True,
    }
    assert shrink_output({"exit_code": 0, "stdout": "", "stderr": ""}) is None
    assert shrink_output({"answer": 42}) is None
