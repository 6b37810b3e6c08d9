"""The scale controller's decision for a Kafka trigger, in both of its modes.

- `target` (default since runtime 4.19, target-based scaling): desired instances = ceil(lag / lagThreshold),
  at most the partition count; it can jump several instances at once and scales in too, but not within
  `scale_in_delay_s` of the last scale-out (the controller throttles scale-in after a scale-out). At no lag
  the extension's `KafkaGenericTargetScaler` (4.3.1) returns 0 before any throttling.
- `incremental` (`TARGET_BASED_SCALING_ENABLED=0`, what the reported figures measured): one instance more
  per evaluation while lag per instance exceeds lagThreshold, never more than the partition count.

The plan sets the floor: Flex Consumption goes to zero instances when the trigger has no lag (and back on new
lag); Elastic Premium keeps at least one. Lag per partition is min(high - committed, high - low): a partition
with nothing committed counts its retained records. `scripts/capacity_model.py` and the local host use this
one function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("target", "incremental")
PLANS = {"flex": 0, "premium": 1}  # plan -> the fewest instances the platform keeps


@dataclass
class ScaleController:
    mode: str
    lag_threshold: int
    partitions: int
    max_instances: int | None = None
    scale_in_delay_s: float = 60.0
    plan: str = "premium"
    _last_scale_out_s: float = -math.inf

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"scaling mode must be one of {MODES}, not {self.mode!r}")
        if self.plan not in PLANS:
            raise ValueError(f"plan must be one of {tuple(PLANS)}, not {self.plan!r}")

    @property
    def floor(self) -> int:
        return PLANS[self.plan]

    @property
    def cap(self) -> int:
        return min(self.partitions, self.max_instances or self.partitions)

    def desired(self, lag: float, instances: int, now_s: float) -> int:
        """Instances wanted after an evaluation at `now_s` that saw `lag` (negative: unknown, no change)."""
        if lag < 0:
            return instances
        if lag == 0 and self.floor == 0:
            return 0  # nothing to consume: Flex scales the trigger to zero, unthrottled
        if self.mode == "incremental":
            wanted = instances + 1 if not instances or lag / instances > self.lag_threshold else instances
        else:
            wanted = math.ceil(lag / self.lag_threshold)
            if wanted < instances and now_s - self._last_scale_out_s < self.scale_in_delay_s:
                wanted = instances
        wanted = max(self.floor, 1 if lag else 0, min(self.cap, wanted))
        if wanted > instances:
            self._last_scale_out_s = now_s
        return wanted


def partition_lag(low: int, high: int, committed: int) -> int:
    """Lag of one partition as the scaler reads it."""
    if committed < 0:
        return max(0, high - low)
    return max(0, min(high - committed, high - low))
