"""The local Flink engine: set up once into .cache/, started by our code, stopped cleanly.

Set-up (first use, then cached): a Python environment of its own with PyFlink (devstack/flink-requirements.txt;
PyFlink carries the Flink distribution, and Beam under it pins protobuf < 6, which the app's protobuf 7 cannot
share), the Kafka SQL connector jar from Maven Central (devstack/flink-pom.xml), and proto/ compiled for that
environment's protobuf by its own protoc. Each part has a marker named by the digest of what made it, so a
changed pin redoes that part only.

The engine is one process (streaming/engine.py: a PyFlink mini-cluster in its JVM) that our code talks to over
pipes, so no port is fixed and a test session starts it once. `stop` asks it to cancel its jobs and exit, then
ends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import locks, stack
from devstack.errors import StackError
from devstack.fetch import CACHE, ROOT, require_tools

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "flink-requirements.txt"
POM = HERE / "flink-pom.xml"
PROTO = ROOT / "proto"
SUPPORTED = ((3, 9), (3, 12))  # PyFlink 2.2's Python versions
PYTHON_SETTING = "FLINK_PYTHON"
START_TIMEOUT_S = float(os.environ.get("FLINK_START_TIMEOUT", "180"))


class FlinkError(StackError):
    """The engine refused a statement or a job failed: the message is Flink's own."""


@dataclass(frozen=True)
class FlinkArtifacts:
    home: Path
    python: Path
    jar: Path
    generated: Path  # proto/ compiled for the engine's protobuf

    @property
    def site_packages(self) -> Path:
        found = sorted((self.home / "venv" / "lib").glob("python3.*/site-packages"))
        if not found:
            raise StackError(f"no site-packages under {self.home / 'venv'}")
        return found[0]


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                h.update(file.name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def choose_python() -> str:
    """An interpreter PyFlink supports: FLINK_PYTHON if set (it must be one), else this one if it is, else the
    the newest 3.12 .. 3.9 that scripts/find_python.sh finds (the one place that says how the project finds a
    Python of a given version: a PYTHON3xx setting, PATH, pyenv)."""
    setting = os.environ.get(PYTHON_SETTING)
    if setting:
        version = _version(setting)
        if version is None or not SUPPORTED[0] <= version <= SUPPORTED[1]:
            raise StackError(f"{PYTHON_SETTING}={setting!r} is not a Python 3.9-3.12, which PyFlink 2.2 needs")
        return setting
    own = getattr(sys, "_base_executable", sys.executable)
    candidates = [own] + [p for minor in (12, 11, 10, 9) if (p := _find_python(f"3.{minor}"))]
    for candidate in candidates:
        version = _version(candidate)
        if version is not None and SUPPORTED[0] <= version <= SUPPORTED[1]:
            return candidate
    raise StackError(
        f"no Python 3.9-3.12 found for the Flink engine (PyFlink 2.2 supports no other): install one "
        f"(Debian: apt-get install -y python3.11 python3.11-venv) or set {PYTHON_SETTING}"
    )


def _find_python(version: str) -> str | None:
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "find_python.sh"), version], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or None if found.returncode == 0 else None


def _run(cmd: Sequence[str], log: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise StackError(f"{what} failed (exit {proc.returncode}); see {log}")


def _pinned(name: str) -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise StackError(f"{REQUIREMENTS} pins no {name}")


def is_set_up(cache: Path = CACHE) -> bool:
    """Whether `setup` would find everything in place (nothing to download)."""
    home = cache / f"flink-{_pinned('apache-flink')}"
    return (
        (home / "venv" / f".complete-{_digest(REQUIREMENTS)}").exists()
        and (home / "lib" / f".complete-{_digest(POM)}").exists()
        and (home / "generated" / f".complete-{_digest(PROTO, REQUIREMENTS)}").exists()
    )


def setup(cache: Path = CACHE) -> FlinkArtifacts:
    """The engine's environment, connector and generated modules: made on first use, found after."""
    with locks.held("flink", cache):
        return _setup(cache)


def _setup(cache: Path) -> FlinkArtifacts:
    home = cache / f"flink-{_pinned('apache-flink')}"
    logs = cache / "logs"
    venv = home / "venv"
    python = venv / "bin" / "python"
    marker = venv / f".complete-{_digest(REQUIREMENTS)}"
    if not marker.exists():
        chosen = choose_python()
        shutil.rmtree(venv, ignore_errors=True)
        _run([chosen, "-m", "venv", str(venv)], logs / "flink-venv.log", "creating the Flink environment")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "--upgrade", "pip"], logs / "flink-pip.log", "upgrading pip in the Flink environment")
        _run([*pip, "-r", str(REQUIREMENTS)], logs / "flink-pip.log", "installing PyFlink (apache-flink)")
        marker.touch()

    lib = home / "lib"
    jar_marker = lib / f".complete-{_digest(POM)}"
    if not jar_marker.exists():
        require_tools()
        shutil.rmtree(lib, ignore_errors=True)
        with locks.held(locks.MAVEN, cache):
            _run(
                ["mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
                 "-DexcludeTransitive=true"],
                logs / "fetch-flink-connector.log",
                "fetching the Flink Kafka connector",
            )  # fmt: skip
        jar_marker.touch()
    jars = sorted(lib.glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise StackError(f"no flink-sql-connector-kafka jar in {lib}")

    generated = home / "generated"
    gen_marker = generated / f".complete-{_digest(PROTO, REQUIREMENTS)}"
    if not gen_marker.exists():
        shutil.rmtree(generated, ignore_errors=True)
        generated.mkdir(parents=True)
        protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.glob("*.proto"))
        _run(
            [str(python), "-m", "grpc_tools.protoc", f"-I{PROTO}", f"--python_out={generated}", *protos],
            logs / "flink-protoc.log",
            "compiling proto/ for the Flink environment",
        )
        gen_marker.touch()
    return FlinkArtifacts(home, python, jars[-1], generated)


class Engine:
    """A running engine: `sql` runs one statement and returns the engine's reply, raising `FlinkError` with Flink's
    message when it refuses one or a waited-for job fails."""

    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.started_s = 0.0  # from spawning the process to its first answer
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                try:
                    self._replies.put(json.loads(line))
                except ValueError:
                    continue
        self._replies.put(None)

    def _tail(self, lines: int = 30) -> str:
        return stack.log_tail(self.log, lines)

    def _await(self, timeout_s: float) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise StackError(f"the Flink engine gave no answer within {timeout_s:.0f}s; see {self.log}") from None
        if reply is None:
            raise StackError(f"the Flink engine exited (code {self.proc.poll()}); see {self.log}:\n{self._tail()}")
        return reply

    def request(self, request: Mapping[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
        with self._lock:
            if self.proc.poll() is not None:
                raise StackError(f"the Flink engine is not running (exit {self.proc.returncode}); see {self.log}")
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            reply = self._await(timeout_s)
        if not reply.get("ok"):
            raise FlinkError(str(reply.get("error", "the engine refused the request")))
        return reply

    def sql(self, statement: str, wait: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
        """Run one statement. An INSERT starts a job (its id under "job"); `wait` returns when a bounded job
        finished, or raises `FlinkError` with the job's failure."""
        return self.request({"op": "sql", "sql": statement, "wait": wait, "timeout_s": timeout_s}, timeout_s + 30)

    def statement_set(self, inserts: Sequence[str], wait: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
        """Several INSERTs as one job (a source they share read once)."""
        request = {"op": "sql", "statements": list(inserts), "wait": wait, "timeout_s": timeout_s}
        return self.request(request, timeout_s + 30)

    def wait(self, job: str, timeout_s: float = 600.0) -> None:
        """Until a bounded job finishes; `FlinkError` with its failure."""
        self.request({"op": "wait", "job": job, "timeout_s": timeout_s}, timeout_s + 30)

    def cancel(self, job: str) -> None:
        self.request({"op": "cancel", "job": job})

    def status(self, job: str) -> str:
        return str(self.request({"op": "status", "job": job})["status"])

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel the engine's jobs and let it exit; end it if it does not."""
        if self.proc.poll() is None:
            with suppress(StackError):
                self.request({"op": "stop"}, timeout_s)
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(udfs: Sequence[Mapping[str, object]], parallelism: int = 1, log: Path | None = None) -> Engine:
    """Set up if needed, start the engine and wait until it is ready."""
    artifacts = setup()
    from devstack.stack import home

    log = log or home() / "logs" / f"flink-{os.getpid()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        # Thread mode runs the UDFs in the JVM's embedded interpreter, which finds the environment's packages, our
        # UDF module and the generated message modules only through PYTHONPATH.
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(artifacts.generated), str(artifacts.site_packages)]),
        "PYTHONNOUSERSITE": "1",
        # Flink's own log beside ours (PyFlink would write it into its package in the environment)
        "FLINK_LOG_DIR": str(log.parent),
    }
    env.pop("VIRTUAL_ENV", None)
    cmd = [
        str(artifacts.python), "-m", "streaming.engine", "--jar", str(artifacts.jar),
        "--udfs", json.dumps(list(udfs)), "--parallelism", str(parallelism),
    ]  # fmt: skip
    with log.open("ab") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            start_new_session=True,
        )  # fmt: skip
    engine = Engine(proc, log)
    started = time.monotonic()
    try:
        ready = engine._await(START_TIMEOUT_S)
    except StackError:
        engine.stop(5)
        raise
    if not ready.get("ready"):
        engine.stop(5)
        raise StackError(f"the Flink engine did not start: {ready.get('error')}; see {log}")
    engine.started_s = time.monotonic() - started
    return engine


@contextmanager
def running(udfs: Sequence[Mapping[str, object]], parallelism: int = 1) -> Iterator[Engine]:
    """An engine for the length of a `with` block."""
    engine = start(udfs, parallelism)
    try:
        yield engine
    finally:
        engine.stop()
