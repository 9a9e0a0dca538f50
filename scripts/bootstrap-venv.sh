#!/usr/bin/env bash
# Create the virtualenv and install the pinned requirements.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "Aegis needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)." >&2; exit 2; }

if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "[venv] installing python3-venv from the Debian packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv "$VENV"
  else
    echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)." >&2
    exit 2
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
