"""The three ways anything in the settlement can fail, one family each, so a caller catches a meaning.

- `RetryBatch`: nothing of the batch may be taken as settled; the host (or the sink connector, answered 503)
  delivers it again. Its subclasses say why: `TransientError` (the registry or broker could not answer now)
  and `DeliveryError` (records not acknowledged; `fencing.Fenced` when another process took the partition).
- `PoisonRecord` (its kinds in settlement/core/poison.py): this one record can never be settled; it is
  dead-lettered and the batch goes on.
- `ConfigError`: a setting is wrong; the message names it. Raised at start-up (the
  host's indexing) or at the first invocation, before anything is produced.
"""

from __future__ import annotations

from settlement.core.poison import PoisonKind


class RetryBatch(RuntimeError):
    """The batch must fail and be delivered again: retrying can fix what went wrong, dead-lettering cannot."""


class TransientError(RetryBatch):
    """The registry (or broker) could not answer now: the batch must fail and be retried, never dead-lettered."""


class DeliveryError(RetryBatch):
    """Some records of the batch were not acknowledged: the batch must be retried."""


class PoisonRecord(Exception):
    """Raised for a record that can never be settled; `detail` must not contain record bytes or secrets."""

    def __init__(self, kind: PoisonKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class ConfigError(ValueError):
    """Bad configuration: the message names the setting and says what is wrong, never its secret value."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
