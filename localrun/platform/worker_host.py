"""The Functions host's end of the stream to Azure's real Python 3.13+ worker runtime (`azure-functions-runtime`,
unmodified, behind the proxy's hand-over in localrun/platform/worker_handover.py).

It sends what the host sends (Azure/azure-functions-host `GrpcWorkerChannel`, `ScriptInvocationContextExtensions`,
`GrpcMessageConversionExtensions`, read at commit 89dc438d of 2024-10-24) as serialized `StreamingMessage`s:

- worker init: host version, worker directory, function app directory, capability `MultiStream`;
- functions metadata (the worker indexed the app at init and answers with what it found), then one load per
  function, with the function's metadata;
- invocations: each input binding's value through the host's `ToRpc` (`byte[][]` as `collection_bytes`, `long[]`
  as `collection_sint64`, `string[]` as `collection_string`, any other object as JSON text), the trigger's binding
  data as trigger metadata the same way (null values left out); an HTTP request as `RpcHttp` with lower-cased
  headers, non-empty query values and, as the runtime asks for raw body bytes and body only, the body as bytes.

The Kafka batch's shape is localrun/platform/invocation.py's `trigger_data`, the timer's localrun/platform/timers.py's
`timer_json`: one place each for what the host sends.
"""

from __future__ import annotations

import queue
import struct
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localrun.platform.invocation import COLLECTION_FIELD, HostRecord, host_json, trigger_data
from localrun.platform.timers import timer_json
from localrun.platform.worker_env import WorkerEnv, host_protos

_FRAME = struct.Struct(">I")
HOST_VERSION = "4.1038.0"  # the host version this model was read at (runtime 4.x); sent as the host sends its own
REPLY_TIMEOUT_S = 180.0  # the worker indexes the app at init: Azure allows 2 minutes for that on 3.13+


class WorkerDied(RuntimeError):
    """The worker process ended or stopped answering; the message carries the tail of its stderr."""


@dataclass
class Reply:
    """One response from the worker, with the log records it sent while handling the request."""

    message: Any  # the response inside the StreamingMessage (WorkerInitResponse, InvocationResponse, ...)
    logs: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.message.result.status == self.message.result.Success)

    @property
    def error(self) -> str:
        return str(self.message.result.exception.message)


class RealWorker:
    """One worker process: Python 3.13, the worker's directory, the app's packages, the app settings as its
    environment, as the host starts it."""

    def __init__(self, env: WorkerEnv, settings: Mapping[str, str]) -> None:
        self.env = env
        self.protos: Any = host_protos(env)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read until the worker is gone
        self.proc = subprocess.Popen(
            env.command(),
            cwd=env.app_dir,
            env=dict(settings),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._frames: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, name="worker-stream", daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while len(head := out.read(_FRAME.size)) == _FRAME.size:
            self._frames.put(out.read(_FRAME.unpack(head)[0]))
        self._frames.put(None)

    def stderr_tail(self, lines: int = 30) -> str:
        self._stderr.seek(0)
        return "\n".join(self._stderr.read().decode(errors="replace").splitlines()[-lines:])

    def request(self, timeout_s: float = REPLY_TIMEOUT_S, **content: Any) -> Reply:
        """Send one StreamingMessage; collect `rpc_log`s until the response with the same request id."""
        request_id = uuid.uuid4().hex
        payload = self.protos.StreamingMessage(request_id=request_id, **content).SerializeToString()
        assert self.proc.stdin is not None
        self.proc.stdin.write(_FRAME.pack(len(payload)) + payload)
        self.proc.stdin.flush()
        logs = []
        while True:
            try:
                frame = self._frames.get(timeout=timeout_s)
            except queue.Empty:
                raise WorkerDied(f"no answer within {timeout_s} s\n{self.stderr_tail()}") from None
            if frame is None:
                raise WorkerDied(f"the worker exited ({self.proc.wait()})\n{self.stderr_tail()}")
            message = self.protos.StreamingMessage.FromString(frame)
            kind = message.WhichOneof("content")
            if kind == "rpc_log":
                logs.append(message.rpc_log)
            elif message.request_id == request_id:
                return Reply(getattr(message, kind), logs)

    # --- the host's requests, in the order it sends them ---------------------------------------------------------

    def init(self) -> Reply:
        return self.request(
            worker_init_request=self.protos.WorkerInitRequest(
                host_version=HOST_VERSION,
                worker_directory=str(self.env.worker_dir),
                function_app_directory=str(self.env.app_dir),
                capabilities={"MultiStream": "10"},
            )
        )

    def metadata(self) -> Reply:
        return self.request(
            functions_metadata_request=self.protos.FunctionsMetadataRequest(
                function_app_directory=str(self.env.app_dir)
            )
        )

    def load(self, function: Any) -> Reply:
        return self.request(
            function_load_request=self.protos.FunctionLoadRequest(function_id=function.function_id, metadata=function)
        )

    def invoke(self, function: Any, inputs: Mapping[str, Any], trigger_metadata: Mapping[str, Any] | None = None,
               retry_count: int = 0, max_retry_count: int = 0) -> Reply:  # fmt: skip
        request = self.protos.InvocationRequest(
            invocation_id=str(uuid.uuid4()),
            function_id=function.function_id,
            input_data=[self.protos.ParameterBinding(name=name, data=data) for name, data in inputs.items()],
            trigger_metadata=dict(trigger_metadata or {}),
            retry_context=self.protos.RetryContext(retry_count=retry_count, max_retry_count=max_retry_count),
        )
        return self.request(invocation_request=request)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # --- inputs as the host converts them -------------------------------------------------------------------------

    def typed(self, kind: str, values: Any) -> Any:
        """A value as `ToRpc` sends it: JSON text, or a typed collection."""
        if kind == "json":
            return self.protos.TypedData(json=host_json(values))
        collection = {
            "collection_bytes": self.protos.CollectionBytes,
            "collection_sint64": self.protos.CollectionSInt64,
            "collection_string": self.protos.CollectionString,
        }[kind]
        return self.protos.TypedData(**{kind: collection(**{COLLECTION_FIELD[kind]: values})})

    def kafka_batch(self, records: Sequence[HostRecord]) -> tuple[Any, dict[str, Any]]:
        """A cardinality MANY, dataType binary batch: the body and the trigger metadata."""
        bodies, arrays = trigger_data(records)
        metadata = {name: self.typed(kind, values) for name, (kind, values) in arrays.items()}
        return self.typed("collection_bytes", bodies), metadata

    def http_request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Any:
        query = {}
        if "?" in url:
            from urllib.parse import parse_qsl, urlsplit

            query = {k: v for k, v in parse_qsl(urlsplit(url).query) if v}
        return self.protos.TypedData(
            http=self.protos.RpcHttp(
                method=method,
                url=url,
                headers={k.lower(): v for k, v in headers.items() if v},
                query=query,
                body=self.protos.TypedData(bytes=body) if body else None,
            )
        )

    def timer(self, past_due: bool = False) -> Any:
        return self.protos.TypedData(json=timer_json(past_due))


def functions_by_name(reply: Reply) -> dict[str, Any]:
    """The functions a metadata response lists, by name."""
    return {f.name: f for f in reply.message.function_metadata_results}
