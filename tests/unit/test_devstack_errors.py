"""Bad environment gets one clear line naming what to do."""

from __future__ import annotations

import socket

import pytest

from devstack import fetch, stack
from devstack.errors import StackError


def test_missing_java_and_maven_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match=r"java and mvn not found on PATH: install a Java 17\+ JDK and Maven"):
        fetch.require_tools()


def test_a_busy_port_names_the_port_and_the_setting(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("DEVSTACK_KAFKA_PORT", str(port))
        with pytest.raises(StackError) as err:
            stack._choose_port("DEVSTACK_KAFKA_PORT", set())
    assert str(err.value) == (
        f"port {port} (DEVSTACK_KAFKA_PORT) is already in use on 127.0.0.1; set DEVSTACK_KAFKA_PORT to a free port"
    )


def test_a_service_that_never_comes_up_points_at_its_log(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DEVSTACK_HOME", str(tmp_path))
    monkeypatch.setattr(stack, "START_TIMEOUT_S", 0.3)
    import os

    with pytest.raises(StackError, match=r"Kafka broker did not come up within 0s; see its log: .*kafka\.log"):
        stack._wait("Kafka broker", os.getpid(), lambda: False, "kafka")


def test_a_service_that_dies_at_start_up_points_at_its_log(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DEVSTACK_HOME", str(tmp_path))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "registry.log").write_text("starting\nERROR: Address already in use\n")
    with pytest.raises(StackError, match=r"Schema Registry exited during start-up; its log \(.*registry\.log\) ends:"):
        stack._wait("Schema Registry", 2**22 + 12345, lambda: False, "registry")
    with pytest.raises(StackError, match=r"ends:\nstarting\nERROR: Address already in use$"):
        stack._wait("Schema Registry", 2**22 + 12345, lambda: False, "registry")  # the next up() starts it afresh


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch) -> None:
    """The storage tool reads an id starting with '-' as an option and refuses to format (one start in 64)."""
    import uuid

    from devstack import stack

    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(stack.uuid, "uuid4", lambda: next(drawn))
    assert stack._cluster_id() == "EAAAAAAAAAAAAAAAAAAAAA"
