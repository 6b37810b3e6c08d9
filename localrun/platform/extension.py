"""What the Azure Functions Kafka extension (4.3.x) does with one batch, as a model the local host runs.

Read from the extension's source and docs (Microsoft.Azure.WebJobs.Extensions.Kafka 4.3.x, host.json
`extensions.kafka`), not guessed:

- Each *execution* runs the function under its `@app.retry` policy: up to `max_retry_count` retries with a
  randomized exponential back-off between `minimum_interval` and `maximum_interval` (or a fixed delay).
- If the execution still fails: with `commitOnFailure: true` (the default) its offsets are stored at once and
  the batch is gone; with `false` the execution is re-run *immediately*, up to `maxRetries` more times
  (`-1`: forever), then the offsets are stored anyway (the batch is skipped, and logged).
  The two loops multiply: up to (maxRetries + 1) * (retry count + 1) invocations of one batch.
- A subscriber thread consumes and hands each batch to the executor through a bounded channel of
  `executorChannelCapacity` batches (default 1); when the channel is full it sleeps
  `channelFullRetryIntervalInMs` (default 50) and tries again, not polling meanwhile. So an instance holds up to
  capacity + 2 batches (one running, the channel, one waiting to enter it), and with a function faster than the
  retry interval the interval, not the function, sets the pace: about capacity + 1 batches per interval in the
  extension, about capacity in this model (measured: bench/bench.py channel).
- From 4.3.1 the subscriber sleeps `SubscriberIdleBackoffMs` (default 50) after every window that did not end
  in a full `maxBatchSize` batch, a partial one included: an idle consumer polls about once per
  interval + 50 ms (`KafkaListener`'s consume loop, a fixed `Thread.Sleep`, no growth).
- Offsets are *stored* after each batch (`StoreOffset`), and librdkafka auto-commits stored offsets every
  `autoCommitIntervalMs` (200 ms); nothing is committed synchronously.
- While a batch is being retried the consumer stops polling once the channel is full (a batch or two later).
  Past `maxPollIntervalMs` the member is evicted, the partition moves, the in-memory retry counters start
  again elsewhere, and a batch that always fails is never skipped: the partition stalls. `worst_case_s` is
  that bound's other side.
- `commitOnFailure` and `maxRetries` exist from extension 4.3.0; bundles before 4.37.1 ship 4.2.0, which
  ignores both (a failed batch is lost), so host.json's bundle range starts at 4.37.1.
- Tracing (since 3.8.0; read at 4.3.2, commit 5f208d93a776): when the extension's `ActivitySource`
  (`Microsoft.Azure.Webjobs.Extensions.Kafka`) has a listener, the batch executor builds a
  `BatchEventActivityProvider` before invoking, which links every record's `traceparent` header and *throws* for
  one that `ActivityContext.TryParse` refuses (`invalid_traceparent`). The throw comes before the invocation, inside
  `MultipleItemFunctionExecutor.ReaderAsync`'s per-batch try, whose catch only logs "Error in executor reader":
  the batch is never invoked, its offsets never stored, and the reader goes on to the next batch, whose stored
  offset moves the commit past it. The single-item executor passes the value as a parent id and does not throw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localrun.platform.indexing import RetryPolicy
from settlement.runtime import (  # one model of host.json, shared with the function's own checks
    DEFAULT_COMMIT_ON_FAILURE,
    DEFAULT_MAX_POLL_INTERVAL_MS,
    DEFAULT_MAX_RETRIES,
    HOST_JSON,
    JITTER,  # the host randomizes each exponential delay by ±20 %
    kafka_extension,
    read_host_json,
)


@dataclass(frozen=True)
class KafkaHostOptions:
    """`extensions.kafka` of host.json, with the extension's defaults."""

    max_batch_size: int = 64
    subscriber_interval_s: float = 1.0
    auto_offset_reset: str = "earliest"
    commit_on_failure: bool = DEFAULT_COMMIT_ON_FAILURE
    max_retries: int = DEFAULT_MAX_RETRIES
    auto_commit_interval_ms: int = 200
    max_poll_interval_ms: int = DEFAULT_MAX_POLL_INTERVAL_MS
    executor_channel_capacity: int = 1
    channel_full_retry_interval_ms: int = 50
    # 4.3.1: a fixed sleep after every subscriber window that did not end in a full batch (0: none)
    subscriber_idle_backoff_ms: int = 50

    def __post_init__(self) -> None:
        # The extension refuses these at start-up (KafkaOptions' setters), so the local host does too.
        for setting, value in (
            ("maxBatchSize", self.max_batch_size),
            ("subscriberIntervalInSeconds", self.subscriber_interval_s),
            ("executorChannelCapacity", self.executor_channel_capacity),
            ("channelFullRetryIntervalInMs", self.channel_full_retry_interval_ms),
        ):
            if value <= 0:
                raise ValueError(f"host.json extensions.kafka.{setting} must be larger than 0, not {value}")

    @classmethod
    def from_host_json(cls, path: Path = HOST_JSON) -> KafkaHostOptions:
        kafka = kafka_extension(read_host_json(path))
        default = cls()  # a key host.json leaves out takes the extension's default
        return cls(
            max_batch_size=int(kafka.get("maxbatchsize", default.max_batch_size)),
            subscriber_interval_s=float(kafka.get("subscriberintervalinseconds", default.subscriber_interval_s)),
            auto_offset_reset=str(kafka.get("autooffsetreset", default.auto_offset_reset)).lower(),
            commit_on_failure=bool(kafka.get("commitonfailure", default.commit_on_failure)),
            max_retries=int(kafka.get("maxretries", default.max_retries)),
            auto_commit_interval_ms=int(kafka.get("autocommitintervalms", default.auto_commit_interval_ms)),
            max_poll_interval_ms=int(kafka.get("maxpollintervalms", default.max_poll_interval_ms)),
            executor_channel_capacity=int(kafka.get("executorchannelcapacity", default.executor_channel_capacity)),
            channel_full_retry_interval_ms=int(
                kafka.get("channelfullretryintervalinms", default.channel_full_retry_interval_ms)
            ),
            subscriber_idle_backoff_ms=int(kafka.get("subscriberidlebackoffms", default.subscriber_idle_backoff_ms)),
        )

    def consumer_conf(self, bootstrap: str, group: str) -> dict[str, Any]:
        """librdkafka settings of the extension's consumer: offsets stored after each batch and auto-committed
        every `autoCommitIntervalMs`, the poll bound of host.json, librdkafka's default (eager) assignors."""
        return {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": self.auto_offset_reset,
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.commit.interval.ms": self.auto_commit_interval_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "partition.assignment.strategy": "range,roundrobin",
        }


@dataclass(frozen=True)
class Execution:
    """What became of one batch."""

    invocations: int
    succeeded: bool
    store: bool  # offsets stored (succeeded, or given up on: skipped)
    aborted: bool = False  # the instance stopped mid-way: nothing stored, the batch is redelivered

    @property
    def skipped(self) -> bool:
        return self.store and not self.succeeded


def backoff_s(policy: RetryPolicy | None, attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry `attempt` (0-based) of one execution under the function's `@app.retry` policy."""
    if policy is None:
        return 0.0
    if policy.strategy == "fixed_delay":
        return policy.minimum_interval_s
    base = min(policy.maximum_interval_s, policy.minimum_interval_s * 2**attempt)
    factor = 1.0 if rng is None else rng.uniform(1 - JITTER, 1 + JITTER)
    return min(policy.maximum_interval_s, base * factor)


def run_execution(
    call: Callable[[], object],
    options: KafkaHostOptions,
    policy: RetryPolicy | None,
    sleep: Callable[[float], None],
    rng: random.Random,
    stopped: Callable[[], bool] = lambda: False,
    on_failure: Callable[[int, Exception], None] = lambda _n, _exc: None,
) -> Execution:
    """Run one batch through both retry loops; return what happened and whether to store its offsets."""
    retries = policy.max_retry_count if policy else 0
    invocations = executions = 0
    while True:
        attempt = 0
        while True:
            if stopped():
                return Execution(invocations, False, store=False, aborted=True)
            invocations += 1
            try:
                call()
                return Execution(invocations, True, store=True)
            except Exception as exc:  # noqa: BLE001 - the host catches whatever the function raises
                on_failure(invocations, exc)
            if retries != -1 and attempt >= retries:
                break
            sleep(backoff_s(policy, attempt, rng))
            attempt += 1
        executions += 1
        if options.commit_on_failure:
            return Execution(invocations, False, store=True)
        if options.max_retries != -1 and executions > options.max_retries:
            return Execution(invocations, False, store=True)


def worst_case_s(options: KafkaHostOptions, policy: RetryPolicy | None, invocation_s: float) -> float:
    """Longest a batch can keep its consumer from polling: every invocation takes `invocation_s` (the
    function's own deadline) and every back-off its longest randomized delay. Infinite with -1 counts."""
    retries = policy.max_retry_count if policy else 0
    executions = 1 if options.commit_on_failure else options.max_retries + 1
    if retries == -1 or (not options.commit_on_failure and options.max_retries == -1):
        return math.inf
    longest = [
        min(policy.maximum_interval_s, backoff_s(policy, a) * (1 + JITTER)) if policy else 0.0 for a in range(retries)
    ]
    return executions * ((retries + 1) * invocation_s + sum(longest))


TRACEPARENT = "traceparent"


def invalid_traceparent(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """The exception message `BatchEventActivityProvider.CreateActivityLink` throws for a record, or None.

    `KafkaEventInstrumentation.TryExtractTraceParentId` takes the first header whose key is exactly `traceparent`
    with a value (a null value counts as absent) and decodes it with `Encoding.ASCII` (a byte above 0x7f becomes
    `?`); `ActivityContext.TryParse` (System.Diagnostics, `Activity.TryConvertIdToContext`) then accepts only 55
    characters: a version of two lower-case hex digits other than `ff`, a trace id of 32 and a span id of 16
    lower-case hex digits, neither all zeros, and two lower-case hex digits of flags. The separators are not
    checked."""
    value = next((v for k, v in headers if k == TRACEPARENT and v is not None), None)
    if value is None:
        return None
    text = "".join(chr(b) if b < 0x80 else "?" for b in value)
    return None if _dotnet_parses(text) else f"{text} is not a valid traceparent."


_LOWER_HEX = frozenset("0123456789abcdef")


def _dotnet_parses(text: str) -> bool:
    def hex_not_zero(part: str) -> bool:
        return set(part) <= _LOWER_HEX and set(part) != {"0"}

    return (
        len(text) == 55
        and set(text[:2]) <= _LOWER_HEX
        and text[:2] != "ff"
        and hex_not_zero(text[3:35])
        and hex_not_zero(text[36:52])
        and set(text[53:55]) <= _LOWER_HEX
    )
