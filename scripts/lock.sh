#!/usr/bin/env bash
# Refresh constraints.txt, the exact versions the test suite passed with: install the newest versions
# pyproject.toml allows into a fresh virtualenv (.venv-lock), write what got installed to constraints.txt,
# then run the whole test suite there; if it fails, the old constraints.txt is put back.
#   scripts/lock.sh          # about 25 minutes on 2 cores (install, then the suite); then commit the file
#   scripts/lock.sh ARGS     # pytest ARGS instead of the whole suite (a quicker look; commit only a full run)
set -euo pipefail
cd "$(dirname "$0")/.."
export INITSWEEP_VENV=.venv-lock
rm -rf "$INITSWEEP_VENV"
old=$(mktemp)
cp constraints.txt "$old"
INITSWEEP_UNLOCKED=1 scripts/setup.sh true
{
  echo "# The exact versions the test suite passed with (scripts/lock.sh writes this file; do not edit by hand)."
  echo "# scripts/setup.sh installs them: uv pip install -c constraints.txt -e '.[dev]' (pip where uv cannot)"
  "$INITSWEEP_VENV/bin/python" -m pip freeze --exclude-editable | grep -v '^initsweep'
} > constraints.txt
if ! scripts/setup.sh python -m pytest "$@"; then
  cp "$old" constraints.txt
  echo "lock: the suite failed with the newest versions; constraints.txt is unchanged" >&2
  exit 1
fi
echo "lock: constraints.txt updated ($(grep -vc '^#' constraints.txt) packages); run scripts/setup.sh to use it"
