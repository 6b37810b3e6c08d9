# Python versions, one place (sourced by bootstrap.sh, venv_for.sh, deploy.sh; read by tests/unit/test_pythons.py and
# tests/integration/test_pythons.py).
# The deploy default is the version .venv runs: the whole test suite and the main job run on what Azure will run.
# shellcheck shell=bash disable=SC2034
DEFAULT_PYTHON=3.13
# Every version the tests run on: the whole suite on DEFAULT_PYTHON; on each other one, the unit tests and one
# integration test against the real stack (tests/integration/test_pythons.py), in an env of its own in .cache/.
TESTED_PYTHONS="3.11 3.12 3.13"
