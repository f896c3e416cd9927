"""Text the planner puts into an agent's template reaches the agent exactly as it was."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.agents import render
from mesh.events import PROMPT_ROOTS, literal
from mesh.planner._expr import substitute

_TEXT = st.text(alphabet="{}ab._ 1", max_size=40)


@given(_TEXT)
def test_literal_text_renders_as_itself_in_argv(text: str) -> None:
    assert render(literal(text), {}) == text


@given(_TEXT)
def test_literal_text_renders_as_itself_in_a_prompt(text: str) -> None:
    assert render(literal(text, PROMPT_ROOTS), {}, PROMPT_ROOTS) == text


def test_a_substituted_json_value_and_a_would_be_placeholder_stay_as_written() -> None:
    description = 'use {"a": 1} and {inputs.secret} and {{prompt}}'
    argv_part = substitute(
        "echo ${request.d}", {"request": {"d": description}}, "t", escape=literal
    )
    assert render(argv_part, {"inputs": {}}) == f"echo {description}"
