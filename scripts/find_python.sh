#!/usr/bin/env bash
# Print the path of a Python X.Y interpreter (argument: X.Y), or exit 1 saying where it looked. One place for
# how the test envs, the real-worker test and bootstrap find the Pythons they need: $PYTHON<X><Y> (e.g.
# PYTHON313=/opt/python3.13/bin/python3.13) if set, else pythonX.Y on PATH if it runs (a pyenv shim for a version
# that is not selected does not), else the newest pyenv build of X.Y.
set -euo pipefail
want="${1:?usage: scripts/find_python.sh X.Y}"
var="PYTHON${want//./}"
runs() { "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" >/dev/null 2>&1; }
if [ -n "${!var:-}" ]; then
  if runs "${!var}"; then echo "${!var}"; exit 0; fi
  echo "find_python: $var=${!var} is not a working Python $want" >&2
  exit 1
fi
if command -v "python$want" >/dev/null 2>&1 && runs "python$want"; then
  command -v "python$want"
  exit 0
fi
root="${PYENV_ROOT:-$HOME/.pyenv}"
while IFS= read -r candidate; do
  if runs "$candidate/bin/python$want"; then echo "$candidate/bin/python$want"; exit 0; fi
done < <(find "$root/versions" -maxdepth 1 -name "$want.*" 2>/dev/null | sort -rV)
echo "find_python: no Python $want (looked at \$$var, python$want on PATH, $root/versions/$want.*)" >&2
exit 1
