"""HTTP agents against a real server on loopback: what is posted, how each kind of response
becomes an outcome, what counts against the breaker, caps, timeouts and secrets; and what counts
for command and Python agents."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mesh.agents import Failure, HttpConfig, HttpRunner, Success, TaskError
from mesh.agents._breaker import counted
from mesh.agents._command import CommandResult, outcome_of
from mesh.agents._http import redact
from mesh.agents._sdk import failure_of
from mesh.errors import ConfigError
from mesh.events import Capability, CapabilityRequirement, Producer, TaskAssigned, TaskSpec, meta
from tests._agents_support import eventually
from tests._http_support import Answer, http_stub, json_answer

CAPS = (Capability(name="review"),)


def assigned(prompt: str = "review this", timeout: float | None = None) -> TaskAssigned:
    return TaskAssigned(
        **meta(Producer(component="test", instance="t"), correlation_id="req-1"),
        workflow_id="wf-1",
        task_id="t1",
        attempt=2,
        agent_id="http-1",
        task=TaskSpec(
            task_id="t1",
            name="review",
            capabilities=[CapabilityRequirement(name="review")],
            prompt=prompt,
            inputs={"diff": "+x"},
            timeout_seconds=timeout,
        ),
    )


async def run(url: str, **config: Any) -> Any:
    runner = HttpRunner(HttpConfig(capabilities=CAPS, url=url, **config), agent_id="http-1")
    try:
        return await runner.run(assigned(), _no_progress)
    finally:
        await runner.aclose()


async def _no_progress(percent: float | None, message: str, details: dict[str, Any]) -> None:
    raise AssertionError("HTTP agents report no progress")


async def test_a_streamed_body_is_handed_on_as_it_arrives() -> None:
    """A body without Content-Length reaches ``output`` part by part while the call runs; the
    whole body is still the result."""
    parts = (b'{"log": "step 1\\n', b'step 2", "ok": true}')
    seen: list[tuple[str, str]] = []
    with http_stub(Answer(parts=parts)) as stub:
        stub.hold()
        runner = HttpRunner(HttpConfig(capabilities=CAPS, url=stub.url), agent_id="http-1")
        call = asyncio.ensure_future(
            runner.run(assigned(), _no_progress, lambda s, t: seen.append((s, t)))
        )
        try:
            await eventually(lambda: seen, what="the first part")
            assert not call.done()
            stub.release()
            outcome = await asyncio.wait_for(call, 20)
        finally:
            await runner.aclose()
    assert outcome == Success({"log": "step 1\nstep 2", "ok": True})
    assert {stream for stream, _ in seen} == {"body"}
    assert "".join(text for _, text in seen) == (parts[0] + parts[1]).decode()


async def test_a_body_with_a_length_is_not_streamed() -> None:
    seen: list[str] = []
    with http_stub(json_answer(200, {"ok": True})) as stub:
        runner = HttpRunner(HttpConfig(capabilities=CAPS, url=stub.url), agent_id="http-1")
        try:
            outcome = await runner.run(assigned(), _no_progress, lambda s, t: seen.append(t))
        finally:
            await runner.aclose()
    assert (outcome, seen) == (Success({"ok": True}), [])


async def test_posts_the_task_as_json_and_a_json_object_is_the_output() -> None:
    with http_stub(json_answer(200, {"verdict": "lgtm", "score": 9})) as stub:
        outcome = await run(stub.url, headers={"Authorization": "Bearer t0ken"})
        [request] = stub.requests()
    assert outcome == Success({"verdict": "lgtm", "score": 9})
    assert counted(outcome) is None
    body = request.body
    assert body["workflow_id"] == "wf-1"
    assert body["task_id"] == "t1"
    assert body["attempt"] == 2
    assert body["agent_id"] == "http-1"
    assert body["prompt"] == "review this"
    assert body["inputs"] == {"diff": "+x"}
    assert body["capabilities"][0]["name"] == "review"
    assert request.headers["Idempotency-Key"] == "wf-1/t1/2"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("answer", "output"),
    [
        (json_answer(200, [1, 2]), {"result": [1, 2]}),
        (Answer(204, b""), {}),
        (json_answer(201, "done"), {"result": "done"}),
    ],
)
async def test_other_2xx_bodies(answer: Answer, output: dict[str, Any]) -> None:
    with http_stub(answer) as stub:
        assert await run(stub.url) == Success(output)


async def test_a_4xx_is_the_tasks_failure_with_the_bodys_reason_and_not_counted() -> None:
    answer = json_answer(422, {"kind": "invalid_diff", "reason": "the diff does not apply"})
    with http_stub(answer) as stub:
        outcome = await run(stub.url)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "invalid_diff"
    assert "the diff does not apply" in outcome.message
    assert "422" in outcome.message
    assert outcome.retriable is False
    assert counted(outcome) is None


async def test_a_4xx_with_a_plain_body() -> None:
    with http_stub(Answer(404, b"no such route", content_type="text/plain")) as stub:
        outcome = await run(stub.url)
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("http_404", False)
    assert "no such route" in outcome.message


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_5xx_and_busy_are_retriable_and_counted(status: int) -> None:
    with http_stub(json_answer(status, {"error": "overloaded"})) as stub:
        outcome = await run(stub.url)
    assert isinstance(outcome, Failure)
    assert outcome.kind == f"http_{status}"
    assert outcome.retriable is True
    assert "overloaded" in outcome.message
    assert counted(outcome) is not None


async def test_a_2xx_that_is_not_json_is_counted() -> None:
    with http_stub(Answer(200, b"<html>login</html>", content_type="text/html")) as stub:
        outcome = await run(stub.url)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "bad_response"
    assert counted(outcome) is not None


async def test_the_body_read_is_capped() -> None:
    with http_stub(json_answer(200, {"blob": "x" * 5_000})) as stub:
        outcome = await run(stub.url, max_response_bytes=1_000)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "bad_response"
    assert "1000 bytes" in outcome.message


async def test_a_slow_endpoint_times_out_and_is_counted() -> None:
    with http_stub(json_answer(200, {}, delay=30)) as stub:
        outcome = await asyncio.wait_for(run(stub.url, timeout=0.3), timeout=20)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "timeout"
    assert outcome.retriable is True
    assert counted(outcome) is not None


async def test_the_tasks_own_timeout_applies_too() -> None:
    with http_stub(json_answer(200, {}, delay=30)) as stub:
        runner = HttpRunner(HttpConfig(capabilities=CAPS, url=stub.url), agent_id="http-1")
        try:
            outcome = await asyncio.wait_for(runner.run(assigned(timeout=0.3), _no_progress), 20)
        finally:
            await runner.aclose()
    assert isinstance(outcome, Failure)
    assert outcome.kind == "timeout"


async def test_connection_refused_is_counted_and_secrets_stay_out_of_the_message() -> None:
    with http_stub() as stub:
        port = stub.url.split(":")[2].split("/")[0]
    # The stub is closed now: nothing listens on its port.
    url = f"http://user:s3cret@127.0.0.1:{port}/run?token=abc123"
    outcome = await run(url)
    assert isinstance(outcome, Failure)
    assert outcome.kind == "connection_error"
    assert counted(outcome) is not None
    assert "s3cret" not in outcome.message
    assert "abc123" not in outcome.message
    assert f"127.0.0.1:{port}/run" in outcome.message


def test_redact_drops_credentials_and_query() -> None:
    assert redact("https://u:p@example.test:8443/a/b?key=v#f") == "https://example.test:8443/a/b"


@pytest.mark.parametrize("url", ["ftp://example.test/x", "not a url", "http://"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        HttpConfig(capabilities=CAPS, url=url)


def test_an_http_agent_needs_a_capability() -> None:
    with pytest.raises(ConfigError):
        HttpConfig(capabilities=(), url="http://127.0.0.1:1/run")


def command_result(code: int | None, timed_out: bool = False) -> CommandResult:
    return CommandResult(1, code, "", "boom", truncated=False, timed_out=timed_out)


@pytest.mark.parametrize(
    ("outcome", "counts"),
    [
        (outcome_of(command_result(0), None), False),
        (outcome_of(command_result(1), None), False),  # "tests failed": the task's own result
        (outcome_of(command_result(2), None), False),
        (outcome_of(command_result(126), None), True),  # cannot execute
        (outcome_of(command_result(127), None), True),  # not found
        (outcome_of(command_result(None, timed_out=True), 5.0), True),
        (failure_of(TaskError("3 tests failed", kind="tests_failed")), False),
        (failure_of(TaskError("upstream busy", retriable=True)), True),
        (failure_of(ConnectionError("refused")), True),
        (Failure("cancelled", "the attempt was cancelled", False), False),
        (Failure("agent_stopping", "shutting down", True), False),
        (Failure("breaker_open", "open", True), False),
        (Failure("no_command", "no argv", False), False),
    ],
)
def test_what_counts_against_an_agents_breaker(outcome: Any, counts: bool) -> None:
    assert (counted(outcome) is not None) is counts


async def test_a_non_ascii_id_is_percent_encoded_in_the_idempotency_key() -> None:
    task = assigned().model_copy(update={"workflow_id": "wf-ünï"})
    with http_stub() as stub:
        runner = HttpRunner(HttpConfig(capabilities=CAPS, url=stub.url), agent_id="http-1")
        try:
            outcome = await runner.run(task, _no_progress)
        finally:
            await runner.aclose()
        [request] = stub.requests()
    assert outcome == Success({"ok": True})
    assert request.headers["Idempotency-Key"] == "wf-%C3%BCn%C3%AF/t1/2"
    assert request.body["workflow_id"] == "wf-ünï"


def test_headers_must_be_ascii() -> None:
    with pytest.raises(ConfigError, match="ASCII"):
        HttpConfig(capabilities=CAPS, url="http://127.0.0.1:1/", headers={"X-Token": "clé"})
