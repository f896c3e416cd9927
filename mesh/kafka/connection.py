"""Turn ``Settings`` into aiokafka client arguments and aiokafka errors into ``MeshError``s.

Every aiokafka client mesh creates gets its arguments from :func:`client_kwargs`, so SASL and TLS
work the same for producers, consumers and the admin client; and every call that talks to a
broker runs inside :func:`kafka_errors`, so a user sees "broker unreachable" or "login refused"
rather than a library traceback.

aiokafka clients report a refused login, a mechanism the broker does not offer and a listener of
another protocol all as "Unable to bootstrap"; :func:`diagnose_connect_failure` tells them apart
by probing the first bootstrap server (does it speak TLS? which SASL mechanisms does it offer?)
and by one raw connection with the settings, which raises the real error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.admin import SaslHandShakeRequest

from mesh.errors import AuthError, BrokerError, BrokerUnavailable, ConfigError, UnsupportedByBroker
from mesh.kafka.clients import stop_clients
from mesh.settings import SecurityProtocol, Settings

PROBE_SECONDS = 5.0
"""How long :func:`diagnose_connect_failure` may take to look at a listener."""


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
        kwargs["ssl_context"] = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return kwargs


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    cafile = settings.ssl_cafile
    try:
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except OSError as exc:  # a missing file, or (ssl.SSLError) one that holds no certificate
        reason = (exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror) or str(exc)
        raise ConfigError(
            f"MESH_SSL_CAFILE {cafile} is not a usable CA bundle ({reason}); "
            "give the PEM file of the CA that signed the brokers' certificates"
        ) from exc


_LOGIN_REFUSED = (AuthenticationFailedError, SaslAuthenticationFailed)
NOT_AUTHORIZED = (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
"""The errors of a missing ACL: :func:`kafka_errors` names it; retrying does not help."""
_RESOURCE = {
    TopicAuthorizationFailedError: "topic",
    GroupAuthorizationFailedError: "group",
    TransactionalIdAuthorizationFailed: "transactional id",
    ClusterAuthorizationFailedError: "cluster",
}
_OPERATION_OF_ACTION = (
    # what mesh's own admin actions need, by the words they start with
    ("create topics", "CREATE"),
    ("delete topics", "DELETE"),
    ("add partitions", "ALTER"),
    ("alter topic configs", "ALTER_CONFIGS"),
    ("describe topic configs", "DESCRIBE_CONFIGS"),
    ("describe broker configs", "DESCRIBE_CONFIGS"),
    ("read topic metadata", "DESCRIBE"),
    ("read the cluster's metadata", "DESCRIBE"),
    ("describe ACLs", "DESCRIBE"),
    ("create ACLs", "ALTER"),
    ("delete ACLs", "ALTER"),
    ("describe client quotas", "DESCRIBE_CONFIGS"),
    ("alter client quotas", "ALTER_CONFIGS"),
)
_WRITING = ("publish", "produce", "send", "write", "deregister", "redrive")
"""First words of actions that write records: a topic they are refused needs WRITE."""


def principal_of(settings: Settings) -> str:
    """The principal the brokers see for these settings, as ACLs name it. mesh presents no
    client certificate, so a client without SASL is ``User:ANONYMOUS``."""
    if settings.security_protocol.startswith("SASL"):
        return f"User:{settings.sasl_username}"
    return "User:ANONYMOUS"


def missing_permission(exc: KafkaError, action: str) -> tuple[str, str, str | None]:
    """The ACL an authorization error says is missing: operation, resource type and name(s).

    aiokafka names the refused topic, group or transactional id in the error; the operation
    follows from what was being done (``action``, the words given to :func:`kafka_errors`).
    """
    resource = next((name for kind, name in _RESOURCE.items() if isinstance(exc, kind)), "cluster")
    operation = next((op for start, op in _OPERATION_OF_ACTION if action.startswith(start)), None)
    if operation is None:
        writing = action.split(" ", 1)[0] in _WRITING
        if resource == "topic":
            operation = "WRITE" if writing else "READ"
        elif resource == "group":
            operation = "DESCRIBE" if action.startswith(("describe", "list")) else "READ"
        elif resource == "transactional id":
            operation = "WRITE"
        else:
            operation = "IDEMPOTENT_WRITE" if writing else "the operation"
    names = exc.args[0] if exc.args else None
    if isinstance(names, set | frozenset | list | tuple):
        names = ", ".join(sorted(str(name) for name in names)) or None
    elif names is not None:
        names = str(names)
    if resource == "cluster":
        names = "kafka-cluster"
    return operation, resource, names


def not_allowed(settings: Settings | None, operation: str, resource: str, name: str | None) -> str:
    """One sentence naming the ACL that is missing (for every authorization failure)."""
    who = principal_of(settings) if settings else "this client"
    what = f"{resource} {name!r}" if name else f"the {resource}"
    return (
        f"{who} may not {operation} {what}: no ACL allows it; grant it with 'mesh access "
        "apply' (access/*.yaml) or ask the cluster's administrator"
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
        who = f" for SASL user {settings.sasl_username!r}" if settings else ""
        raise AuthError(
            f"could not {action}: login refused by {where}{who} ({_reason(exc)}); "
            "check MESH_SASL_USERNAME and MESH_SASL_PASSWORD"
        ) from exc
    except (UnsupportedSaslMechanismError, AuthenticationMethodNotSupported) as exc:
        mechanism = (settings.sasl_mechanism or "PLAIN") if settings else "the configured one"
        raise AuthError(
            f"could not {action}: {where} does not offer SASL mechanism {mechanism}; "
            "set MESH_SASL_MECHANISM to one the listener enables"
        ) from exc
    except NOT_AUTHORIZED as exc:
        operation, resource, name = missing_permission(exc, action)
        raise AuthError(
            f"could not {action} on {where}: {not_allowed(settings, operation, resource, name)}",
            operation=operation,
            resource=resource,
            name=name,
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise AuthError(
            f"could not {action}: the TLS certificate of {where} is not trusted "
            f"({exc.verify_message}); set MESH_SSL_CAFILE to the CA that signed it"
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


def _reason(exc: KafkaError) -> str:
    """The broker's words without aiokafka's "[Error 58] SaslAuthenticationFailed: " prefix."""
    return re.sub(r"^\[Error \d+\] \w+: ", "", _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@dataclass(frozen=True)
class Listener:
    """What a broker port speaks, as :func:`probe_listener` found it."""

    protocol: SecurityProtocol
    mechanisms: tuple[str, ...] = ()
    """The SASL mechanisms it enables (SASL listeners only)."""


async def probe_listener(host: str, port: int) -> Listener | None:
    """Find a Kafka listener's security protocol without logging in; None if no Kafka answers.

    A TLS handshake that completes (the certificate is not checked: this only asks whether the
    port speaks TLS) means SSL or SASL_SSL; then a SaslHandshake request, which every listener
    answers before any login, tells SASL (it lists the enabled mechanisms) from no SASL (it
    answers ILLEGAL_SASL_STATE).
    """
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=unverified)
    except ssl.SSLError:
        tls = False
    except (ConnectionError, OSError):
        tls = False
        if not await _accepts(host, port):
            return None
    else:
        tls = True
        writer.close()
    kwargs: dict[str, Any] = {"security_protocol": "SSL", "ssl_context": unverified} if tls else {}
    try:
        conn = await create_conn(host, port, **kwargs)
    except (KafkaError, OSError):
        return None
    try:
        answer = await conn.send(SaslHandShakeRequest("PLAIN"))
    except (KafkaError, OSError):
        return None
    finally:
        conn.close()
    mechanisms = tuple(answer.enabled_mechanisms)
    if tls:
        return Listener("SASL_SSL", mechanisms) if mechanisms else Listener("SSL")
    return Listener("SASL_PLAINTEXT", mechanisms) if mechanisms else Listener("PLAINTEXT")


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    return True


def listener_mismatch(settings: Settings, listener: Listener, where: str) -> str | None:
    """Why these settings cannot log in to ``listener`` (None if they could)."""
    configured = settings.security_protocol
    if listener.protocol != configured:
        offers = f" (SASL {', '.join(listener.mechanisms)})" if listener.mechanisms else ""
        needs = []
        if listener.protocol.startswith("SASL") and not configured.startswith("SASL"):
            needs += ["MESH_SASL_MECHANISM", "MESH_SASL_USERNAME", "MESH_SASL_PASSWORD"]
        if listener.protocol.endswith("SSL") and not configured.endswith("SSL"):
            needs.append("MESH_SSL_CAFILE (the CA that signed its certificate)")
        also = f" and set {', '.join(needs)}" if needs else ""
        return (
            f"{where} is the {listener.protocol} listener{offers}, but MESH_SECURITY_PROTOCOL "
            f"is {configured}; set MESH_SECURITY_PROTOCOL={listener.protocol}{also}"
        )
    mechanism = settings.sasl_mechanism or "PLAIN"
    if listener.mechanisms and mechanism not in listener.mechanisms:
        return (
            f"{where} does not offer SASL mechanism {mechanism} (it offers "
            f"{', '.join(listener.mechanisms)}); set MESH_SASL_MECHANISM to one of them"
        )
    return None


async def diagnose_connect_failure(settings: Settings, error: BrokerUnavailable) -> BrokerError:
    """Tell a refused login, a wrong mechanism or protocol, an untrusted certificate from a
    broker that is down (``error`` when that is all there is to say)."""
    host, _, port_text = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        return error
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            listener = await probe_listener(host, port)
    except TimeoutError:
        return error
    if listener is None:
        return error
    mismatch = listener_mismatch(settings, listener, where)
    if mismatch is not None:
        return AuthError(f"could not connect to Kafka: {mismatch}")
    kwargs = client_kwargs(settings)
    kwargs.pop("bootstrap_servers")
    try:
        with kafka_errors(
            settings.model_copy(update={"bootstrap_servers": where}), "connect to Kafka"
        ):
            async with asyncio.timeout(PROBE_SECONDS):
                conn = await create_conn(host, port, **kwargs)
            conn.close()
    except (AuthError, BrokerError) as exc:
        if not isinstance(exc, BrokerUnavailable):
            return exc
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
    "NOT_AUTHORIZED",
    "BrokerError",
    "Listener",
    "client_kwargs",
    "consumer_kwargs",
    "diagnose_connect_failure",
    "kafka_errors",
    "listener_mismatch",
    "missing_permission",
    "not_allowed",
    "open_admin",
    "principal_of",
    "probe_listener",
    "producer_kwargs",
    "started",
]
