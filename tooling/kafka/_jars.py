"""The broker's runtime jars, resolved with Maven from the ``pom.xml`` beside this file.

They are cached under ``$MESH_CACHE_DIR/kafka/<version>/libs`` (``~/.m2`` caches the downloads
themselves), so only the first run of a version needs the network.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from tooling.kafka._process import (
    JarFetchError,
    as_text,
    cache_root,
    error_hint,
    exclusive,
    find_java,
    keep_output,
    tail,
)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
MAVEN_TIMEOUT = 1800.0
_COMPLETE_MARKER = ".complete"


def kafka_version(pom: Path = POM) -> str:
    """The ``kafka.version`` property of the pom beside this file."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if match is None:
        raise JarFetchError(f"no <kafka.version> property in {pom}")
    return match.group(1)


def find_maven() -> str:
    """``mvn`` from PATH."""
    found = shutil.which("mvn")
    if found is None:
        raise JarFetchError(
            "mvn not found on PATH: install Apache Maven 3.6+ (e.g. the 'maven' package); "
            "it resolves the Kafka broker's jars from Maven Central"
        )
    return found


def _listed_jars_present(libs: Path, marker: Path) -> bool:
    try:
        names = marker.read_text().split()
    except OSError:
        return False
    return bool(names) and all((libs / name).is_file() for name in names)


def fetch_jars(version: str | None = None) -> Path:
    """The directory of the broker's runtime jars, resolved with Maven on first use.

    The copy lands in a staging directory that is renamed into place; the marker listing the jars
    is written last, so a run cut short is simply redone.
    """
    version = version or kafka_version()
    home = cache_root() / "kafka" / version
    libs = home / "libs"
    marker = home / _COMPLETE_MARKER
    if _listed_jars_present(libs, marker):
        return libs
    try:
        return _fetch_into(home, libs, marker, version)
    except OSError as exc:  # a cache dir we cannot write
        raise JarFetchError(f"could not cache the Kafka jars in {home}: {exc}") from exc


def _fetch_into(home: Path, libs: Path, marker: Path, version: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    with exclusive(home / ".lock"):
        if _listed_jars_present(libs, marker):  # another process finished while we waited
            return libs
        find_java()  # Maven needs it too, and says so less clearly
        mvn = find_maven()
        for leftover in home.glob("libs.*"):  # staging dirs of runs that were killed
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix="libs.", dir=home))
        try:
            _copy_dependencies(mvn, version, staging)
            marker.unlink(missing_ok=True)
            if libs.exists():
                shutil.rmtree(libs)
            staging.rename(libs)
            names = sorted(jar.name for jar in libs.glob("*.jar"))
            marker.write_text("\n".join(names) + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def _copy_dependencies(mvn: str, version: str, target: Path) -> None:
    argv = [
        mvn,
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={target}",
        f"-Dkafka.version={version}",
    ]
    what = f"org.apache.kafka:kafka_2.13:{version}"
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = as_text(exc.stdout) + as_text(exc.stderr)
        raise JarFetchError(
            f"Maven did not resolve {what} within {MAVEN_TIMEOUT:g} s; ran: {shlex.join(argv)}",
            tail(output, 20),
        ) from exc
    except OSError as exc:
        raise JarFetchError(f"could not run Maven ({exc}); ran: {shlex.join(argv)}") from exc
    if done.returncode != 0:
        output = done.stdout + done.stderr
        kept = keep_output(f"$ {shlex.join(argv)}\n{output}")
        hint = error_hint(output, first=True)
        raise JarFetchError(
            f"Maven could not resolve {what} (exit code {done.returncode})"
            f"{': ' + hint if hint else ''}; ran: {shlex.join(argv)}"
            f"{f' (output: {kept})' if kept else ''}",
            tail(output, 20),
        )
    if not any(target.glob("kafka_2.13-*.jar")):
        raise JarFetchError(
            f"Maven succeeded but copied no kafka_2.13 jar into {target}; ran: {shlex.join(argv)}",
            tail(done.stdout + done.stderr, 20),
        )
