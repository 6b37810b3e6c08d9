"""Regenerate the Python modules for proto/*.proto into settlement/schemas/.

One command (`python scripts/gen_proto.py`), pinned protoc (grpcio-tools in requirements-dev.txt), and
`tests/unit/test_generated_code.py` fails when the checked-in modules are stale.
`--check` compares instead of writing and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "settlement" / "schemas"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every proto file; return the generated files."""
    protos = sorted(str(p.name) for p in PROTO_DIR.glob("*.proto"))
    code = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", *protos])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return sorted(p for p in out_dir.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi")))


def stale_files() -> list[str]:
    """Names of generated files that differ from (or are missing in) settlement/schemas/."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            f.name
            for f in fresh
            if not (OUT_DIR / f.name).exists() or not filecmp.cmp(f, OUT_DIR / f.name, shallow=False)
        ]
        expected = {f.name for f in fresh}
    extra = [p.name for p in OUT_DIR.glob("*_pb2.py*") if p.name not in expected]
    return sorted(stale + extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="report stale generated files, write nothing")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated code: " + ", ".join(stale) + " (run: python scripts/gen_proto.py)")
            return 1
        print("generated code is up to date")
        return 0
    for path in generate(OUT_DIR):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
