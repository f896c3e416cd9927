"""Is a Kafka broker answering? A raw Metadata request, standard library only.

A listening socket is not enough (the broker may accept before it serves requests), and a full
client is heavy and noisy for a readiness loop; one Metadata v1 request with an empty topic list
is what every Kafka-compatible broker answers as soon as it can serve clients.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

_METADATA = 3
_CORRELATION_ID = 0x6D657368  # "mesh"


def metadata_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if the broker at host:port answers one Metadata request."""
    client_id = b"mesh-probe"
    body = struct.pack(">hhih", _METADATA, 1, _CORRELATION_ID, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # an empty topic list: brokers only, no topics
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, correlation_id = struct.unpack(">ii", header)
    return bool(correlation_id == _CORRELATION_ID)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def wait_until_ready(
    host: str,
    port: int,
    *,
    timeout: float = 30.0,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.05,
) -> bool:
    """Poll until the broker answers (True), ``alive()`` turns false or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        if metadata_answers(host, port, timeout=min(1.0, timeout)):
            return True
        time.sleep(interval)
    return False


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def first_free_port(host: str, start: int, span: int = 100) -> int:
    """``start`` if it is free, else the next free port above it; OSError if none of the
    ``span`` ports from ``start`` on is."""
    for port in range(start, start + span):
        if port_is_free(host, port):
            return port
    raise OSError(f"no free port on {host} in {start}-{start + span - 1}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
