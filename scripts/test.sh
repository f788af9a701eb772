#!/usr/bin/env bash
# Install dcframe with its test tools into .venv (created if missing) and run every check.
# This is THE test command: the README gives it and .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[cpu,dev]"

echo "== lint (ruff)"
ruff check .
ruff format --check .
echo "== types (mypy)"
mypy dcframe
echo "== tests (pytest)"
python -m pytest -q
