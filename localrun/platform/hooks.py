"""The seam the emulated platform exposes to what drives it, so that the platform holds only what Azure does.

An experiment measures what the platform does not know (a trade's latency, what the repair measured, the metrics an
instance exports) and breaks what the platform would not (a function that fails on purpose). It does both through
this seam, its code in localrun/experiments/, never inside the platform's modules:

- `InstanceHooks`, called inside each instance (a spawned process, or a thread for an in-process function): the
  function as the instance invokes it, the readers of the process's meter provider, and fields an experiment adds
  to each batch's and each timer run's report. The base class is the platform alone: it changes nothing.
- `Observer`, called in the host's process with every report an instance sends (`LocalHost(observers=...)`), after
  the host counted it in its own `HostStats`.

An `InstanceHooks` crosses into spawned processes, so it must pickle: a module-level class whose fields are plain
values; what it builds in a process (a metric reader, a counter) it builds there, in its methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Message

Report = Mapping[str, Any]  # what an instance sends the host: a batch, a timer run, a drained instance, ...
Emit = Callable[[dict[str, Any]], None]  # how an instance sends a report
Observer = Callable[[Report], None]


class InstanceHooks:
    """What an instance calls beyond the platform's own work; every method here leaves the platform as it is."""

    def function(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """The function the instance invokes, given the app's: once per instance, before its first batch."""
        return function

    def metric_readers(self, instance: str, emit: Emit) -> list[Any]:
        """The readers of the meter provider an instance process installs before it imports the app, as on Azure,
        where Application Insights is configured (deploy.sh always wires it) and its exporter's reader aggregates
        every instrument: each instance then pays what recording the app's metrics costs there. This one only
        aggregates; nothing reads it."""
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        return [InMemoryMetricReader()]

    def after_batch(self, batch: Sequence[Message], succeeded: bool, done_ms: float) -> dict[str, Any]:
        """Fields added to a batch's report, once the extension is done with it (`done_ms`: epoch milliseconds)."""
        return {}

    def after_timer(self, function: str) -> dict[str, Any]:
        """Fields added to a timer run's report, once the run returned or raised."""
        return {}
