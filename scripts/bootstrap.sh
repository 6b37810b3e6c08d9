#!/usr/bin/env bash
# Create .venv on the deploy default Python (scripts/pythons.sh) and install requirements-dev.txt into it;
# re-installs only when a requirements file or the interpreter changed. PYTHON=/path/to/python3.X picks another
# interpreter (3.11+); without that default version it falls back to python3 and says what that leaves untested.
# Also sets up the KQL parser (node) in .cache/.
# Given `--brokers 3` (scripts/run.sh passes its options on), also fetch what the 3-node cluster needs, once:
# kafka-tools from Maven Central and toxiproxy built with the machine's Go into .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pythons.sh
source scripts/pythons.sh

if [ -z "${PYTHON:-}" ]; then
  if ! PYTHON=$(scripts/find_python.sh "$DEFAULT_PYTHON" 2>/dev/null); then
    PYTHON=python3
    echo "bootstrap: no Python $DEFAULT_PYTHON (the deploy default) found: .venv uses $PYTHON, and the real-worker test, which needs $DEFAULT_PYTHON, will fail (install it, or set PYTHON$(echo "$DEFAULT_PYTHON" | tr -d .)=/path/to/python$DEFAULT_PYTHON)" >&2
  fi
fi
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

interpreter=$("$PYTHON" -VV)
stamp=$( (cat requirements.txt requirements-dev.txt; echo "$interpreter") | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements-stamp 2>/dev/null)" != "$stamp" ]; then
  # A .venv on another interpreter (an earlier default) is replaced, not patched.
  if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -VV 2>/dev/null)" != "$interpreter" ]; then
    rm -rf .venv
  fi
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
