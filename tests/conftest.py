"""Session fixtures: one real broker + registry for the whole run, unique topic names per test.

Set KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL to use a stack that is already running; otherwise the
local stack (`python -m devstack up`) is started once here and stopped at the end if this run started it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.kafka_helpers import create_topics, unique_name

# Importing function_app in the test process must not build a processor in the background from whatever
# the environment holds at that moment; tests/integration/test_warm_start.py covers the warm start.
os.environ.setdefault("SETTLEMENT_WARM_START", "false")


@dataclass
class Stack:
    bootstrap: str
    registry_url: str
    owned: bool  # True when this test run controls the broker process (restart tests need that)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    given_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    given_registry = os.environ.get("SCHEMA_REGISTRY_URL")
    if given_bootstrap and given_registry:
        yield Stack(given_bootstrap, given_registry, owned=False)
        return
    from devstack import stack as devstack

    state, started = devstack.up()
    try:
        yield Stack(state.bootstrap_servers, state.registry_url, owned=True)
    finally:
        import gc

        from settlement.delivery import producer
        from settlement.runtime import service

        # No client may be left retrying a broker that is going away (it would log after pytest's summary).
        service.reset()
        producer.reset_shared_producer(timeout_s=1)
        gc.collect()
        if started and not os.environ.get("DEVSTACK_KEEP"):
            devstack.down()


@pytest.fixture
def new_topic(stack: Stack) -> Callable[..., str]:
    """Create a uniquely named topic: `new_topic("user-trades", partitions=6)`."""

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = unique_name(prefix)
        create_topics(stack.bootstrap, [name], partitions)
        return name

    return make
