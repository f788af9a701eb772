#!/usr/bin/env bash
# Install dcframe, its plugins and the test tools into .venv (created if missing), then run
# every check. This is THE test command: the README gives it and .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[cpu,dev,docs]" \
  -e "plugins/dcframe-pic[test]" -e "plugins/dcframe-timm[test]"
# The docs test opens the built site in headless Chromium (Debian's package); without root or
# apt it skips, saying why.
if ! command -v chromium >/dev/null; then
  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
    || echo "chromium could not be installed: the browser test will skip"
fi

echo "== lint (ruff)"
ruff check .
ruff format --check .
echo "== types (mypy)"
mypy dcframe
echo "== layers (import-linter: each layer imports only the layers below it)"
lint-imports
echo "== tests (pytest): dcframe, then each plugin's own suite"
python -m pytest -q
for plugin in plugins/*/; do
  python -m pytest -q "$plugin"
done
echo "== a short recipe with the PIC clusterer plugin, end to end"
scratch=$(mktemp -d)
dcframe run plugins/dcframe-pic/examples/digits.toml --quiet --set "run.output_dir=\"$scratch\""
rm -rf "$scratch"
echo "all checks passed"
