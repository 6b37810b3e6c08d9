"""When a run is through: the trigger group's lag is 0 and, under exactly-once, the ledger's too.

The platform knows only the first (its scale controller reads the trigger's group). Under exactly-once a transaction
lost after its batch returned is settled again by the process that lost it, or by the partition's next batch, or by
the repair: the run must not end before. So an experiment also reads the ledger's group (`<group>.settled`, the
app's own), with the scale controller's readout (localrun/platform/lag.py).
"""

from __future__ import annotations

from localrun.platform.host import LocalHost
from localrun.platform.lag import GroupLag
from settlement.core import settled_group


class Drain:
    """Whether a run on `host` is through (close it when the run ends)."""

    def __init__(self, host: LocalHost, exactly_once: bool) -> None:
        self.host = host
        binding = host.binding
        self._ledger = (
            GroupLag(
                binding.broker_list, binding.auth, settled_group(binding.consumer_group), binding.topic, host.partitions
            )
            if exactly_once
            else None
        )

    def ledger_lag(self) -> int | None:
        """Records whose settlement is not committed yet (`<group>.settled`); None without a ledger
        (at-least-once); -1 while the broker cannot say."""
        return None if self._ledger is None else self._ledger.lag()

    def done(self) -> bool:
        """Every input is through: the ledger's lag is 0 where there is one (every record up to the end settled;
        the trigger's offset may stand before records it will never deliver, which the repair drained), else the
        trigger's lag is 0."""
        if self._ledger is not None:
            return self._ledger.lag() == 0
        return self.host.lag() == 0

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
