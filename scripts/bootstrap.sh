#!/usr/bin/env bash
# Create .venv and install requirements-dev.txt into it; re-installs only when a requirements file changed; set up
# the KQL parser (node) in .cache/.
# Given `--brokers 3` (scripts/run.sh passes its options on), also fetch what the 3-node cluster needs, once:
# kafka-tools from Maven Central and toxiproxy built with the machine's Go into .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "bootstrap: $PYTHON not found: install Python 3.11+ (Debian: apt-get install -y python3 python3-venv)" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "bootstrap: $("$PYTHON" --version 2>&1) is too old: Python 3.11+ is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bootstrap: $tool not found: install a Java 17+ JDK and Maven (Debian: apt-get install -y openjdk-17-jdk-headless maven)" >&2
    exit 2
  fi
done

stamp=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements-stamp 2>/dev/null)" != "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$stamp" > .venv/.requirements-stamp
fi
# Microsoft's KQL parser (npm, pinned by scripts/monitoring/kql/package-lock.json) for the check of every query we
# ship (tests/unit/test_kql.py): installed into .cache/ once per lock file.
.venv/bin/python -m scripts.kql_check install >/dev/null

brokers=1
prev=""
for arg in "$@"; do
  case "$arg" in
    --brokers=*) brokers="${arg#--brokers=}" ;;
    *) [ "$prev" = "--brokers" ] && brokers="$arg" ;;
  esac
  prev="$arg"
done
if [ "$brokers" = "3" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "bootstrap: go not found: the 3-broker stack builds toxiproxy with Go (Debian: apt-get install -y golang)" >&2
    exit 2
  fi
  .venv/bin/python -m devstack fetch --brokers 3
fi
