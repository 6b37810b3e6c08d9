"""The names the exactly-once ledger writes under, pure: `<group>.settled` (the consumer group holding each source
partition's settled position) and `<group>.settled.<topic>.<partition>` (the partition's transactional id).

Never rename them: fencing works only if every deployment, old and new, initialises the same transactional id for a
partition, and operators' lag tooling and ACLs (one prefix for both) read these names.
"""

from __future__ import annotations

SETTLED_SUFFIX = ".settled"


def settled_group(group: str) -> str:
    """The consumer group holding each source partition's settled position (ACLs: the same prefix)."""
    return f"{group}{SETTLED_SUFFIX}"


def transactional_id(group: str, topic: str, partition: int) -> str:
    """One id per source partition, under the settled group's name so that one prefixed ACL covers both."""
    return f"{settled_group(group)}.{topic}.{partition}"
