"""structlog, configured by the root command and once more by a long-running service.

JSON lines when stderr is not a terminal (so logs can be shipped and grepped), a readable console
otherwise. ``component`` and ``instance`` are bound for the process; workflow and correlation ids
are bound per message with :func:`bind_event_context` through contextvars.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

import structlog


def configure_logging(
    component: str = "cli",
    *,
    level: str = "INFO",
    json: bool | None = None,
    instance: str | None = None,
) -> None:
    """Configure structlog and the stdlib root logger, and bind ``component`` and ``instance``.

    The root command calls it for every command (``cli``); a service calls it again with its own
    level and format (:mod:`mesh.cli._service`), which replace the first ones. ``json=None``
    means JSON when stderr is no terminal.
    """
    as_json = json if json is not None else not sys.stderr.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    if as_json:
        processors.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiokafka, faststream) go through the stdlib: keep them quiet unless they
    # have something serious to say, so a CLI error stays one line.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    structlog.contextvars.bind_contextvars(
        component=component, instance=instance or f"{socket.gethostname()}-{os.getpid()}"
    )


class _StderrLogger:
    """Writes each line to ``sys.stderr`` as it is at that moment.

    Loggers are cached on first use; one holding the stream of the moment it was configured would
    keep writing to a stream swapped out since (by a test runner capturing output) and closed.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


_SECRET_KEYS = frozenset({"password", "sasl_password", "secret", "token"})


def _drop_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Mask values of secret-looking keys, whatever a caller passes."""
    for key in event.keys() & _SECRET_KEYS:
        event[key] = "**********"
    return event


def bind_event_context(
    *, workflow_id: str | None = None, correlation_id: str | None = None
) -> None:
    """Bind the ids of the message being handled to every log line until unbound."""
    values = {"workflow_id": workflow_id, "correlation_id": correlation_id}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_event_context() -> None:
    """Forget the ids of the message handled before: called before each record, so a line about
    a record that carries none (garbage, dead-lettered) never wears its predecessor's ids."""
    structlog.contextvars.unbind_contextvars("workflow_id", "correlation_id")


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` becomes the ``logger`` field."""
    return structlog.get_logger(name) if name else structlog.get_logger()
