"""Fetch the pinned broker jars and registry distribution from Maven Central, once.

The pins live in `devstack/pom.xml` only. Downloads land in the gitignored `.cache/` folder and a marker
file records which pom produced them, so a second run downloads nothing and a changed pin refetches.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from devstack import locks
from devstack.errors import StackError

ROOT = Path(__file__).resolve().parent.parent
POM = Path(__file__).resolve().parent / "pom.xml"
CACHE = ROOT / ".cache"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# `dependency:copy` of this plugin version fetches the archive without resolving its parent POM chain,
# part of which Apicurio never published; newer plugin versions refuse for that reason.
_COPY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:2.8:copy"


@dataclass(frozen=True)
class Artifacts:
    """Where the fetched distributions live on disk."""

    kafka_lib: Path
    registry_jar: Path
    kafka_version: str
    registry_version: str


def _pom_property(name: str) -> str:
    node = ET.parse(POM).find(f"m:properties/m:{name}", _NS)  # noqa: S314 - our own checked-in pom
    if node is None or not (node.text or "").strip():
        raise StackError(f"{POM} has no <{name}> property")
    return (node.text or "").strip()


def require_tools() -> None:
    """Fail with one line naming what to install, before anything slow starts."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise StackError(
            f"{' and '.join(missing)} not found on PATH: install a Java 17+ JDK and Maven "
            "(Debian: apt-get install -y openjdk-17-jdk-headless maven)"
        )


def _run_maven(args: list[str], log: Path, cache: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out, locks.held(locks.MAVEN, cache):
        proc = subprocess.run(["mvn", "-B", "-q", "-f", str(POM), *args], stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise StackError(f"Maven fetch failed (exit {proc.returncode}); see {log}")


def fetch(cache: Path = CACHE) -> Artifacts:
    """Download (first run) or locate (later runs) the broker and registry distributions."""
    with locks.held("stack-artifacts", cache):
        return _fetch(cache)


def _fetch(cache: Path) -> Artifacts:
    kafka_version = _pom_property("kafka.version")
    registry_version = _pom_property("apicurio.version")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]

    kafka_lib = cache / f"kafka-{kafka_version}" / "lib"
    kafka_marker = kafka_lib.parent / f".complete-{digest}"
    if not kafka_marker.exists():
        require_tools()
        shutil.rmtree(kafka_lib, ignore_errors=True)
        _run_maven(
            ["dependency:copy-dependencies", f"-DoutputDirectory={kafka_lib}", "-DincludeScope=runtime"],
            cache / "logs" / "fetch-kafka.log",
            cache,
        )
        kafka_marker.touch()

    registry_home = cache / f"apicurio-{registry_version}"
    registry_jar = registry_home / f"apicurio-registry-app-{registry_version}-runner.jar"
    if not registry_jar.exists():
        require_tools()
        download = cache / "downloads"
        _run_maven(
            [
                _COPY_PLUGIN,
                f"-Dartifact=io.apicurio:apicurio-registry-app:{registry_version}:tar.gz:all",
                f"-DoutputDirectory={download}",
            ],
            cache / "logs" / "fetch-registry.log",
            cache,
        )
        archive = download / f"apicurio-registry-app-{registry_version}-all.tar.gz"
        staging = registry_home.with_name(registry_home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        shutil.rmtree(registry_home, ignore_errors=True)
        staging.rename(registry_home)
        archive.unlink()
        if not registry_jar.exists():
            raise StackError(f"registry archive did not contain {registry_jar.name}")

    return Artifacts(kafka_lib, registry_jar, kafka_version, registry_version)
