#!/usr/bin/env bash
# Print the python of an environment with requirements-dev.txt on Python X.Y (argument), creating it first if
# needed: .venv for the default version (scripts/pythons.sh, via bootstrap.sh), else
# .cache/venvs/py<X.Y>-<stamp>, rebuilt when a requirements file or the interpreter changes. Built in a staging
# directory and renamed into place, so concurrent runs never share a half-built env; used with `python -m` only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pythons.sh
source scripts/pythons.sh
want="${1:?usage: scripts/venv_for.sh X.Y}"
case " $TESTED_PYTHONS " in
  *" $want "*) ;;
  *) echo "venv_for: Python $want is not one the project is tested on ($TESTED_PYTHONS, scripts/pythons.sh)" >&2; exit 2 ;;
esac
if [ "$want" = "$DEFAULT_PYTHON" ] && [ -z "${PYTHON:-}" ]; then
  scripts/bootstrap.sh >&2
  echo "$PWD/.venv/bin/python"
  exit 0
fi
python=$(scripts/find_python.sh "$want")
stamp=$( (cat requirements.txt requirements-dev.txt; "$python" -VV) | sha256sum | cut -c1-16)
env=".cache/venvs/py$want-$stamp"
if [ ! -x "$env/bin/python" ]; then
  mkdir -p .cache/venvs
  staging=$(mktemp -d ".cache/venvs/py$want-$stamp.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  "$python" -m venv "$staging"
  "$staging/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  # Wheels only: every pin must have a wheel for this version (a source build would hide that it has none).
  "$staging/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r requirements-dev.txt >&2
  mv -T "$staging" "$env" 2>/dev/null || [ -x "$env/bin/python" ]  # another run may have finished it first
fi
echo "$PWD/$env/bin/python"
