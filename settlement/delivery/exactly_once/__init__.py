"""Exactly-once: the room of everything that keeps a read_committed reader's view of the outputs exactly once.

One door, `ExactlyOnce` (delivery.py): the `Delivery` behind the seam of settlement/core/plan.py, which owns the ledger
and everything that works on it. Inside, one job a module:

    delivery   `ExactlyOnce`: a batch per source partition (skip, gap, write in the open transaction); the committer
               and the recovery of lost ranges started and stopped; the repair built over the same ledger
    repair     the repair timer's run: which partitions are behind and stalled, taken over, settled, released
    committer  the background thread: commits left open past their interval, lost ranges settled again
    ledger     the transaction lifecycle of each source partition: take (fence), start, begin, commit, abort, drop
    partitions each partition's state, locked in a fixed order
    source     reads of the source topic and of the settled group
    fencing    which client error means "another process took the partition"

The pure decisions it acts on stay in the core, where they are table-tested without a broker and read by the runtime
and the local platform too: `core.positions` (skip, gap, step, commit due), `core.naming` (`<group>.settled` and the
transactional ids, which ACLs and operators' tooling read) and `core.liveness` (which partitions the repair takes).
The wiring (settlement/runtime/root.py) builds one with `ExactlyOnce.open` and starts it with the processor's batch
path; nothing outside this package sees the ledger.
"""

from settlement.delivery.exactly_once.delivery import ExactlyOnce
from settlement.delivery.exactly_once.fencing import Fenced
from settlement.delivery.exactly_once.ledger import LedgerConfig
from settlement.delivery.exactly_once.repair import PartitionRun, Repair, RepairRun
from settlement.delivery.exactly_once.source import REPAIR_LIMIT

__all__ = ["REPAIR_LIMIT", "ExactlyOnce", "Fenced", "LedgerConfig", "PartitionRun", "Repair", "RepairRun"]
