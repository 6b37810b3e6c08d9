#!/usr/bin/env bash
# The main job: set up from nothing, then run the whole pipeline locally on the embedded Kafka + registry and the
# Flink engine (join, settle, analyse; print a summary and the checks). Options: --help.
# `--brokers 3` runs it on the 3-node cluster behind toxiproxy instead (bootstrap then builds toxiproxy, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  # Printed before bootstrap, so --help works on a machine with nothing installed. These are the options of
  # `python -m localrun` (localrun/experiments/main.py); tests/unit/test_run_help.py keeps the two lists the same.
  cat <<'USAGE'
usage: scripts/run.sh [options]

The main job: brings up the local stack (Kafka + Schema Registry) and the Flink engine, generates stocktrade and
users, joins them on Flink into user_trades (flink/02-user-trades.sql, plus a few poison records), hosts the real
function with the local Kafka-trigger host, analyses the settlements on Flink (flink/04-settlement-analysis.sql),
then prints a summary and checks every end: each trade joined with the users row valid at its time, no record lost
or settled twice, each analysis window equal to the same sums over the settlements. The first run creates .venv/
and downloads the broker, the registry and the Flink engine (PyFlink, the Kafka connector) into .cache/.

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
  --no-engine                skip Flink: write user_trades directly as the join would, no analysis (a quick run)
  --keep-stack               leave the stack running afterwards
  --chart PATH               where to write the run's chart (default: .runs/run-<id>.png)
  --no-chart                 write no chart
  --python X.Y               run on Python X.Y, 3.11, 3.12 or 3.13 (default: .venv's, the deploy default 3.13);
                             another version's env is built in .cache/venvs/ on first use (scripts/venv_for.sh)
USAGE
}

python_version=""
prev=""
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --python=*) python_version="${arg#--python=}" ;;
    *) [ "$prev" = "--python" ] && python_version="$arg" ;;
  esac
  prev="$arg"
done

scripts/bootstrap.sh "$@"
python=.venv/bin/python
if [ -n "$python_version" ]; then
  python=$(scripts/venv_for.sh "$python_version")
fi
exec "$python" -m localrun "$@"
