#!/usr/bin/env bash
# One-step set-up, safe to run again: a virtual environment in .venv with cnnjax installed
# (editable), its test extra when asked for, and the Fashion-MNIST IDX files.
#   scripts/setup.sh          runtime dependencies
#   scripts/setup.sh test     plus the test references (pytest, Keras 3, PyTorch CPU)
# Environment: PYTHON (default python3), VENV (default .venv), CNNJAX_DATA_DIR (skip the Debian
# data package when the IDX files are elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
extras=${1:-}
fashion_mnist_dir=/usr/share/datasets/fashion-mnist

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when pyproject.toml or the extras changed since the last successful install.
spec="${extras:+.[$extras]}"; spec=${spec:-.}
stamp="$VENV/.cnnjax-installed"
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
want="$hash $spec"
installed() {  # The test extra includes the runtime dependencies.
  [ -f "$stamp" ] && { grep -qxF "$want" "$stamp" || { [ "$spec" = . ] && grep -qxF "$hash .[test]" "$stamp"; }; }
}
if ! installed; then
  echo "setup: installing cnnjax ($spec) into $VENV"
  # pip prints a warning for each local index folder this machine lacks: noise, not news.
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
  "$VENV/bin/python" -m pip install --quiet -e "$spec" 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" >> "$stamp"
fi

data_dir=${CNNJAX_DATA_DIR:-$fashion_mnist_dir}
if [ ! -f "$data_dir/train-images-idx3-ubyte.gz" ] && [ ! -f "$data_dir/train-images-idx3-ubyte" ]; then
  if [ -n "${CNNJAX_DATA_DIR:-}" ]; then
    echo "setup: CNNJAX_DATA_DIR=$CNNJAX_DATA_DIR holds no train-images-idx3-ubyte[.gz]" >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's dataset-fashion-mnist (the IDX files, offline)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist > /dev/null
  else
    echo "setup: Fashion-MNIST is missing. Install it with:" >&2
    echo "  sudo apt-get update && sudo apt-get install dataset-fashion-mnist" >&2
    echo "or set CNNJAX_DATA_DIR to a directory holding the four IDX files." >&2
    exit 1
  fi
fi
echo "setup: ready ($VENV, data in $data_dir)"
