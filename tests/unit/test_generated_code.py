"""The checked-in Protobuf modules match proto/ (regenerate with `python scripts/gen_proto.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gen_proto():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_are_fresh() -> None:
    assert _gen_proto().stale_files() == []


def test_staleness_is_detected(tmp_path, monkeypatch) -> None:
    gen = _gen_proto()
    copy = tmp_path / "schemas"
    copy.mkdir()
    for f in gen.OUT_DIR.glob("*_pb2.py*"):
        (copy / f.name).write_bytes(f.read_bytes())
    stale = copy / "user_trade_pb2.py"
    stale.write_bytes(stale.read_bytes().replace(b"quantity", b"qty"))
    monkeypatch.setattr(gen, "OUT_DIR", copy)
    assert gen.stale_files() == ["user_trade_pb2.py"]
