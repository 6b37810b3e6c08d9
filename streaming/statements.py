"""The statements of flink/*.sql as the engine runs them: comments dropped, split at `;`, and each INSERT read as its
target table and its query, so that the local engine can run the query unchanged into a table it writes through a
UDF (streaming.ddl.local_insert). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streaming.ddl import FLINK_DIR

_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(`(?:[^`]|``)+`|[A-Za-z_][A-Za-z0-9_]*)\s+(.*)$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Insert:
    table: str
    query: str
    text: str  # the statement as written


def split(sql: str) -> list[str]:
    """Statements of a file: `--` comments dropped (our files put no `--` or `;` inside string literals)."""
    body = "\n".join(line.split("--", 1)[0].rstrip() for line in sql.splitlines())
    return [s.strip() for s in body.split(";") if s.strip()]


def parse_insert(statement: str) -> Insert:
    """The target and query of `INSERT INTO t <query>`; ValueError for anything else."""
    match = _INSERT.match(statement)
    if match is None:
        raise ValueError(f"not an INSERT INTO statement: {statement[:60]!r}")
    name = match.group(1)
    if name.startswith("`"):
        name = name[1:-1].replace("``", "`")
    return Insert(name, match.group(2).strip(), statement)


def inserts(file: str | Path) -> list[Insert]:
    """The INSERT statements of a file of flink/ (a name there, or a path)."""
    path = Path(file) if Path(file).is_absolute() or Path(file).exists() else FLINK_DIR / file
    return [parse_insert(s) for s in split(path.read_text())]


JOIN = "02-user-trades.sql"
ANALYSIS = "04-settlement-analysis.sql"
