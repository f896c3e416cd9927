"""Demo Python agents for ``mesh dev``, tutorials and benchmarks (installed with mesh).

Serve them with ``mesh agent run --kind python --module mesh.agents.demo``. The Workflow Manager
passes each dependency's output as ``inputs["upstream"][<task id>]``; ``concat`` joins them.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from mesh.agents._sdk import TaskContext, agent
from mesh.errors import TaskError


@agent(capabilities=["noop"])
async def noop(ctx: TaskContext) -> dict[str, Any]:
    """Do nothing, successfully (measures the mesh's own overhead)."""
    return {}


@agent(capabilities=["echo"])
async def echo(ctx: TaskContext) -> dict[str, Any]:
    """Return the prompt (or ``inputs.text``) as ``text``."""
    text = ctx.prompt if ctx.prompt is not None else ctx.inputs.get("text", "")
    return {"text": text if isinstance(text, str) else str(text)}


@agent(capabilities=["concat"])
async def concat(ctx: TaskContext) -> dict[str, Any]:
    """Join the upstream outputs' text (``text``, else ``stdout``) in task-id order."""
    upstream = ctx.inputs.get("upstream", {})
    separator = ctx.inputs.get("separator", "\n")
    if not isinstance(upstream, dict) or not isinstance(separator, str):
        raise TaskError(
            "inputs.upstream must be an object and separator a string", kind="bad_input"
        )
    parts = [_text_of(upstream[task_id]) for task_id in sorted(upstream)]
    return {"text": separator.join(parts), "count": len(parts)}


@agent(capabilities=["blob"])
async def blob(ctx: TaskContext) -> dict[str, Any]:
    """Return ``inputs.bytes`` (default 1,000,000) characters of text: an output large enough to
    go by reference (see payloads in the README)."""
    size = ctx.inputs.get("bytes", 1_000_000)
    if not isinstance(size, int) or not 0 <= size <= 100_000_000:
        raise TaskError("inputs.bytes must be an integer from 0 to 100,000,000", kind="bad_input")
    line = f"{ctx.task_id} line of payload text\n"
    text = (line * (size // len(line) + 1))[:size]
    return {"text": text, "bytes": size}


@agent(capabilities=["digest"])
async def digest(ctx: TaskContext) -> dict[str, Any]:
    """The sha256 and length of each upstream output's text, as the agent received it."""
    upstream = ctx.inputs.get("upstream", {})
    if not isinstance(upstream, dict):
        raise TaskError("inputs.upstream must be an object", kind="bad_input")
    texts = {task_id: _text_of(output).encode() for task_id, output in upstream.items()}
    return {
        task_id: {"sha256": hashlib.sha256(text).hexdigest(), "bytes": len(text)}
        for task_id, text in sorted(texts.items())
    }


@agent(capabilities=["sleep"])
async def sleep(ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``inputs.seconds`` (default 1), reporting progress each step; for timeouts."""
    seconds = ctx.inputs.get("seconds", 1)
    if not isinstance(seconds, int | float) or seconds < 0:
        raise TaskError("inputs.seconds must be a non-negative number", kind="bad_input")
    steps = 4
    for step in range(steps):
        await asyncio.sleep(seconds / steps)
        await ctx.progress(100 * (step + 1) / steps, f"slept {step + 1}/{steps}")
    return {"slept": seconds}


@agent(capabilities=["fail"])
async def fail(ctx: TaskContext) -> dict[str, Any]:
    """Fail on purpose: ``inputs.retriable`` (default False) and ``inputs.kind``."""
    retriable = bool(ctx.inputs.get("retriable", False))
    kind = ctx.inputs.get("kind", "demo_failure")
    raise TaskError(ctx.prompt or "failed on purpose", kind=str(kind), retriable=retriable)


def _text_of(output: Any) -> str:
    if isinstance(output, dict):
        for key in ("text", "stdout"):
            value = output.get(key)
            if isinstance(value, str):
                return value.rstrip("\n") if key == "stdout" else value
    return "" if output is None else str(output)
