"""The Python 3.13 worker environment of the real-worker test, laid out as Azure lays it out, built once into
`.cache/azure-worker/<key>/` (the key covers every input, so a changed pin or requirement builds a new one).

- `workers/python/3.13/LINUX/X64/`: the worker's own directory, `pip install --target` of
  `rpc/worker-requirements.txt` (the runtime library and the worker's pins, protobuf 5.29 among them), plus the
  message classes generated there from `rpc/function_rpc.proto` by the worker's own grpcio-tools, as the proxy
  worker's build generates its `protos` (so they match the protobuf they run on);
- `site/wwwroot/.python_packages/lib/site-packages/`: the app's `requirements.txt`, installed the way Azure's
  remote build and Core Tools' local build install it (`pip install --target` into that folder) with the
  worker's interpreter;
- `host/`: the same message classes generated for the test's own protobuf, for the host's end of the stream.

The app's code itself is not copied: the worker imports it from the checkout (the function app directory).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_PYTHON = "3.13"
RPC_DIR = Path(__file__).resolve().parent / "rpc"
PROTO = RPC_DIR / "function_rpc.proto"
WORKER_REQUIREMENTS = RPC_DIR / "worker-requirements.txt"
APP_REQUIREMENTS = REPO_ROOT / "requirements.txt"
HANDOVER = Path(__file__).resolve().parent / "worker_handover.py"
CACHE = REPO_ROOT / ".cache" / "azure-worker"


class WorkerEnvError(RuntimeError):
    """The worker environment could not be built: the message says which step and why."""


@dataclass(frozen=True)
class WorkerEnv:
    python: Path  # the worker's interpreter
    worker_dir: Path  # workers/python/3.13/LINUX/X64: the runtime, protobuf 5.29, the generated protos
    app_packages: Path  # .python_packages/lib/site-packages: the app's requirements
    host_protos: Path  # the message classes for the host's end, on the test's protobuf
    app_dir: Path = REPO_ROOT

    def command(self) -> list[str]:
        """The worker process: the hand-over in isolated mode, without `site` (nothing of the machine's Python)."""
        return [
            str(self.python), "-I", "-S", str(HANDOVER), str(self.worker_dir), str(self.app_packages),
            str(self.app_dir),
        ]  # fmt: skip


def find_python(version: str = WORKER_PYTHON) -> Path:
    """The interpreter scripts/find_python.sh finds (one place for where Pythons are looked for)."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "find_python.sh"), version], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise WorkerEnvError(done.stderr.strip() or f"no Python {version}")
    return Path(done.stdout.strip())


def _key(python: Path) -> str:
    version = subprocess.run([str(python), "-VV"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(version.encode())
    for path in (PROTO, WORKER_REQUIREMENTS, APP_REQUIREMENTS):
        digest.update(path.read_bytes())
    digest.update(_host_protobuf().encode())
    return digest.hexdigest()[:16]


def _host_protobuf() -> str:
    from google.protobuf import __version__ as protobuf_version

    return protobuf_version


def _run(step: str, cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise WorkerEnvError(f"{step} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")


def _pip(python: Path, target: Path, requirements: Path) -> list[str]:
    return [
        str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore",
        "--no-compile", "--target", str(target), "-r", str(requirements),
    ]  # fmt: skip


def _generate(python: Path, path_entry: Path | None, out: Path) -> None:
    """`protoc` of the grpcio-tools on `path_entry` (or of this interpreter), with the protobuf includes it ships."""
    script = (
        "import sys, importlib.resources as r\n"
        + (f"sys.path.insert(0, {str(path_entry)!r})\n" if path_entry else "")
        + "from grpc_tools import protoc\n"
        + "inc = str(r.files('grpc_tools') / '_proto')\n"
        + f"sys.exit(protoc.main(['protoc', '-I{RPC_DIR}', '-I' + inc, '--python_out={out}', '{PROTO.name}']))\n"
    )
    _run(f"generating the message classes into {out}", [str(python), "-I", "-S" if path_entry else "-s", "-c", script])


def _build(python: Path, into: Path) -> None:
    worker_dir = into / "workers" / "python" / WORKER_PYTHON / "LINUX" / "X64"
    app_packages = into / "site" / "wwwroot" / ".python_packages" / "lib" / "site-packages"
    host = into / "host"
    for d in (worker_dir, app_packages, host):
        d.mkdir(parents=True)
    _run("installing the worker's directory", _pip(python, worker_dir, WORKER_REQUIREMENTS))
    _generate(python, worker_dir, worker_dir)
    _run("installing the app's requirements", _pip(python, app_packages, APP_REQUIREMENTS))
    _generate(Path(sys.executable), None, host)


def ensure(python: Path | None = None) -> WorkerEnv:
    """The cached environment, built first if missing (about 20 s from a warm pip cache, 1-2 min cold)."""
    python = python or find_python()
    root = CACHE / _key(python)
    if not (root / ".complete").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{root.name}.", dir=CACHE))
        try:
            _build(python, staging)
            (staging / ".complete").write_text(f"{python}\n")
            try:
                os.rename(staging, root)  # atomic; another process may have finished the same build first
            except OSError:
                if not (root / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return WorkerEnv(
        python=python,
        worker_dir=root / "workers" / "python" / WORKER_PYTHON / "LINUX" / "X64",
        app_packages=root / "site" / "wwwroot" / ".python_packages" / "lib" / "site-packages",
        host_protos=root / "host",
    )


def host_protos(env: WorkerEnv) -> object:
    """The host's message classes (generated for this interpreter's protobuf), imported once."""
    spec = importlib.util.spec_from_file_location("function_rpc_host_pb2", env.host_protos / "function_rpc_pb2.py")
    if spec is None or spec.loader is None:
        raise WorkerEnvError(f"no generated message classes in {env.host_protos}")
    if "function_rpc_host_pb2" not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["function_rpc_host_pb2"] = module
    return sys.modules["function_rpc_host_pb2"]
