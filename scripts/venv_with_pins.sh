#!/usr/bin/env bash
# Makes (or reuses) the virtual environment at $1 holding the PyPI packages pinned in the other
# arguments (`name==version`), and prints its python's path on stdout (all else goes to stderr).
# A venv that has every pin is used as it is; otherwise pip installs the pins into it. PYTHON=
# picks the interpreter that makes it. Installs Debian's python3-venv with apt-get when that
# interpreter lacks venv. Used by scripts/python_venv.sh and scripts/mlflow_venv.sh.
set -euo pipefail

venv="$1"
shift
pins=("$@")
python="${PYTHON:-python3}"

{
    if [ ! -x "$venv/bin/python" ]; then
        # Debian's python3 lacks `venv` (and its pip) until python3-venv is installed.
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            if command -v apt-get >/dev/null; then
                sudo=""
                [ "$(id -u)" -eq 0 ] || sudo="sudo"
                $sudo apt-get update -q
                $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            else
                echo "$python has no venv module and apt-get is missing: install python3-venv" >&2
                exit 1
            fi
        fi
        rm -rf "$venv"
        if ! "$python" -m venv "$venv"; then
            # venv's own message names only `ensurepip`; a full disk is the usual cause.
            echo "making the virtual environment $venv with $python failed; free disk there:" >&2
            df -h "$(dirname "$venv")" >&2
            rm -rf "$venv"
            exit 1
        fi
    fi
    if ! "$venv/bin/python" - "${pins[@]}" 2>/dev/null <<'PY'; then
import importlib.metadata as metadata
import sys

for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if metadata.version(name).split("+")[0] != version:
        sys.exit(1)
PY
        # No cache: the wheels (torch's CUDA libraries are 4 GB) would stay on disk a second time.
        "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q "${pins[@]}"
    fi
} >&2

echo "$venv/bin/python"
