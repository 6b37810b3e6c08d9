"""The proxy worker's hand-over, for Azure's Python 3.13+ runtime (`azure-functions-runtime`), run here unmodified.

On Azure, Python 3.13+ apps run under `python -m proxy_worker` (Azure/azure-functions-python-worker,
`workers/proxy_worker/`: `dispatcher.py` at 0320cd79, `utils/dependency.py` at 1ecc91ea, `start_worker.py` at
16d820a3, the newest versions stored when read, 2026-12): it holds the gRPC stream to the host, and on each
message wraps the request for the runtime library and awaits the runtime's handler. The proxy is not published on
any package registry, so this module stands in for its hand-over only, as read from `dispatcher.py` and
`utils/dependency.py`:

- it starts with only the worker's directory on the path (the worker's own protobuf 5.29 and grpcio 1.70) and
  imports the message classes (`protos`), grpc and uvloop (the event loop) from it, as the proxy does before the
  stream opens;
- on the worker-init request it puts the app's packages (`.python_packages/lib/site-packages`) first, the
  worker's directory second and the app's directory last on `sys.path`, dropping every module it loaded from the
  worker's directory from `sys.modules` (so the app imports its own protobuf 7.x, while the runtime keeps the
  worker's message classes), then imports `azure_functions_runtime` and starts its thread pool;
- each request goes to the runtime as `WorkerRequest(name, request, properties)`: `{"protos", "host"}` for worker
  init and environment reload, no properties for metadata, load and invocation; each response is wrapped in a
  `StreamingMessage` with the request's id, as the proxy sends it back.

The stream is this process's stdin and stdout instead of gRPC: each message a 4-byte big-endian length and the
serialized `StreamingMessage`, in both directions (localrun/platform/worker_host.py is the host's end). Log
records go back as `rpc_log` messages, as the proxy sends them. Anything the app prints goes to stderr.

Run by the worker's interpreter (Python 3.13) in isolated mode without `site`, so nothing of the machine's Python
is on the path: `python3.13 -I -S worker_handover.py WORKER_DIR APP_PACKAGES APP_DIR`. Standard library only: the
rest comes from the worker's directory.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import struct
import sys
import threading
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any, BinaryIO

_FRAME = struct.Struct(">I")


@dataclass
class WorkerRequest:
    """What the runtime's handlers take: the proxy's `WorkerRequest(name, request, properties)`."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


class Stream:
    """The host's end of the stream, framed on a pipe; writes come from the loop and from logging threads."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = threading.Lock()

    def read(self) -> bytes | None:
        head = self._reader.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return None
        (size,) = _FRAME.unpack(head)
        return self._reader.read(size)

    def write(self, payload: bytes) -> None:
        with self._lock:
            self._writer.write(_FRAME.pack(len(payload)) + payload)
            self._writer.flush()


class RpcLogHandler(logging.Handler):
    """Log records to the host as `rpc_log` messages, as the proxy's logging handler sends them."""

    def __init__(self, stream: Stream, protos: ModuleType) -> None:
        super().__init__()
        self._stream = stream
        self._protos = protos

    def emit(self, record: logging.LogRecord) -> None:
        levels = self._protos.RpcLog.Level
        level = (
            levels.Value("Critical") if record.levelno >= logging.CRITICAL
            else levels.Value("Error") if record.levelno >= logging.ERROR
            else levels.Value("Warning") if record.levelno >= logging.WARNING
            else levels.Value("Information") if record.levelno >= logging.INFO
            else levels.Value("Debug")
        )  # fmt: skip
        message = self._protos.StreamingMessage(
            rpc_log=self._protos.RpcLog(level=level, message=self.format(record), category=record.name)
        )
        self._stream.write(message.SerializeToString())


def _drop_modules_under(path: str) -> None:
    """What the proxy does to each path it moves: modules loaded from under it leave `sys.modules`."""
    sys.path_importer_cache.pop(path, None)
    for name, module in list(sys.modules.items()):
        if not isinstance(module, ModuleType) or name == __name__:
            continue
        try:  # a namespace package whose parent left before it cannot list its path: the proxy keeps those too
            places = set(getattr(module, "__path__", None) or ())
            if getattr(module, "__file__", None):
                places.add(module.__file__)
        except Exception:  # noqa: BLE001, S112 - as the proxy: that module stays cached
            continue
        if any(str(p).startswith(path) for p in places):
            sys.modules.pop(name, None)


def prioritize_app_packages(worker_dir: str, app_packages: str, app_dir: str) -> None:
    """The app's packages first, the worker's second, the app's directory last (the proxy's worker-init order)."""
    sys.path[:] = [p for p in sys.path if p != worker_dir]
    _drop_modules_under(worker_dir)
    sys.path.insert(0, worker_dir)
    _drop_modules_under(worker_dir)
    if app_packages not in sys.path:
        sys.path.insert(0, app_packages)
        _drop_modules_under(app_packages)
    if app_dir not in sys.path:
        sys.path.append(app_dir)


class HandOver:
    """The proxy's dispatch: one runtime, each request wrapped for it, each response framed back to the host."""

    def __init__(self, stream: Stream, protos: ModuleType, worker_dir: str, app_packages: str, app_dir: str) -> None:
        self.stream = stream
        self.protos = protos
        self.worker_dir = worker_dir
        self.app_packages = app_packages
        self.app_dir = app_dir
        self.runtime: Any = None

    def _load_runtime(self) -> Any:
        prioritize_app_packages(self.worker_dir, self.app_packages, self.app_dir)
        runtime = importlib.import_module("azure_functions_runtime")
        start = getattr(runtime, "start_threadpool_executor", None)
        if callable(start):
            start()
        return runtime

    async def handle(self, message: Any) -> Any:
        kind = message.WhichOneof("content")
        with_protos = {"protos": self.protos, "host": "127.0.0.1"}
        if kind == "worker_init_request":
            self.runtime = self._load_runtime()
            response = await self.runtime.worker_init_request(WorkerRequest("WorkerInitRequest", message, with_protos))
            return self.protos.StreamingMessage(request_id=message.request_id, worker_init_response=response)
        if kind == "function_environment_reload_request":
            self.runtime = self.runtime or self._load_runtime()
            response = await self.runtime.function_environment_reload_request(
                WorkerRequest("FunctionEnvironmentReloadRequest", message, with_protos)
            )
            return self.protos.StreamingMessage(
                request_id=message.request_id, function_environment_reload_response=response
            )
        if kind == "functions_metadata_request":
            response = await self.runtime.functions_metadata_request(WorkerRequest("WorkerMetadataRequest", message))
            return self.protos.StreamingMessage(request_id=message.request_id, function_metadata_response=response)
        if kind == "function_load_request":
            response = await self.runtime.function_load_request(WorkerRequest("FunctionLoadRequest", message))
            return self.protos.StreamingMessage(request_id=message.request_id, function_load_response=response)
        if kind == "invocation_request":
            response = await self.runtime.invocation_request(WorkerRequest("FunctionInvocationRequest", message))
            return self.protos.StreamingMessage(request_id=message.request_id, invocation_response=response)
        logging.getLogger("proxy_handover").error("unknown StreamingMessage content: %s", kind)
        return None

    async def dispatch(self, message: Any) -> None:
        try:
            response = await self.handle(message)
        except BaseException:  # noqa: BLE001
            # The proxy lets a handler's own failure end the stream; the host sees the worker die.
            traceback.print_exc()
            os._exit(70)
        if response is not None:
            self.stream.write(response.SerializeToString())

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def read_forever() -> None:
            while (payload := self.stream.read()) is not None:
                message = self.protos.StreamingMessage.FromString(payload)
                loop.call_soon_threadsafe(loop.create_task, self.dispatch(message))
            loop.call_soon_threadsafe(done.set_result, None)

        threading.Thread(target=read_forever, name="stream-reader", daemon=True).start()
        await done


def main(argv: list[str]) -> int:
    worker_dir, app_packages, app_dir = (os.path.abspath(a) for a in argv[1:4])
    # The stream owns the real stdout; the app's and the runtime's prints go to stderr.
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.path.insert(0, worker_dir)
    protos = importlib.import_module("function_rpc_pb2")
    importlib.import_module("grpc")  # loaded by the proxy for its channel before the hand-over
    stream = Stream(sys.stdin.buffer, frames_out)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(RpcLogHandler(stream, protos))
    handover = HandOver(stream, protos, worker_dir, app_packages, app_dir)
    try:  # the proxy's event loop when the worker's directory has uvloop (it does on Linux)
        uvloop = importlib.import_module("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(handover.serve())
    stop = getattr(handover.runtime, "stop_threadpool_executor", None)
    if callable(stop):
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
