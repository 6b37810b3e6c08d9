"""The Flink SQL of the pipeline for Confluent Cloud (or the local engine): the table definitions generated from
flink/tables.toml, then the statements of flink/ as they are, in the order to run them.

    .venv/bin/python -m scripts.flink_sql                       # everything for Confluent Cloud, in order
    .venv/bin/python -m scripts.flink_sql --part ddl            # only the table definitions
    .venv/bin/python -m scripts.flink_sql --dialect local --bootstrap-servers 127.0.0.1:9092

Run the output in a Confluent Cloud Flink SQL workspace (or `confluent flink shell`), one statement at a time:
docs/analysis.md says in what order, with which statement properties and compute pool. Nothing here connects
anywhere: it prints.
"""

from __future__ import annotations

import argparse
import sys

from streaming import ddl, statements

FILES = (statements.JOIN, statements.ANALYSIS)


def render(dialect: str, part: str, bootstrap: str = "localhost:9092", partitions: int = 6) -> str:
    """The SQL text for `dialect` (cloud or local): `ddl`, `statements` or `all`."""
    tables = ddl.load()
    out: list[str] = []
    if part in ("ddl", "all"):
        out.append(f"-- Table definitions ({dialect}), generated from flink/tables.toml by scripts/flink_sql.py")
        if dialect == "cloud":
            out += [s + ";" for s in ddl.cloud(tables, partitions)]
        else:
            out += [s + ";" for s in ddl.local(tables, {}, bootstrap)]
    if part in ("statements", "all"):
        for name in FILES:
            if dialect == "cloud":
                properties = ddl.cloud_statement_properties(tables) if name == statements.JOIN else {}
                out.append(f"-- flink/{name}" + "".join(f"\nSET '{k}' = '{v}';" for k, v in properties.items()))
            else:
                out.append(f"-- flink/{name} (locally: run through streaming.ddl.local_insert)")
            out += [insert.text + ";" for insert in statements.inserts(name)]
    return "\n\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.flink_sql", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--dialect", choices=ddl.DIALECTS, default="cloud")
    parser.add_argument("--part", choices=("all", "ddl", "statements"), default="all")
    parser.add_argument("--bootstrap-servers", default="localhost:9092", help="local dialect: the brokers")
    parser.add_argument("--partitions", type=int, default=6, help="cloud: buckets (partitions) of created tables")
    args = parser.parse_args(argv)
    try:
        text = render(args.dialect, args.part, args.bootstrap_servers, args.partitions)
    except ddl.DescriptionError as exc:
        print(f"flink_sql: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
