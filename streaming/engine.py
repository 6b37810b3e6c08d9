"""The local Flink engine: one long-lived process in the engine's own environment (PyFlink), driven by
devstack/flink.py over its standard input and output, one JSON object a line each way.

Flink runs as a mini-cluster inside this process's JVM (PyFlink's local execution): no ports of ours (PyFlink's
gateway to its JVM takes a free one), nothing to install or stop beyond this process, and one JVM warm for every
statement of a test session or a run. A standalone local cluster would need fixed REST and RPC ports and its
own start and stop scripts; the mini-cluster is what PyFlink runs by default.

Requests: {"op": "sql", "sql": ..., "wait": bool, "timeout_s": s} executes one statement (a DDL, a SET, or an
INSERT, which starts a job; `wait` waits for a bounded job to finish), or with "statements": [...] several INSERTs
as one job; {"op": "cancel", "job": id};
{"op": "status", "job": id}; {"op": "stop"}. Every reply carries "ok", and "error" (Flink's own message) when
not. Python UDFs run in thread mode (in the JVM's embedded interpreter), which needs this environment's
site-packages on PYTHONPATH (devstack/flink.py sets it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time
from typing import Any, TextIO

from streaming import udfs

_JOB_STATES_DONE = ("FINISHED", "FAILED", "CANCELED")
_SET = re.compile(r"^\s*SET\s+'([^']+)'\s*=\s*'([^']*)'\s*;?\s*$", re.IGNORECASE)


def _state(client: Any) -> str:
    status = client.get_job_status().result()
    return str(getattr(status, "name", status))


def _types(DataTypes: Any) -> dict[str, Any]:
    return {
        "STRING": DataTypes.STRING(),
        "INT": DataTypes.INT(),
        "BIGINT": DataTypes.BIGINT(),
        "DOUBLE": DataTypes.DOUBLE(),
        "BYTES": DataTypes.BYTES(),
    }


def _register(t_env: Any, specs: list[dict[str, Any]]) -> None:
    from pyflink.table import DataTypes
    from pyflink.table.types import Row
    from pyflink.table.udf import udf

    types = _types(DataTypes)
    for spec in specs:
        module = importlib.import_module(f"{spec['proto']}_pb2")
        message_class = getattr(module, str(spec["message"]).rsplit(".", 1)[-1])
        names = [c for c, _ in spec["columns"]]
        if spec["role"] == "source":
            decode = udfs.decoder(message_class, names)
            row_type = DataTypes.ROW([DataTypes.FIELD(c, types[t]) for c, t in spec["columns"]])

            def as_row(value: bytes | None, decode: Any = decode) -> Any:
                values = decode(value)
                return None if values is None else Row(*values)

            function = udf(as_row, input_types=[DataTypes.BYTES()], result_type=row_type)
        else:
            encode = udfs.encoder(message_class, names)
            inputs = [DataTypes.INT()] + [types[t] for _, t in spec["columns"]]
            function = udf(encode, input_types=inputs, result_type=DataTypes.BYTES())
        t_env.create_temporary_system_function(spec["name"], function)


def _message(exc: BaseException) -> str:
    """Flink's own message: the first lines of the Java exception (or its causes), without the stack."""
    lines = [line for line in str(exc).splitlines() if line.strip() and not line.lstrip().startswith(("at ", "... "))]
    # The outermost lines say what was being done, the innermost causes why: keep both ends of a long chain.
    kept = lines if len(lines) <= 14 else [*lines[:3], "...", *lines[-10:]]
    return "\n".join(kept) or type(exc).__name__


class Server:
    def __init__(self, t_env: Any, out: TextIO) -> None:
        self.t_env = t_env
        self.out = out
        self.jobs: dict[str, Any] = {}
        self.finished: set[str] = set()

    def reply(self, **fields: Any) -> None:
        self.out.write(json.dumps(fields) + "\n")
        self.out.flush()

    def handle(self, request: dict[str, Any]) -> bool:
        op = request.get("op")
        if op == "stop":
            for job, result in self.jobs.items():
                client = result.get_job_client()
                try:
                    if job not in self.finished and _state(client) not in _JOB_STATES_DONE:
                        client.cancel().result()
                except Exception:  # noqa: BLE001, S110 - a job whose mini-cluster is gone has ended
                    pass
            self.reply(ok=True)
            return False
        try:
            if op == "sql":
                self.reply(ok=True, **self._sql(request))
            elif op == "wait":
                self.jobs[request["job"]].wait(int(float(request.get("timeout_s", 600)) * 1000))
                self.finished.add(request["job"])
                self.reply(ok=True, status="FINISHED")
            elif op == "cancel":
                self.jobs[request["job"]].get_job_client().cancel().result()
                self.reply(ok=True)
            elif op == "status":
                job = request["job"]
                done = job in self.finished
                self.reply(ok=True, status="FINISHED" if done else _state(self.jobs[job].get_job_client()))
            else:
                self.reply(ok=False, error=f"unknown op {op!r}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as Flink said it
            self.reply(ok=False, error=_message(exc))
        return True

    def _sql(self, request: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        setting = _SET.match(request.get("sql", ""))
        if setting:  # the SQL client's SET, which TableEnvironment.execute_sql does not take
            self.t_env.get_config().set(setting.group(1), setting.group(2))
            return {"elapsed_s": 0.0}
        if "statements" in request:
            # INSERTs as one job: a source they share is read and decoded once (Flink reuses it in the plan).
            statement_set = self.t_env.create_statement_set()
            for statement in request["statements"]:
                statement_set.add_insert_sql(statement)
            result = statement_set.execute()
        else:
            result = self.t_env.execute_sql(request["sql"])
        client = result.get_job_client()
        if client is None:  # DDL, SHOW, DESCRIBE: their rows (a few), as text
            with result.collect() as rows:
                return {"rows": [[str(v) for v in row] for row in rows], "elapsed_s": time.monotonic() - started}
        job = str(client.get_job_id())
        self.jobs[job] = result
        if request.get("wait"):
            # Raises the job's failure; on success a bounded job's mini-cluster is gone, and with it its status.
            result.wait(int(float(request.get("timeout_s", 600)) * 1000))
            self.finished.add(job)
            return {"job": job, "status": "FINISHED", "elapsed_s": time.monotonic() - started}
        return {"job": job, "status": _state(client), "elapsed_s": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming.engine")
    parser.add_argument("--jar", action="append", default=[], help="a connector jar (repeatable)")
    parser.add_argument("--udfs", default="[]", help="JSON list of streaming.ddl.udf_specs")
    parser.add_argument("--parallelism", type=int, default=1)
    args = parser.parse_args(argv)
    # The protocol has standard output to itself: whatever else writes there (the JVM, Flink) goes to the log.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from pyflink.table import EnvironmentSettings, TableEnvironment

    started = time.monotonic()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    config.set("pipeline.jars", ";".join(f"file://{jar}" for jar in args.jar))
    config.set("python.execution-mode", "thread")
    config.set("python.executable", sys.executable)
    config.set("python.client.executable", sys.executable)
    config.set("parallelism.default", str(args.parallelism))
    _register(t_env, json.loads(args.udfs))
    server = Server(t_env, out)
    server.reply(ok=True, ready=True, pid=os.getpid(), started_s=time.monotonic() - started)
    for line in sys.stdin:
        if line.strip() and not server.handle(json.loads(line)):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
