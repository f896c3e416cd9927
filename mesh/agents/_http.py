"""HTTP agents: POST each attempt to a URL as JSON, and map the response to an outcome.

The request body (``Content-Type: application/json``)::

    {"workflow_id": "...", "task_id": "...", "attempt": 1, "agent_id": "...",
     "correlation_id": "...", "name": "...", "prompt": "..." | null, "inputs": {...},
     "capabilities": [{"name": "...", "min_level": null, "tags": []}],
     "deadline": "2026-01-01T00:00:00Z" | null, "timeout_seconds": 30.0 | null}

where ``prompt`` has its ``{inputs…}`` and ``{context…}`` placeholders filled (one that names a
missing input fails the attempt as ``bad_template`` before any call) and ``inputs`` holds the
upstream outputs (``inputs.upstream``) and the request's context (``inputs.context``); with an
``Idempotency-Key: <workflow id>/<task id>/<attempt>`` header: delivery to agents is
at-least-once, so an endpoint may see an attempt twice and can recognise it.

The response:

- **2xx**: success; a JSON object body is the task's output (another JSON value becomes
  ``{"result": value}``, an empty body ``{}``);
- **4xx**: the endpoint judged the task and refused it: a non-retriable failure with the body's
  reason (``reason``, ``error``, ``message`` or ``detail`` of a JSON body, else its text) and
  kind (``kind`` or ``error_kind``, else ``http_<status>``); it does not count against the
  agent's breaker. 408 and 429 are the exception: the endpoint is busy, so retriable and counted;
- **5xx**, a timeout, a connection error, an unusable 2xx body or any other status: a retriable
  failure that counts against the breaker.

A cancelled attempt (``CancelTask``, the agent stopping) closes its call in flight.

The body read is capped (``max_response_bytes``); the URL's credentials and query string and the
configured headers are never logged or put in a message.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from mesh.agents._outcome import Failure, Outcome, OutputFn, ProgressFn, Success, time_limit
from mesh.agents._stream import no_output
from mesh.agents._templates import attempt_values
from mesh.errors import ArgvTemplateError, ConfigError
from mesh.events import Capability, TaskAssigned

MAX_RESPONSE_BYTES = 1024 * 1024
"""Default cap on the response body read per attempt."""

DEFAULT_TIMEOUT = 30.0
"""Seconds one call may take when neither the agent nor the task says."""

_BUSY = (408, 429)
_REASON_KEYS = ("reason", "error", "message", "detail")
_KIND_KEYS = ("kind", "error_kind")
_MAX_REASON = 2_000


def redact(url: str) -> str:
    """The URL without user info, query string or fragment (what may be logged)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


@dataclass(frozen=True)
class HttpConfig:
    """How an HTTP agent calls its endpoint (from ``mesh agent run --kind http``)."""

    capabilities: tuple[Capability, ...]
    url: str
    timeout: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    max_response_bytes: int = MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if not self.capabilities:
            raise ConfigError("an HTTP agent needs at least one --capability")
        try:
            parsed = httpx.URL(self.url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigError(f"bad --url: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"--url must be an http:// or https:// URL, not {redact(self.url)}")
        if self.max_response_bytes < 1:
            raise ConfigError("--max-response-bytes must be at least 1")
        for name, value in self.headers.items():
            if not (name.isascii() and name.isprintable() and value.isascii()):
                raise ConfigError(f"--header {name[:40]!r}: names and values must be ASCII")

    @property
    def safe_url(self) -> str:
        return redact(self.url)


class HttpRunner:
    """Runs an attempt as one POST to the configured URL (see the module docstring)."""

    def __init__(self, config: HttpConfig, *, agent_id: str) -> None:
        self.config = config
        self.agent_id = agent_id
        self._client: httpx.AsyncClient | None = None

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        return self.config.capabilities

    def body(self, assigned: TaskAssigned, limit: float | None) -> dict[str, Any]:
        """The JSON the endpoint receives for ``assigned`` (its prompt's placeholders filled;
        ``ArgvTemplateError`` if one names a missing input)."""
        task = assigned.spec
        prompt = attempt_values(assigned)["prompt"]
        return {
            "workflow_id": assigned.workflow_id,
            "task_id": assigned.task_id,
            "attempt": assigned.attempt,
            "agent_id": self.agent_id,
            "correlation_id": assigned.correlation_id,
            "name": task.name,
            "prompt": prompt,
            "inputs": task.inputs,
            "capabilities": [c.model_dump(mode="json") for c in task.capabilities],
            "deadline": assigned.deadline.isoformat() if assigned.deadline else None,
            "timeout_seconds": limit,
        }

    async def run(
        self, assigned: TaskAssigned, progress: ProgressFn, output: OutputFn = no_output
    ) -> Outcome:
        limit = time_limit(assigned, self.config.timeout, datetime.now(UTC))
        if limit is not None and limit <= 0:
            return Failure("timeout", "the attempt's deadline passed before it started", True)
        seconds = limit if limit is not None else DEFAULT_TIMEOUT
        try:
            body = self.body(assigned, limit)
        except ArgvTemplateError as exc:
            return Failure(ArgvTemplateError.kind, str(exc), retriable=False)
        headers = {
            **self.config.headers,
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the cap applies to what we read, unexpanded
            # Ids may hold any non-space character; a header carries ASCII only.
            "Idempotency-Key": quote(
                f"{assigned.workflow_id}/{assigned.task_id}/{assigned.attempt}", safe="/:@"
            ),
        }
        where = self.config.safe_url
        try:
            # httpx's timeout bounds each connect/read/write; this one bounds the whole call.
            async with asyncio.timeout(seconds):
                async with self.client.stream(
                    "POST",
                    self.config.url,
                    json=body,
                    headers=headers,
                    timeout=httpx.Timeout(seconds),
                ) as response:
                    status = response.status_code
                    content = await _read_capped(response, self.config.max_response_bytes, output)
        except (TimeoutError, httpx.TimeoutException):
            return Failure("timeout", f"POST {where} did not answer within {seconds:g} s", True)
        except httpx.TransportError as exc:
            return Failure(
                "connection_error",
                f"POST {where} failed: {type(exc).__name__}: {_safe(exc, self.config.url)}",
                retriable=True,
                infrastructure=True,
            )
        except httpx.HTTPError as exc:
            return Failure(
                "http_error",
                f"POST {where} failed: {type(exc).__name__}",
                retriable=True,
                infrastructure=True,
            )
        except Exception as exc:  # a runner must report, never raise (the worker's contract)
            return Failure(
                "agent_error",
                f"POST {where} could not be made: {type(exc).__name__}",
                retriable=True,
                infrastructure=True,
            )
        return outcome_of_response(status, content, where, self.config.max_response_bytes)

    @property
    def client(self) -> httpx.AsyncClient:
        """One connection pool for the agent's life (created in the running loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool (the worker calls this on shutdown)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _read_capped(
    response: httpx.Response, limit: int, output: OutputFn = no_output
) -> bytes | None:
    """The body, or None if it is larger than ``limit`` bytes (reading stops there).

    A body the service streams (no ``Content-Length``: chunked, server-sent events, NDJSON) is
    also handed to ``output`` as it arrives, so ``mesh logs`` shows it while the call runs.
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if declared is None else None
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk
        if decoder is not None:
            output("body", decoder.decode(chunk))
        if len(kept) > limit:
            return None
    if decoder is not None:
        output("body", decoder.decode(b"", final=True))
    return bytes(kept)


def outcome_of_response(status: int, content: bytes | None, where: str, limit: int) -> Outcome:
    """Map an HTTP status and (capped) body to the attempt's outcome."""
    if content is None:
        return Failure(
            "bad_response",
            f"POST {where} answered {status} with a body over {limit} bytes",
            retriable=True,
            infrastructure=True,
        )
    text = content.decode("utf-8", errors="replace")
    if 200 <= status < 300:
        if not text.strip():
            return Success({})
        try:
            value = json.loads(text)
        except ValueError:
            return Failure(
                "bad_response",
                f"POST {where} answered {status} with a body that is not JSON: {text[:200]!r}",
                retriable=True,
                infrastructure=True,
            )
        return Success(value if isinstance(value, dict) else {"result": value})
    kind, reason = _reason(text, status)
    message = f"POST {where} answered {status}: {reason}"[:_MAX_REASON]
    if 400 <= status < 500 and status not in _BUSY:
        return Failure(kind, message, retriable=False, infrastructure=False)
    return Failure(kind, message, retriable=True, infrastructure=True)


def _reason(text: str, status: int) -> tuple[str, str]:
    """(error kind, reason) from a JSON error body, else ``http_<status>`` and the text."""
    kind, reason = f"http_{status}", text.strip()[:_MAX_REASON] or "no body"
    try:
        value = json.loads(text)
    except ValueError:
        return kind, reason
    if isinstance(value, dict):
        given = next((value[k] for k in _KIND_KEYS if isinstance(value.get(k), str)), None)
        said = next((value[k] for k in _REASON_KEYS if isinstance(value.get(k), str)), None)
        kind = given or kind
        reason = said or reason
    return kind, reason


def _safe(exc: BaseException, url: str) -> str:
    """An exception's text without the URL's secrets, however it was quoted."""
    text = str(exc) or "no detail"
    parsed = httpx.URL(url)
    secrets = [url, str(parsed), parsed.password, parsed.username, parsed.query.decode()]
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:_MAX_REASON]


__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "HttpConfig",
    "HttpRunner",
    "outcome_of_response",
    "redact",
]
