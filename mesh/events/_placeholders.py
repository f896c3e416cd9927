"""The placeholder grammar of a task's argv and prompt templates, shared by who writes them
(the planner, a plan's author) and who fills them (the agent).

A placeholder is ``{name}`` or ``{name.key…}``; ``{{name…}}`` stands for the literal text
``{name…}``; any other brace is text. In argv every ``{name…}`` is a placeholder; in a prompt
only those whose name is in :data:`PROMPT_ROOTS`. :func:`literal` turns text into a template
that renders as exactly that text, so a value the planner substitutes (a request's title, a
path) can never become a placeholder, nor lose a brace to the un-doubling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[^{}]*)?"
"""A placeholder's name and keys: an identifier, then optionally ``.`` and anything but braces."""

PLACEHOLDER = re.compile(r"\{(" + PATH + r")\}")
ESCAPED_PLACEHOLDER = re.compile(r"\{\{(" + PATH + r")\}\}")

PROMPT_ROOTS = ("inputs", "context")
"""The names that are placeholders inside a prompt (any other ``{word}`` there is prose)."""


def is_placeholder(source: str, roots: Sequence[str] | None) -> bool:
    """Whether ``{source}`` is a placeholder under ``roots`` (None: argv rules, every name)."""
    return roots is None or source.split(".", 1)[0] in roots


def literal(text: str, roots: Sequence[str] | None = None) -> str:
    """A template that renders as exactly ``text`` under ``roots`` (None: argv rules).

    It mirrors the agent's parse: where a placeholder or a doubled one would be read, one more
    brace on each side makes it read as the text it was; every other character stays."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        start = text.find("{", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        match = ESCAPED_PLACEHOLDER.match(text, start)
        if match is None or not is_placeholder(match.group(1), roots):
            match = PLACEHOLDER.match(text, start)
            if match is not None and not is_placeholder(match.group(1), roots):
                match = None
        if match is None:
            out.append("{")
            i = start + 1
        else:
            out.append("{" + match.group(0) + "}")
            i = match.end()
    return "".join(out)


__all__ = [
    "ESCAPED_PLACEHOLDER",
    "PATH",
    "PLACEHOLDER",
    "PROMPT_ROOTS",
    "is_placeholder",
    "literal",
]
