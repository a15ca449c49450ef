#!/usr/bin/env bash
# Set up initsweep on a Debian machine (as root, package registries only), then run a command in its
# virtualenv:   scripts/setup.sh python sweeps/run.py     |     scripts/setup.sh python -m pytest
# Idempotent: a second call skips every step that is already done and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${INITSWEEP_VENV:-.venv}
DATA_DIR=/usr/share/datasets/fashion-mnist
TEXT_DIR=/usr/share/games/fortunes
apt_updated=

apt_install() {  # apt_install PACKAGE...: only where apt-get exists (Debian and relatives)
  command -v apt-get >/dev/null || { echo "setup: cannot install $* (no apt-get); install it by hand" >&2; return 1; }
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Python 3 with venv (Debian ships venv separately as python3-venv).
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "setup: installing python3 and python3-venv"
  apt_install python3 python3-venv python3-pip
fi

# The embedded datasets, Debian's packages: FashionMNIST's raw files (downloads are the fallback) and the
# fortunes text corpus (language models).
if { [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] || [ ! -f "$TEXT_DIR/zippy" ]; } && command -v apt-get >/dev/null; then
  echo "setup: installing dataset-fashion-mnist and fortunes"
  apt_install dataset-fashion-mnist fortunes
fi

# Headless Chromium and its driver, for the MLflow UI browser test: only when the command runs pytest.
if [[ " $* " == *" pytest "* ]] && ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null; then
  echo "setup: installing chromium and chromium-driver (the browser test)"
  apt_install chromium chromium-driver
fi

# The virtualenv at the tested versions (constraints.txt; INITSWEEP_UNLOCKED=1: the newest pyproject.toml
# allows, as scripts/lock.sh wants), reinstalled only when pyproject.toml or the lock changes.
[ -x "$VENV/bin/python" ] || { echo "setup: creating $VENV"; python3 -m venv "$VENV"; }
VENV=$(cd "$VENV" && pwd)
if [ -n "${INITSWEEP_UNLOCKED:-}" ]; then lock=(); else lock=(-c constraints.txt); fi
stamp="$VENV/.initsweep-installed"
want=$(cat pyproject.toml "${lock[@]:1}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing initsweep and its dependencies into $VENV (a minute or two the first time)"
  # uv (locked too) unpacks the 6 GB of wheels in parallel: a fresh clone's set-up took 94 s here, 205 s
  # with pip. It compiles the bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (as here) every
  # process would compile torch, Ray and MLflow again. pip is the fallback, e.g. where only pip's own
  # configuration (pip.conf) reaches your package index.
  if ! { "$VENV/bin/python" -m pip install -qq "${lock[@]}" uv &&
    "$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" "${lock[@]}" -e '.[dev]'; }; then
    echo "setup: uv did not install; installing with pip instead"
    "$VENV/bin/python" -m pip install -qq "${lock[@]}" -e '.[dev]'
  fi
  echo "$want" > "$stamp"
fi

if [ $# -gt 0 ]; then
  export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
  exec "$@"
fi
