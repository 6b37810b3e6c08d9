"""Generated Protobuf modules (do not edit): regenerate with `python scripts/gen_proto.py`."""
