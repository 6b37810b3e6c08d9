"""Timer triggers as the Functions host fires them, for the local host.

Read from the host's and the library's source (WebJobs timer extension; azure-functions 1.2x `timer.py`):
the host fires a timer at each occurrence of its NCRONTAB schedule (UTC), never while the previous run of it is
still going (a timer is a singleton across the app's instances, by a storage lease), and hands the worker the
timer object as JSON (`{"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {...} or null, "IsPastDue":
bool}`), which the worker turns into a `func.TimerRequest` with the library's `TimerRequestConverter`: the
function here receives exactly that. `ScheduleStatus` is null without `use_monitor` (the repair's case).

Which instance runs it depends on the plan: on Flex Consumption every function that is not HTTP, Blob or Durable
scales on instances of its own, so the timer runs in a process of its own, woken whatever the Kafka trigger's
instance count (zero included); on Premium every instance runs every function, so it runs in one of the
trigger's instance processes (localrun/platform/host.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from localrun.platform.binding import disabled_setting, is_disabled, resolve
from localrun.platform.indexing import index_app
from settlement.core import next_after


@dataclass(frozen=True)
class TimerBinding:
    function_name: str
    schedule: str
    run_on_startup: bool
    use_monitor: bool
    user_function: Callable[..., Any]
    param_name: str


def load_timers(app: Any, settings: Mapping[str, str]) -> list[TimerBinding]:
    """The app's enabled timer-triggered functions, indexed as the worker indexes them."""
    timers = []
    for function in index_app(app):
        binding = function.binding("timerTrigger")
        if binding is None or is_disabled(function.name, settings):
            continue
        timers.append(
            TimerBinding(
                function.name,
                resolve(binding["schedule"], settings),
                bool(binding.get("runOnStartup", False)),
                bool(binding.get("useMonitor", True)),
                function.user_function,
                binding["name"],
            )
        )
    return timers


def timer_json(past_due: bool, last: datetime | None = None, next_: datetime | None = None) -> str:
    """The timer object as the host hands it to the worker (JSON text)."""
    status = None
    if last is not None and next_ is not None:
        status = {"Last": last.isoformat(), "Next": next_.isoformat(), "LastUpdated": last.isoformat()}
    return json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due})


def timer_request(past_due: bool, last: datetime | None = None, next_: datetime | None = None) -> func.TimerRequest:
    """The `func.TimerRequest` the worker builds from the host's timer JSON (the library's own converter)."""
    request = TimerRequestConverter.decode(meta.Datum(timer_json(past_due, last, next_), "json"), trigger_metadata={})
    assert isinstance(request, func.TimerRequest)
    return request


def invoke_timer(timer: TimerBinding, past_due: bool) -> Any:
    return timer.user_function(**{timer.param_name: timer_request(past_due)})


class Schedule:
    """When a timer is due next, and whether a firing came late (`IsPastDue`)."""

    LATE_S = 1.0  # a firing this much behind its occurrence is reported past due

    def __init__(self, timer: TimerBinding, now: datetime | None = None) -> None:
        self.timer = timer
        start = now or datetime.now(UTC)
        self.next = start if timer.run_on_startup else next_after(timer.schedule, start)

    def due(self, now: datetime) -> bool:
        return now >= self.next

    def fired(self, now: datetime) -> bool:
        """Move to the next occurrence after `now`; returns whether this firing was past due."""
        past_due = (now - self.next).total_seconds() > self.LATE_S
        self.next = next_after(self.timer.schedule, now)
        return past_due


__all__ = ["Schedule", "TimerBinding", "disabled_setting", "invoke_timer", "load_timers", "timer_json", "timer_request"]
