"""Turn ``Settings`` into aiokafka client arguments and aiokafka errors into ``MeshError``s.

Every aiokafka client mesh creates gets its arguments from :func:`client_kwargs`, so SASL and TLS
work the same for producers, consumers and the admin client; and every call that talks to a
broker runs inside :func:`kafka_errors`, so a user sees "broker unreachable" or "login refused"
rather than a library traceback.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from mesh.errors import AuthError, BrokerError, BrokerUnavailable, UnsupportedByBroker
from mesh.kafka.clients import stop_clients
from mesh.settings import Settings


class _Startable(Protocol):
    async def start(self) -> None: ...


class _Producer(_Startable, Protocol):
    async def stop(self) -> None: ...


class _Admin(_Startable, Protocol):
    async def close(self) -> None: ...


Client = TypeVar("Client", bound=_Producer | _Admin)


def consumer_kwargs(settings: Settings) -> dict[str, Any]:
    """:func:`client_kwargs` for a consumer on the task path (how long a fetch may wait)."""
    return {**client_kwargs(settings), "fetch_max_wait_ms": settings.fetch_max_wait_ms}


def producer_kwargs(settings: Settings) -> dict[str, Any]:
    """:func:`client_kwargs` for a producer on the task path: every record acknowledged by
    all in-sync replicas, in batches of ``max_batch_bytes`` (under the topics' 1 MiB
    ``max.message.bytes``; a larger record travels in a batch of its own), and room for the
    largest event in one request."""
    return {
        **client_kwargs(settings),
        "acks": "all",
        "max_batch_size": settings.max_batch_bytes,
        "max_request_size": max(1_048_576, settings.max_event_bytes) + _HEADROOM,
    }


_HEADROOM = 64 * 1024  # record headers and batch overhead above max_event_bytes


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by every aiokafka client (producer, consumer, admin)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        kwargs["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return kwargs


_LOGIN_REFUSED = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
_NOT_AUTHORIZED = (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)


def _describe(settings: Settings | None) -> str:
    return settings.bootstrap_servers if settings else "the configured brokers"


@contextlib.contextmanager
def kafka_errors(settings: Settings | None = None, action: str = "talk to Kafka") -> Iterator[None]:
    """Translate aiokafka errors raised inside the block into ``BrokerError`` subclasses."""
    where = _describe(settings)
    try:
        yield
    except _LOGIN_REFUSED as exc:
        raise AuthError(
            f"could not {action}: {where} refused the SASL login ({_first_line(exc)}); "
            "check MESH_SASL_USERNAME, MESH_SASL_PASSWORD and MESH_SASL_MECHANISM"
        ) from exc
    except _NOT_AUTHORIZED as exc:
        raise AuthError(
            f"could not {action}: the cluster at {where} does not authorize it "
            f"({type(exc).__name__}); ask for the ACLs the mesh needs"
        ) from exc
    except ssl.SSLError as exc:
        raise AuthError(
            f"could not {action}: TLS handshake with {where} failed ({exc.reason}); "
            "check MESH_SSL_CAFILE and MESH_SECURITY_PROTOCOL"
        ) from exc
    except IncompatibleBrokerVersion as exc:
        raise UnsupportedByBroker(
            f"could not {action}: the broker at {where} does not support it ({exc})"
        ) from exc
    except (KafkaConnectionError, KafkaTimeoutError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(
            f"could not {action}: no Kafka broker answered at {where}; "
            "is it running, and is MESH_BOOTSTRAP_SERVERS right?"
        ) from exc
    except KafkaError as exc:
        raise BrokerError(f"could not {action}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def diagnose_connect_failure(settings: Settings, error: BrokerUnavailable) -> BrokerError:
    """Tell a refused login from a broker that is down.

    aiokafka clients report both as "Unable to bootstrap" with no cause attached, so with SASL or
    TLS settings we open one raw connection to the first bootstrap server: it raises the real
    authentication or handshake error when that is what happened.
    """
    if settings.security_protocol == "PLAINTEXT":
        return error
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    kwargs = client_kwargs(settings)
    kwargs.pop("bootstrap_servers")
    try:
        with kafka_errors(settings, "connect to Kafka"):
            conn = await create_conn(host.strip("[]"), int(port), **kwargs)
            conn.close()
    except (AuthError, BrokerError) as exc:
        if not isinstance(exc, BrokerUnavailable):
            return exc
    except ValueError:
        pass
    return error


@contextlib.asynccontextmanager
async def started(
    client: Client, settings: Settings, action: str = "connect to Kafka"
) -> AsyncIterator[Client]:
    """``client`` (a producer, consumer or admin client) started — a refused login or handshake
    is told from a broker that is down — and stopped however the block ends, even if starting
    failed: a client holds sockets from its first attempt."""
    try:
        try:
            with kafka_errors(settings, action):
                await client.start()
        except BrokerUnavailable as exc:
            raise await diagnose_connect_failure(settings, exc) from exc.__cause__
        yield client
    finally:
        await stop_clients(client)


@contextlib.asynccontextmanager
async def open_admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; connection and login failures become ``BrokerError``s."""
    async with started(AIOKafkaAdminClient(**client_kwargs(settings)), settings) as admin:
        yield admin


__all__ = [
    "BrokerError",
    "client_kwargs",
    "consumer_kwargs",
    "diagnose_connect_failure",
    "kafka_errors",
    "open_admin",
    "producer_kwargs",
    "started",
]
