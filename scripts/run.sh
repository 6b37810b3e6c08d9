#!/usr/bin/env bash
# The main job: set up from nothing, then run the whole pipeline locally on the embedded Kafka + registry
# (generate trades, host the real function, print a summary and the no-loss check). Options: --help.
# `--brokers 3` runs it on the 3-node cluster behind toxiproxy instead (bootstrap then builds toxiproxy, cached).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh "$@"
exec .venv/bin/python -m localrun "$@"
