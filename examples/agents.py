"""Example Python agents written with the mesh SDK.

Serve them from the repository root::

    mesh agent run --kind python --id examples-1 --module examples.agents

The demo agents (``noop``, ``echo``, ``concat``, ``blob``, ``digest``, ``sleep``, ``fail``) are
imported from ``mesh.agents.demo`` so this module serves them too; ``word_count`` and ``shout``
show how to write your own: an ``async def`` that reports progress, and a plain ``def`` (it runs
in a thread).
"""

from __future__ import annotations

from typing import Any

from mesh.agents import TaskContext, TaskError, agent
from mesh.agents.demo import blob, concat, digest, echo, fail, noop, sleep
from mesh.events import Capability


@agent(capabilities=[Capability(name="summarise", level=3, tags=("text",))])
async def word_count(ctx: TaskContext) -> dict[str, Any]:
    """Count the words of the prompt and of every upstream ``text``."""
    if ctx.prompt is None and not ctx.inputs.get("upstream"):
        raise TaskError("nothing to count: no prompt and no upstream text", kind="empty_input")
    await ctx.progress(10, "counting")
    texts = [ctx.prompt or ""]
    upstream = ctx.inputs.get("upstream", {})
    if isinstance(upstream, dict):
        texts += [o.get("text", "") for o in upstream.values() if isinstance(o, dict)]
    words = sum(len(text.split()) for text in texts if isinstance(text, str))
    return {"words": words}


@agent(capabilities=["shout"])
def shout(ctx: TaskContext) -> dict[str, Any]:
    """Upper-case the prompt; a plain function, so it runs in a worker thread."""
    ctx.progress_threadsafe(50, "shouting")
    return {"text": (ctx.prompt or "").upper()}


__all__ = ["blob", "concat", "digest", "echo", "fail", "noop", "shout", "sleep", "word_count"]
