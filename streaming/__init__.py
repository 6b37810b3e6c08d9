"""The stream-processing third of the pipeline as Flink SQL: the join that writes `user_trades` and the stateful
analysis over `trade-settlements` (the statements in flink/), the table definitions generated for the local engine
and for Confluent Cloud from one description (flink/tables.toml), and the engine's side of a local run.

Local tooling, never imported by the function app at run time (.funcignore keeps it out of the package).
`engine` and `udfs` run inside the Flink engine's own environment (devstack/flink.py), which has PyFlink and
protobuf 5 but none of the app's packages: they import nothing from this repository but each other.
"""
