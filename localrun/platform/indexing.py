"""Index a v2 `func.FunctionApp` the way the Azure Functions Python worker does, before the host loads it.

The worker (azure-functions-python-worker 4.x, `azure_functions_worker/functions.py`,
`Registry.validate_function_params` / `get_function_return_type`) refuses to load a function whose parameter
annotations its checks reject, and the app then never starts on Azure. Those checks call the
`azure-functions` library's own pieces, which run here: the vendored `typing_inspect`, the binding registry
(`azure.functions.meta.get_binding_registry()`) and each converter's `check_input_type_annotation` /
`check_output_type_annotation`. This module replays that sequence for every function and every binding, so
a test fails here exactly where the worker would fail on Azure (for example on a builtin `list[...]`).
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
import typing
from dataclasses import dataclass
from typing import Any

from azure.functions import meta
from azure.functions._thirdparty import typing_inspect

# Output bindings the worker turns into the function's return value without a `$return` name.
_IMPLICIT_OUTPUT = frozenset({"durableClient", "orchestrationTrigger", "activityTrigger", "entityTrigger"})


class FunctionLoadError(RuntimeError):
    """The worker's refusal, in the worker's words: `cannot load the NAME function: ...`."""

    def __init__(self, function_name: str, msg: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {msg}")


@dataclass(frozen=True)
class IndexedParam:
    name: str
    binding_type: str
    annotation: Any


@dataclass(frozen=True)
class RetryPolicy:
    """`@app.retry` as the worker sends it to the host (`build_retry_protos`): whole seconds per interval."""

    strategy: str
    max_retry_count: int  # -1: retry forever
    minimum_interval_s: float
    maximum_interval_s: float


def timespan_s(value: str) -> float:
    """Seconds of an `@app.retry` interval such as "00:01:30", read as Azure's 3.13+ runtime reads it
    (`azure_functions_runtime.loader.convert_to_seconds`: `time.strptime(value, "%H:%M:%S")`): whole seconds, hours
    0-23. A fraction ("00:00:05.5") or a day ("24:00:00", "1.00:00:00") raises ValueError there, failing the
    worker's init (found by tests/integration/test_real_worker.py's runtime; this model had accepted both)."""
    parsed = time.strptime(value, "%H:%M:%S")
    return float(parsed.tm_hour * 3600 + parsed.tm_min * 60 + parsed.tm_sec)


def _retry_policy(name: str, rep: dict[str, Any] | None) -> RetryPolicy | None:
    if not rep:
        return None
    try:
        strategy = str(rep["strategy"])
        count = int(rep["max_retry_count"])
        if strategy == "fixed_delay":
            low = high = timespan_s(str(rep["delay_interval"]))
        elif strategy == "exponential_backoff":
            low, high = timespan_s(str(rep["minimum_interval"])), timespan_s(str(rep["maximum_interval"]))
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
    except (KeyError, ValueError) as exc:
        raise FunctionLoadError(name, f"invalid retry policy: {exc}") from None
    # The host's check, not the worker's: the 3.13+ runtime passes these on, and the host refuses them when it reads
    # the worker's metadata (WorkerFunctionMetadataProvider -> Utility.ValidateRetryOptions -> the WebJobs retry
    # attributes; azure-functions-host at 89dc438d). The app never starts either way.
    if count < -1 or low < 0 or high < low:
        raise FunctionLoadError(name, f"invalid retry policy: count {count}, intervals {low}..{high} s")
    return RetryPolicy(strategy, count, low, high)


@dataclass(frozen=True)
class IndexedFunction:
    """What the worker keeps of a function after indexing, plus what our local host needs to drive it."""

    name: str
    function: Any  # the library's Function object (bindings, settings, user function)
    inputs: dict[str, IndexedParam]
    bindings: list[dict[str, Any]]  # the binding JSON the host reads
    retry: RetryPolicy | None

    @property
    def user_function(self) -> Any:
        return self.function.get_user_function()

    def binding(self, type_name: str) -> dict[str, Any] | None:
        return next((b for b in self.bindings if b["type"] == type_name), None)


_indexed: dict[int, tuple[Any, list[Any]]] = {}  # id → (the app, kept alive so its id is not reused; functions)
_indexing = threading.Lock()


def _functions_of(app: Any) -> list[Any]:
    """`app.get_functions()` once per app (a FunctionApp refuses to build its functions twice), under a lock:
    an instance process indexes the app for its trigger and for its timers from two threads."""
    with _indexing:
        return _functions_once(app)


def _functions_once(app: Any) -> list[Any]:
    cached = _indexed.get(id(app))
    if cached is None or cached[0] is not app:
        # The library warns on the root logger that auth levels only apply to HTTP functions: noise here.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            _indexed[id(app)] = (app, app.get_functions())
        finally:
            root.setLevel(level)
    return _indexed[id(app)][1]


def _is_out(annotation: Any) -> bool:
    if typing_inspect.is_generic_type(annotation):
        origin = typing_inspect.get_origin(annotation)
        if origin is not None:
            return isinstance(origin, type) and origin.__name__ == "Out"
    return isinstance(annotation, type) and annotation.__name__ == "Out"


def _converter(binding_type: str) -> Any:
    converter = meta.get_binding_registry().get(binding_type)
    if converter is None:
        raise LookupError(f"the azure-functions library has no converter for binding type {binding_type!r}")
    return converter


def _check(binding_type: str, pytype: Any, output: bool) -> bool:
    if binding_type == "generic":  # the worker's GenericBinding: str and bytes
        return isinstance(pytype, type) and issubclass(pytype, str | bytes)
    converter = _converter(binding_type)
    return bool(
        converter.check_output_type_annotation(pytype) if output else converter.check_input_type_annotation(pytype)
    )


def index_function(function: Any) -> IndexedFunction:
    """Validate one function as the worker does; raise `FunctionLoadError` where the worker would."""
    name = function.get_function_name()
    user_function = function.get_user_function()
    bindings = json.loads(function.get_function_json())["bindings"]
    params = dict(inspect.signature(user_function).parameters)
    annotations = typing.get_type_hints(user_function)

    bound: dict[str, dict[str, Any]] = {}
    explicit_return: dict[str, Any] | None = None
    for b in bindings:
        direction = str(b.get("direction", "IN")).upper()
        if direction == "INOUT":
            raise FunctionLoadError(name, '"inout" bindings are not supported')
        if b["name"] == "$return":
            if direction != "OUT":
                raise FunctionLoadError(name, '"$return" binding must have direction set to "out"')
            explicit_return = b
        else:
            bound[b["name"]] = b
    if "context" in params and "context" not in bound:
        params.pop("context")
    if set(params) - set(bound):
        raise FunctionLoadError(
            name,
            f"the following parameters are declared in Python but not in function.json: {set(params) - set(bound)!r}",
        )
    if set(bound) - set(params):
        raise FunctionLoadError(
            name,
            f"the following parameters are declared in function.json but not in Python: {set(bound) - set(params)!r}",
        )

    inputs: dict[str, IndexedParam] = {}
    for param in params.values():
        b = bound[param.name]
        has_anno = param.name in annotations
        anno = annotations.get(param.name)
        is_out = has_anno and _is_out(anno)
        pytype = typing_inspect.get_args(anno)[0] if is_out else anno
        if has_anno and not isinstance(pytype, type) and not typing_inspect.is_generic_type(pytype):
            raise FunctionLoadError(name, f"binding {param.name} has invalid non-type annotation {anno!r}")
        binding_out = str(b.get("direction", "IN")).upper() == "OUT"
        if binding_out and has_anno and not is_out:
            raise FunctionLoadError(name, f"binding {param.name} is out but its annotation is not azure.functions.Out")
        if not binding_out and is_out:
            raise FunctionLoadError(name, f"binding {param.name} is in but its annotation is azure.functions.Out")
        bind_type = (
            "generic" if has_anno and pytype in (str, bytes) and b["type"] not in _IMPLICIT_OUTPUT else b["type"]
        )
        if has_anno and not _check(bind_type, pytype, output=is_out):
            raise FunctionLoadError(
                name,
                f'{param.name!r} binding type "{b["type"]}" and dataType "{b.get("dataType")}" do not match '
                f"the parameter's Python type annotation {pytype!r}",
            )
        if not binding_out:
            inputs[param.name] = IndexedParam(param.name, bind_type, pytype)

    if explicit_return is not None and "return" in annotations:
        ret = annotations["return"]
        if not isinstance(ret, type):
            raise FunctionLoadError(name, f"has invalid non-type return annotation {ret!r}")
        if not _check(explicit_return["type"], ret, output=True):
            raise FunctionLoadError(
                name,
                f'Python return annotation "{ret.__name__}" does not match binding type "{explicit_return["type"]}"',
            )

    retry = _retry_policy(name, function.get_settings_dict("retry_policy"))
    return IndexedFunction(name, function, inputs, bindings, retry)


def index_app(app: Any) -> list[IndexedFunction]:
    """Every function of the app, validated; the first refusal raises `FunctionLoadError`."""
    return [index_function(f) for f in _functions_of(app)]


def kafka_annotation(app: Any) -> Any:
    """The annotation of the app's Kafka-trigger parameter, which the converter checks on every call."""
    for function in index_app(app):
        binding = function.binding("kafkaTrigger")
        if binding is not None:
            return function.inputs[binding["name"]].annotation
    raise LookupError("the app has no Kafka-triggered function")
