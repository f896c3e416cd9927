"""Command agents: run an argv (never through a shell) with a working directory, env and timeout.

The child starts in a new session, so it leads its own process group: a timeout or a CancelTask
kills the whole tree it spawned, not just the first process. Output is read concurrently and
capped, so a chatty program can neither fill our memory nor block on a full pipe; as it is read it
is also handed on (``on_output``), so the agent streams it while the program runs.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.agents._outcome import (
    Failure,
    Outcome,
    OutputFn,
    ProgressFn,
    Success,
    time_limit,
    timed_out,
)
from mesh.agents._stream import no_output
from mesh.agents._templates import attempt_values, check_template, places_inputs, render_argv
from mesh.errors import ArgvTemplateError, ConfigError
from mesh.events import Capability, OutputStream, TaskAssigned

MAX_OUTPUT_BYTES = 64 * 1024
"""Default cap on each of stdout and stderr kept from one attempt."""

INPUTS_FILE_ENV = "MESH_INPUTS_FILE"
"""The environment variable that holds the path of the attempt's inputs file."""

KILL_GRACE_SECONDS = 2.0
"""Time between SIGTERM and SIGKILL when a process group is stopped."""

_DRAIN_AFTER_EXIT_SECONDS = 1.0
_EXIT_POLL_SECONDS = 0.05
_STDERR_IN_MESSAGE = 2_000
_FAILED_STREAM_CHARS = 16 * 1024
"""Each stream's end kept in a failed attempt's ``TaskFailed`` (the end says why it failed)."""
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class CommandResult:
    """How a process ended and what it printed (each stream capped)."""

    pid: int
    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool = False

    def as_output(self) -> dict[str, Any]:
        """The task output: exit code, streams, truncation, and ``json`` if stdout is an object."""
        output: dict[str, Any] = {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "truncated": self.truncated,
        }
        parsed = _json_object(self.stdout)
        if parsed is not None:
            output["json"] = parsed
        return output


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float | None = None,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    kill_grace: float = KILL_GRACE_SECONDS,
    on_output: OutputFn | None = None,
) -> CommandResult:
    """Run ``argv`` as a process group leader and wait for it (or ``timeout_seconds``).

    ``on_output`` gets the text of each stream as it is read (all of it, not only the capped
    part the result keeps). Raises what ``exec`` raises (``FileNotFoundError``,
    ``PermissionError`` …). When cancelled it kills the process group, reaps the child, and
    re-raises ``CancelledError``.
    """
    if not argv:
        raise ValueError("argv is empty")
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # own process group: killpg reaches every descendant
    )
    assert process.stdout is not None
    assert process.stderr is not None
    readers = (
        asyncio.ensure_future(_read_capped(process.stdout, max_output_bytes, on_output, "stdout")),
        asyncio.ensure_future(_read_capped(process.stderr, max_output_bytes, on_output, "stderr")),
    )
    expired = False
    try:
        try:
            async with asyncio.timeout(timeout_seconds):
                await _exited(process)
        except TimeoutError:
            expired = True
            await _stop_group(process, kill_grace)
        # Descendants that outlive the leader may hold the pipes open; they belong to the
        # attempt, so after a short drain they go too.
        _, waiting = await asyncio.wait(readers, timeout=_DRAIN_AFTER_EXIT_SECONDS)
        if waiting:
            _kill_group(process.pid, signal.SIGKILL)
            await asyncio.wait(readers, timeout=_DRAIN_AFTER_EXIT_SECONDS)
    except asyncio.CancelledError:
        await asyncio.shield(_stop_group(process, kill_grace))
        for reader in readers:
            reader.cancel()
        raise
    (out, out_cut), (err, err_cut) = (_result_of(reader) for reader in readers)
    return CommandResult(
        pid=process.pid,
        exit_code=process.returncode,
        stdout=out.decode("utf-8", errors="replace"),
        stderr=err.decode("utf-8", errors="replace"),
        truncated=out_cut or err_cut,
        timed_out=expired,
    )


async def _read_capped(
    stream: asyncio.StreamReader, limit: int, on_output: OutputFn | None, name: OutputStream
) -> tuple[bytes, bool]:
    kept = bytearray()
    truncated = False
    # Incremental: a UTF-8 character split between two reads is decoded once whole.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(_READ_CHUNK):
        if on_output is not None:
            on_output(name, decoder.decode(chunk))
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True  # keep draining so the writer never blocks on a full pipe
    rest = decoder.decode(b"", final=True)
    if on_output is not None and rest:
        on_output(name, rest)
    return bytes(kept), truncated


def _result_of(reader: asyncio.Future[tuple[bytes, bool]]) -> tuple[bytes, bool]:
    if reader.done() and not reader.cancelled() and reader.exception() is None:
        return reader.result()
    reader.cancel()
    return b"", True


async def _stop_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, and reap the leader."""
    if process.returncode is None:
        _kill_group(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await _exited(process)
        except TimeoutError:
            pass
    _kill_group(process.pid, signal.SIGKILL)  # the leader may be gone, its children not
    await _exited(process)


async def _exited(process: asyncio.subprocess.Process) -> int:
    """The exit status, as soon as the process exits.

    Not ``process.wait()``: on Python 3.11 it also waits until the pipes close, which a
    descendant that escaped the process group can put off forever. ``returncode`` is set by
    the child watcher the moment the process exits.
    """
    while True:
        if process.returncode is not None:
            return process.returncode
        await asyncio.sleep(_EXIT_POLL_SECONDS)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def shrink_output(output: dict[str, Any]) -> dict[str, Any] | None:
    """A command output with half of each stream and no parsed ``json``, or None if there is
    nothing left to cut (used when the result event would exceed the size limit)."""
    streams = [k for k in ("stdout", "stderr") if isinstance(output.get(k), str) and output[k]]
    if not streams:
        return None
    smaller = {key: value for key, value in output.items() if key != "json"}
    for key in streams:
        smaller[key] = output[key][: len(output[key]) // 2]
    smaller["truncated"] = True
    return smaller


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def child_environment(
    extra: Mapping[str, str], *, inherit: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The agent's environment without ``MESH_*`` (Kafka settings and credentials), plus ``extra``.

    A task's program needs PATH, HOME and its own API keys, never the mesh's SASL password.
    """
    base = os.environ if inherit is None else inherit
    env = {key: value for key, value in base.items() if not key.startswith("MESH_")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class CommandConfig:
    """How a command agent runs its attempts (from ``mesh agent run --kind command``)."""

    capabilities: tuple[Capability, ...]
    argv: tuple[str, ...] = ()
    """Template used when the task has no command (or task commands are not allowed)."""
    allow_task_command: bool = False
    workdir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    max_output_bytes: int = MAX_OUTPUT_BYTES
    kill_grace: float = KILL_GRACE_SECONDS

    def __post_init__(self) -> None:
        if not self.capabilities:
            raise ConfigError("a command agent needs at least one --capability")
        try:
            for element in self.argv:
                check_template(element)
        except ArgvTemplateError as exc:
            raise ConfigError(f"bad --argv template: {exc}") from exc
        if not self.workdir.is_dir():
            raise ConfigError(f"--workdir {self.workdir} is not a directory")


class CommandRunner:
    """Runs an attempt as a process: the task's command (if allowed) or the agent's template."""

    def __init__(self, config: CommandConfig, *, agent_id: str) -> None:
        self.config = config
        self.agent_id = agent_id

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        return self.config.capabilities

    def argv_for(self, assigned: TaskAssigned) -> list[str] | Failure:
        """The rendered argv for this attempt, or why there is none."""
        task = assigned.spec
        if task.command is not None and not self.config.allow_task_command:
            return Failure(
                "command_not_allowed",
                f"task {task.task_id!r} carries its own command, but agent {self.agent_id!r} "
                "does not run task commands (start it with --allow-task-command to permit that)",
                retriable=False,
            )
        template = list(task.command) if task.command is not None else list(self.config.argv)
        if not template:
            return Failure(
                "no_command",
                f"task {task.task_id!r} has no command and agent {self.agent_id!r} has no "
                "--argv template",
                retriable=False,
            )
        try:
            # {prompt} carries the upstream outputs unless the argv places them itself.
            upstream_in_prompt = not places_inputs(template)
            values = attempt_values(assigned, upstream_in_prompt=upstream_in_prompt)
            return render_argv(template, values)
        except ArgvTemplateError as exc:
            return Failure(ArgvTemplateError.kind, str(exc), retriable=False)

    async def run(
        self, assigned: TaskAssigned, progress: ProgressFn, output: OutputFn = no_output
    ) -> Outcome:
        argv = self.argv_for(assigned)
        if isinstance(argv, Failure):
            return argv
        limit = time_limit(assigned, self.config.timeout, datetime.now(UTC))
        if limit is not None and limit <= 0:
            return Failure("timeout", "the attempt's deadline passed before it started", True)
        # The agent's own program failing to start is the agent's failure (its breaker counts
        # it); a task's own command failing to start is the task's.
        own = assigned.spec.command is None
        try:
            with inputs_file(assigned.spec.inputs) as inputs_path:
                env = child_environment(
                    {
                        **self.config.env,
                        "MESH_AGENT_ID": self.agent_id,
                        "MESH_WORKFLOW_ID": assigned.workflow_id,
                        "MESH_TASK_ID": assigned.task_id,
                        "MESH_ATTEMPT": str(assigned.attempt),
                        INPUTS_FILE_ENV: str(inputs_path),
                    }
                )
                result = await run_command(
                    argv,
                    cwd=self.config.workdir,
                    env=env,
                    timeout_seconds=limit,
                    max_output_bytes=self.config.max_output_bytes,
                    kill_grace=self.config.kill_grace,
                    on_output=output,
                )
        except FileNotFoundError:
            return Failure(
                "not_found",
                f"executable {argv[0]!r} not found (agent {self.agent_id!r}, PATH of the agent)",
                retriable=False,
                infrastructure=own,
            )
        except PermissionError:
            return Failure(
                "not_executable", f"{argv[0]!r} is not executable", False, infrastructure=own
            )
        except (OSError, ValueError) as exc:  # E2BIG, a NUL byte in an argument …
            return Failure(
                "exec_failed", f"could not start {argv[0]!r}: {exc}", False, infrastructure=own
            )
        return outcome_of(result, limit)


@contextlib.contextmanager
def inputs_file(inputs: Mapping[str, Any]) -> Iterator[Path]:
    """The attempt's whole inputs as a JSON file in a private directory (mode 0700, of this
    attempt alone), removed with the directory when the attempt ends, cancelled or not.

    Not in argv: inputs may be larger than one argument can hold, and other users can read a
    process's arguments."""
    with tempfile.TemporaryDirectory(prefix="mesh-inputs-") as directory:
        path = Path(directory) / "inputs.json"
        path.write_text(json.dumps(inputs, ensure_ascii=False), encoding="utf-8")
        yield path


_CANNOT_EXECUTE = (126, 127)
"""Shell conventions for "found but not executable" and "not found": the agent is broken."""


def outcome_of(result: CommandResult, limit: float | None) -> Outcome:
    """Exit 0 is success; a timeout or another status is a retriable failure of the task.

    A non-zero exit is the task's own result ("tests failed") and does not count against the
    agent's breaker, except 126/127; a timeout does (a hung CLI is the agent's failure).
    """
    if result.timed_out:
        assert limit is not None
        return replace(timed_out(limit), output=failed_output(result))
    if result.exit_code == 0:
        return Success(result.as_output())
    code = result.exit_code
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
    tail = result.stderr.strip()[-_STDERR_IN_MESSAGE:]
    message = f"the command {how}" + (f": {tail}" if tail else "")
    return Failure(
        "exit_code",
        message,
        True,
        infrastructure=code in _CANNOT_EXECUTE,
        output=failed_output(result),
    )


def failed_output(result: CommandResult) -> dict[str, Any]:
    """What a failed attempt keeps in its ``TaskFailed``: the exit code and the end of each
    stream (``truncated`` when anything was cut)."""
    cut = False
    streams: dict[str, str] = {}
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        cut = cut or len(text) > _FAILED_STREAM_CHARS
        streams[name] = text[-_FAILED_STREAM_CHARS:]
    return {"exit_code": result.exit_code, **streams, "truncated": result.truncated or cut}


__all__ = [
    "INPUTS_FILE_ENV",
    "KILL_GRACE_SECONDS",
    "MAX_OUTPUT_BYTES",
    "CommandConfig",
    "CommandResult",
    "CommandRunner",
    "child_environment",
    "failed_output",
    "inputs_file",
    "outcome_of",
    "run_command",
    "shrink_output",
]
