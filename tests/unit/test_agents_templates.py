"""argv templates: placeholders by dotted dict paths, escapes, and no way out of one argument."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.agents import render, render_argv
from mesh.agents._templates import check_template, values_for
from mesh.errors import ArgvTemplateError

VALUES = values_for(
    prompt="fix the bug",
    task_id="B",
    workflow_id="wf-1",
    attempt=2,
    inputs={
        "name": "mesh",
        "count": 3,
        "flag": True,
        "nothing": None,
        "upstream": {"A": {"stdout": "hello\n", "json": {"k": [1, 2]}}},
        "list": [1, "two"],
    },
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{prompt}", "fix the bug"),
        ("--task={task_id}", "--task=B"),
        ("{workflow_id}/{task_id}#{attempt}", "wf-1/B#2"),
        ("{inputs.name}", "mesh"),
        ("{inputs.count}", "3"),
        ("{inputs.flag}", "true"),
        ("{inputs.nothing}", ""),
        ("{inputs.upstream.A.stdout}", "hello\n"),
        ("{inputs.upstream.A.json}", '{"k": [1, 2]}'),
        ("{inputs.list}", '[1, "two"]'),
        ("{inputs.list.1}", "two"),
        ("no placeholders", "no placeholders"),
        ("", ""),
    ],
)
def test_placeholders_render_to_their_text(template: str, expected: str) -> None:
    assert render(template, VALUES) == expected


def test_inputs_alone_is_all_inputs_as_json() -> None:
    import json

    assert json.loads(render("{inputs}", VALUES)) == VALUES["inputs"]


def test_missing_prompt_renders_empty() -> None:
    values = values_for(prompt=None, task_id="t", workflow_id="w", attempt=1, inputs={})
    assert render("[{prompt}]", values) == "[]"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{prompt}}", "{prompt}"),
        ("--flag={{inputs.name}}", "--flag={inputs.name}"),
        ("${{HOME}}/{task_id}", "${HOME}/B"),
        ("{{prompt}} is {prompt}", "{prompt} is fix the bug"),
    ],
)
def test_doubled_braces_make_a_placeholder_literal(template: str, expected: str) -> None:
    assert render(template, VALUES) == expected


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{inputs.missing}", "no input 'missing' and no upstream task 'missing'"),
        ("{inputs.upstream.Z.stdout}", "inputs.upstream has no key 'Z'"),
        ("{inputs.name.first}", "inputs.name is a string"),
        ("{inputs.list.2}", "inputs.list has 2 items, no item 2"),
        ("{inputs.list.x}", "inputs.list is a list"),
        ("{prompt.upper}", "prompt is a string"),
        ("{attempt.real}", "attempt is a number"),
        ("{secret}", "unknown placeholder {secret}"),
        ("{__import__}", "unknown placeholder {__import__}"),
        ("{inputs.__class__}", "no input '__class__'"),
        ("{inputs.name!r}", "no input 'name!r'"),
        ("{inputs.name:>10}", "no input 'name:>10'"),
        ("{inputs.name.__class__}", "inputs.name is a string"),
        ("{inputs..name}", "empty key"),
        ("{inputs.}", "empty key"),
    ],
)
def test_bad_placeholders_are_bad_template_errors(template: str, fragment: str) -> None:
    """Nothing but dict keys is reachable: attribute access, indexing, conversions and format
    specs are just keys that do not exist."""
    with pytest.raises(ArgvTemplateError) as caught:
        render(template, VALUES)
    assert fragment in str(caught.value)
    assert caught.value.kind == "bad_template"
    assert caught.value.retriable is False


@pytest.mark.parametrize(
    "template",
    [
        "{0}",
        "{}",
        "{ prompt }",
        "{prompt",
        "prompt}",
        "print({'a': {'b': 1}})",
        "import json, sys; print(json.dumps({'joined': sys.argv[1].strip()}))",
        '{"key": [1, 2]}',
        "}}{{",
        "{{ not a placeholder }}",
    ],
)
def test_braces_that_are_not_placeholders_stay_as_written(template: str) -> None:
    """Code in a task's command needs no escaping unless it spells a placeholder."""
    assert render(template, VALUES) == template


def test_check_rejects_unknown_names_without_values() -> None:
    check_template("{prompt} {inputs.anything.at.all}")
    with pytest.raises(ArgvTemplateError):
        check_template("{env.HOME}")


@pytest.mark.parametrize(
    "prompt",
    [
        "; rm -rf ~",
        "$(rm -rf ~)",
        "`id`",
        "a' 'b",
        'a" "b',
        "line1\nline2",
        "* ? [a-z]",
        "--help",
        "{{",
    ],
)
def test_substituted_values_stay_inside_their_one_element(prompt: str) -> None:
    values = values_for(prompt=prompt, task_id="t", workflow_id="w", attempt=1, inputs={})
    argv = render_argv(["tool", "-p", "{prompt}", "--id={task_id}"], values)
    assert argv == ["tool", "-p", prompt, "--id=t"]


def test_values_holding_braces_are_not_expanded_again() -> None:
    """A prompt is rendered once: what it renders to (here a literal placeholder, written with
    doubled braces) is never parsed again."""
    values: dict[str, Any] = values_for(
        prompt="{{inputs.secret}}", task_id="t", workflow_id="w", attempt=1, inputs={"secret": "x"}
    )
    assert render("{prompt}", values) == "{inputs.secret}"
