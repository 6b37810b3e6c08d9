#!/usr/bin/env bash
# The test command: set up from nothing (venv, packages, Kafka + registry downloads cached in .cache/),
# lint (ruff, shellcheck, mypy, the import contract), then run every test. The real local stack is started once by
# the test session and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/shellcheck scripts/*.sh .ci/run
.venv/bin/mypy --no-error-summary settlement function_app.py devstack localrun streaming scripts bench
# The layer contract (pyproject.toml [tool.importlinter]): imports point down, no cycle.
.venv/bin/lint-imports --no-cache
# Several test processes (pytest-xdist): most of a test's time is spent waiting on the broker, so even 2 cores run
# more than 2 at once. They share one stack; --dist loadgroup keeps each xdist_group (the tests that restart their
# stack, the 3-broker cluster's) in one process. `scripts/test.sh -n 0` runs everything in this process.
# A test process that dies (a crash in a native library) ends the run at once, naming the test: with a replacement
# process, the scope scheduler lost track of the dead one's tests (an INTERNALERROR on a small run, and a full suite
# that waited over 15 min with every process idle until stopped).
exec .venv/bin/python -m pytest -n "${SETTLEMENT_TEST_PROCESSES:-4}" --dist loadgroup --max-worker-restart 0 "$@"
