"""The Azure Monitor distro is configured exactly once per process, whichever side gets there first, and the
batch span joins the trace the worker puts the invocation under.

On Azure the Python worker configures the distro at its start when `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`
is true (deploy.sh sets it) and, per invocation, attaches the host's trace context (the invocation's
`traceparent`, whose parent is the Kafka extension's batch span) before calling the function. Each case runs in a
fresh process: OpenTelemetry's global providers can be set once per process. `azure.monitor.opentelemetry` is
replaced by a stand-in that counts its calls and installs SDK providers as the real one does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"

_PRELUDE = """
import json, os, sys, types
sys.path.insert(0, sys.argv[1])
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

calls = []
spans = InMemorySpanExporter()


def configure_azure_monitor(**kwargs):
    calls.append(kwargs)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider())


distro = types.ModuleType("azure.monitor.opentelemetry")
distro.configure_azure_monitor = configure_azure_monitor
sys.modules["azure.monitor.opentelemetry"] = distro
from settlement import telemetry
"""


def run(body: str, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "PYTHON_APPLICATION"))}
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + body, str(ROOT)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_the_app_configures_the_distro_once_when_nothing_else_did() -> None:
    out = run(
        "telemetry.instruments(); telemetry.instruments()\n"
        "with telemetry.batch_span([]) as s: pass\n"
        "print(json.dumps({'calls': calls, 'spans': len(spans.get_finished_spans())}))\n",
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION},
    )
    assert out == {"calls": [{"logger_name": "settlement"}], "spans": 1}


def test_the_app_leaves_a_distro_the_worker_configured_alone() -> None:
    # What the worker does first with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true: configure the distro.
    out = run(
        "configure_azure_monitor(logger_name='')\n"
        "telemetry.instruments(); telemetry.record_lag('t', 0, 1, 1.0)\n"
        "print(json.dumps({'calls': len(calls), 'configured': telemetry.already_configured()}))\n",
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"},
    )
    assert out == {"calls": 1, "configured": True}  # the worker's one call, none of ours


def test_without_a_connection_string_nothing_is_configured() -> None:
    out = run(
        "telemetry.instruments()\n"
        "print(json.dumps({'calls': len(calls), 'configured': telemetry.already_configured()}))\n",
        {},
    )
    assert out == {"calls": 0, "configured": False}


def test_the_batch_span_is_a_child_of_the_invocation_context_the_worker_attaches() -> None:
    # The worker's configure_opentelemetry(context): extract the invocation's trace context and attach it.
    out = run(
        "configure_azure_monitor(logger_name='')\n"
        "from opentelemetry import context\n"
        "from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator\n"
        "host = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'\n"
        "token = context.attach(TraceContextTextMapPropagator().extract({'traceparent': host}))\n"
        "with telemetry.batch_span([]) as s: carried = s.output_headers(())\n"
        "[span] = spans.get_finished_spans()\n"
        "print(json.dumps({'trace': format(span.context.trace_id, '032x'),\n"
        "  'parent': format(span.parent.span_id, '016x'),\n"
        "  'carried': carried[0][1].decode()}))\n",
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"},
    )
    assert out["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736" and out["parent"] == "00f067aa0ba902b7"
    # a settlement of a record without its own traceparent carries the batch span's: the same trace onward
    assert out["carried"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_a_failed_batch_ends_its_span_with_an_error() -> None:
    out = run(
        "from settlement.core.errors import DeliveryError\n"
        "try:\n"
        "    with telemetry.batch_span([]) as s: raise DeliveryError('not acknowledged')\n"
        "except DeliveryError: pass\n"
        "[span] = spans.get_finished_spans()\n"
        "print(json.dumps({'status': span.status.status_code.name, 'events': [e.name for e in span.events]}))\n",
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION},
    )
    assert out == {"status": "ERROR", "events": ["exception"]}


def test_the_host_exports_its_own_and_the_kafka_extensions_spans_with_opentelemetry() -> None:
    # The host's OpenTelemetry pipeline (telemetryMode) listens to "Microsoft.Azure.WebJobs.Extensions.*", which
    # matches the extension's "Microsoft.Azure.Webjobs.Extensions.Kafka" (OpenTelemetry .NET's wildcards ignore
    # case); with the default mode the extension's batch span is not exported and the trace breaks there.
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
