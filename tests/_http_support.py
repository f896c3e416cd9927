"""A real HTTP server on loopback for HTTP-agent tests: the test sets how it answers (healthy,
failing, slow) and reads back every request it received."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b'{"ok": true}'
    delay: float = 0.0
    """Seconds to hold the response (cut short by ``release()`` or when the stub closes)."""
    content_type: str = "application/json"
    parts: tuple[bytes, ...] = ()
    """Stream these instead of ``body``: no Content-Length, each part flushed, the later ones
    only after ``release()`` (so a test sees the first part while the call runs)."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HttpStub:
    """Answers every POST with ``answer`` (change it at any time); records what it received."""

    answer: Answer = field(default_factory=Answer)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)

    def set(self, answer: Answer) -> None:
        with self._lock:
            self.answer = answer

    def hold(self) -> None:
        """From now on, responses wait their full ``delay`` (until ``release()``)."""
        self._released.clear()

    def release(self) -> None:
        """Let every held response go now."""
        self._released.set()

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.received.append(Received(handler.path, dict(handler.headers.items()), body))
            answer = self.answer
        if answer.delay:
            self._released.wait(answer.delay)
        handler.send_response(answer.status)
        handler.send_header("Content-Type", answer.content_type)
        if answer.parts:  # HTTP/1.0 without a length: the body ends when the connection does
            handler.end_headers()
            for number, part in enumerate(answer.parts):
                if number:
                    self._released.wait(30)
                with contextlib.suppress(OSError):
                    handler.wfile.write(part)
                    handler.wfile.flush()
            return
        handler.send_header("Content-Length", str(len(answer.body)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the client may have given up (a timeout test)
            handler.wfile.write(answer.body)


def json_answer(status: int, value: Any, delay: float = 0.0) -> Answer:
    return Answer(status, json.dumps(value).encode(), delay)


@contextlib.contextmanager
def http_stub(answer: Answer | None = None) -> Iterator[HttpStub]:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving ``HttpStub`` until exit."""
    stub = HttpStub(answer or Answer())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            stub._handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/run"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="http-stub", daemon=True
    )
    thread.start()
    try:
        yield stub
    finally:
        stub.release()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
