#!/usr/bin/env bash
# The main job: set up from nothing, then run the whole pipeline locally on the embedded Kafka + registry
# (generate trades, host the real function, print a summary and the no-loss check). Options: --help.
# `--brokers 3` runs it on the 3-node cluster behind toxiproxy instead (bootstrap then builds toxiproxy, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  # Printed before bootstrap, so --help works on a machine with nothing installed. These are the options of
  # `python -m localrun` (localrun/experiments/main.py); tests/unit/test_run_help.py keeps the two lists the same.
  cat <<'USAGE'
usage: scripts/run.sh [options]

The main job: brings up the local stack (Kafka + Schema Registry), creates this run's topics, generates trades
as the ksqlDB join would (plus a few poison records), hosts the real function with the local Kafka-trigger host,
shows progress, then prints a summary and checks that no record was lost or settled twice. The first run creates
.venv/ and downloads the broker and registry into .cache/.

options:
  -h, --help                 show this help and exit (installs nothing)
  --trades N                 trades to generate (default: 1000000)
  --partitions N             partitions of the run's topics (default: 6)
  --instances N              instances at start; the scaler may add more (default: 1)
  --evaluation-interval S    scale-controller evaluation interval in seconds (default: 10; Azure: 30)
  --lag-threshold N          override KAFKA_LAG_THRESHOLD
  --scaling MODE             target or incremental (default: target)
  --plan PLAN                flex: the trigger scales to zero at no lag and the run ends there, the repair timer
                             on an instance of its own; premium: never below one instance (default: flex)
  --kill-after-last-batch    SIGKILL an instance the moment the trigger's lag reaches 0 (its last batch returned)
  --max-instances N          cap instances (default: the partition count)
  --rate R                   generate at this many trades/s (default: as fast as possible)
  --guarantee G              exactly-once or at-least-once (default: exactly-once)
  --brokers N                1, or 3: the 3-node cluster behind toxiproxy (replication 3, min ISR 2; default: 1)
  --auth MODE                key, or entra: our clients sign in with the managed identity's tokens and the trigger
                             with OIDC client credentials, from the local token issuer, against the broker's
                             OAUTHBEARER listener (signed JWTs verified) and a registry that requires tokens; the
                             tokens issued are printed (default: key)
  --token-lifetime S         with --auth entra: seconds each token lives (default: 20, so that a default run
                             refreshes every process's token mid-stream; Entra's tokens live hours)
  --timeout S                seconds the hosted run may take before it fails (default: 600)
  --keep-stack               leave the stack running afterwards
  --chart PATH               where to write the run's chart (default: .runs/run-<id>.png)
  --no-chart                 write no chart
USAGE
}

for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
  esac
done

scripts/bootstrap.sh "$@"
exec .venv/bin/python -m localrun "$@"
