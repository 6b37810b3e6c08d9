"""Faults injected into the function itself, named in the fault tables' rows (`function_fault`).

The platform never fails a function on purpose: an instance invokes the function its hooks hand it
(localrun/platform/hooks.py `InstanceHooks.function`), and the experiments' probes (localrun/experiments/probes.py)
hand it the app's function wrapped here. A fault is text, so that it crosses into spawned instance processes and
reads in a row's definition; each instance wraps the function once, so counts ("the first N invocations") are per
instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def faulty(function: Callable[..., Any], fault: str | None) -> Callable[..., Any]:
    """Inject faults into the function, comma-separated: `fail-first:N` (the first N invocations raise),
    `fail-after-first:N` (the first N invocations raise after their work), `slow:S` (each takes at least S
    seconds before its work), `slow-after:S` (S seconds after its work, before the host stores the offsets),
    `fail-offset:P:O` (every invocation whose batch holds partition P offset O raises)."""
    if not fault:
        return function
    for one in reversed(fault.split(",")[1:]):
        function = faulty(function, one)
    kind, _, arg = fault.split(",")[0].partition(":")
    state = {"calls": 0}

    def wrapped(**kwargs: Any) -> Any:
        state["calls"] += 1
        events = next(iter(kwargs.values()))
        if kind == "fail-first" and state["calls"] <= int(arg):
            raise RuntimeError("injected failure")
        if kind == "slow":
            time.sleep(float(arg))
        if kind == "fail-offset":
            partition, offset = (int(x) for x in arg.split(":"))
            if any(e.partition == partition and e.offset == offset for e in events):
                raise RuntimeError(f"injected failure: the batch holds {partition}:{offset}")
        result = function(**kwargs)
        if kind == "slow-after":
            time.sleep(float(arg))
        if kind == "fail-after-first" and state["calls"] <= int(arg):
            raise RuntimeError("injected failure after the batch was written")
        return result

    return wrapped
