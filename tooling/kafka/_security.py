"""Per-run credentials and TLS material of the test/dev broker, and the settings clients need.

- :class:`Secrets`: a random password per SASL user (the same one for PLAIN, SCRAM-SHA-256 and
  SCRAM-SHA-512) and for the broker's keystore, kept in a file only its owner can read. SCRAM
  users are written into the KRaft metadata when storage is formatted (``--add-scram``), so a
  kept data directory keeps its passwords; more users (one per component, for ACLs) are more
  names in ``users``.
- :func:`make_tls`: a CA and a broker certificate for 127.0.0.1/localhost, made with the JDK's
  ``keytool``; clients trust the CA's PEM (``MESH_SSL_CAFILE``).
- :func:`client_env`: the ``MESH_*`` settings of a client of one listener, for env files.

Passwords never reach a command line (``ps`` shows those): keytool reads them from its
environment, the storage tool from an argument file; nothing here prints one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tooling.kafka._process import BrokerStartError, run_tool, write_private

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = {
    # PLAIN stays on the unencrypted SASL listener for the tests that use it; over TLS only SCRAM
    # is offered, so a PLAIN client there meets "mechanism not enabled".
    "SASL_PLAINTEXT": ("PLAIN", *SCRAM_MECHANISMS),
    "SASL_SSL": SCRAM_MECHANISMS,
}
DEFAULT_USERS = ("mesh",)
TLS_HOSTS = ("127.0.0.1", "localhost")
_USER_NAME = re.compile(r"[A-Za-z0-9._-]+")
_KEYTOOL_TIMEOUT = 60.0
_CERT_DAYS = 3650  # a kept data directory keeps its certificate; it must not expire under it
# keytool is a short-lived JVM: the quick JIT tier and the serial GC save a third of its time.
_QUICK_JVM = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")


@dataclass(frozen=True)
class Secrets:
    """Passwords of one formatted storage: SASL users' and the broker keystore's."""

    users: Mapping[str, str] = field(repr=False)
    keystore_password: str = field(repr=False)

    @classmethod
    def generate(cls, user_names: Sequence[str]) -> Secrets:
        for name in user_names:
            if not _USER_NAME.fullmatch(name):
                raise BrokerStartError(
                    f"SASL user name {name!r} may hold only letters, digits, '.', '_' and '-'"
                )
        if not user_names:
            raise BrokerStartError("at least one SASL user is needed")
        return cls(
            users={name: secrets.token_urlsafe(18) for name in user_names},
            keystore_password=secrets.token_urlsafe(18),
        )

    @classmethod
    def load(cls, path: Path) -> Secrets | None:
        """The secrets saved in ``path``; None if there is no readable file."""
        try:
            data = json.loads(path.read_text())
            return cls(users=dict(data["users"]), keystore_password=str(data["keystore"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"users": dict(self.users), "keystore": self.keystore_password}
        write_private(path, json.dumps(data, indent=2) + "\n")

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments creating every user for every SCRAM mechanism."""
        return [
            argument
            for user, password in self.users.items()
            for mechanism in SCRAM_MECHANISMS
            for argument in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]

    def plain_jaas(self) -> str:
        """The PLAIN mechanism's JAAS line: the broker's own table of users."""
        table = " ".join(f'user_{user}="{password}"' for user, password in self.users.items())
        return f"org.apache.kafka.common.security.plain.PlainLoginModule required {table};"


# --------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class TlsFiles:
    """The CA certificate clients trust and the broker's PKCS12 keystore (key + chain)."""

    ca_file: Path
    keystore: Path

    @classmethod
    def within(cls, directory: Path) -> TlsFiles:
        return cls(ca_file=directory / "ca.pem", keystore=directory / "broker.p12")

    def exist(self) -> bool:
        return self.ca_file.is_file() and self.keystore.is_file()

    def broker_properties(self, password: str) -> dict[str, str]:
        """Settings of every TLS listener (server authentication only, no client certificates)."""
        return {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": password,
            "ssl.key.password": password,
            "ssl.client.auth": "none",
        }


def find_keytool(java: str) -> str:
    """The ``keytool`` beside ``java`` (the same JDK), else the one on PATH."""
    beside = Path(java).resolve().parent / "keytool"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise BrokerStartError(
            f"keytool not found beside {java} or on PATH: it makes the TLS listener's "
            "certificates and comes with every Java runtime; install a full JRE"
        )
    return found


def make_tls(directory: Path, password: str, *, keytool: str) -> TlsFiles:
    """A fresh CA and a broker certificate it signed, for :data:`TLS_HOSTS`.

    The CA's private key lives only in a temporary keystore removed at the end: nothing else is
    ever signed with it. Independent keytool runs go side by side (each is a JVM start).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = TlsFiles.within(directory)
    ca_store, request, signed = directory / "ca.p12", directory / "broker.csr", directory / "b.pem"
    for stale in (ca_store, files.keystore, files.ca_file, request, signed):
        stale.unlink(missing_ok=True)
    ca_password = secrets.token_urlsafe(18)
    ca = ("-keystore", str(ca_store), "-storepass:env", "CA_PASS", "-alias", "ca")
    broker = ("-keystore", str(files.keystore), "-storepass:env", "KS_PASS", "-alias", "broker")
    sans = ",".join(f"{'ip' if host[0].isdigit() else 'dns'}:{host}" for host in TLS_HOSTS)
    env = {**os.environ, "CA_PASS": ca_password, "KS_PASS": password}
    key = ("-keyalg", "EC", "-groupname", "secp256r1", "-storetype", "PKCS12")
    days = ("-validity", str(_CERT_DAYS))

    def run(what: str, *argv: str) -> None:
        _keytool(keytool, f"{what} with keytool", argv, env)

    try:
        with ThreadPoolExecutor(2) as pool:
            made = [
                pool.submit(
                    run,
                    "make the CA",
                    "-genkeypair",
                    *ca,
                    *key,
                    *days,
                    "-dname",
                    "CN=mesh test CA",
                    "-ext",
                    "bc:c=ca:true",
                    "-ext",
                    "ku:c=keyCertSign,cRLSign",
                ),
                pool.submit(
                    run,
                    "make the broker key",
                    "-genkeypair",
                    *broker,
                    *key,
                    *days,
                    "-dname",
                    f"CN={TLS_HOSTS[0]}",
                ),
            ]
            for future in made:
                future.result()
            exported = pool.submit(
                run, "export the CA", "-exportcert", "-rfc", *ca, "-file", str(files.ca_file)
            )
            run("request the broker certificate", "-certreq", *broker, "-file", str(request))
            run(
                "sign the broker certificate",
                "-gencert",
                *ca,
                "-rfc",
                *days,
                "-infile",
                str(request),
                "-outfile",
                str(signed),
                "-ext",
                f"SAN={sans}",
                "-ext",
                "ku:c=digitalSignature",
                "-ext",
                "eku=serverAuth",
            )
            exported.result()
        signed.write_text(signed.read_text() + files.ca_file.read_text())  # the whole chain
        run(
            "install the broker certificate",
            "-importcert",
            "-noprompt",
            *broker,
            "-file",
            str(signed),
        )
        files.keystore.chmod(0o600)  # it holds the broker's private key
    finally:
        for temporary in (ca_store, request, signed):
            temporary.unlink(missing_ok=True)
    return files


def _keytool(keytool: str, what: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
    run_tool([keytool, *_QUICK_JVM, *argv], what=what, timeout=_KEYTOOL_TIMEOUT, env=env)


# --------------------------------------------------------------------------------------------
# What clients need


def client_env(
    bootstrap_servers: str,
    protocol: str,
    *,
    mechanism: str | None = None,
    user: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
) -> dict[str, str]:
    """The ``MESH_*`` settings of a client of one listener."""
    env = {"MESH_BOOTSTRAP_SERVERS": bootstrap_servers, "MESH_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL"):
        if mechanism is None or user is None or password is None:
            raise ValueError(f"a {protocol} client needs a mechanism, a user and a password")
        env |= {
            "MESH_SASL_MECHANISM": mechanism,
            "MESH_SASL_USERNAME": user,
            "MESH_SASL_PASSWORD": password,
        }
    if protocol.endswith("SSL"):
        if ca_file is None:
            raise ValueError(f"a {protocol} client needs the CA file")
        env["MESH_SSL_CAFILE"] = str(ca_file)
    return env


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """``KEY=value`` lines a shell can source (``set -a; . FILE; set +a``); owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items()))
