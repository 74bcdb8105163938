#!/usr/bin/env bash
# Makes (or reuses) the virtual environment of the MLflow checks, .venv-mlflow/ (git-ignored;
# VENV=dir to put it elsewhere, PYTHON= to pick the interpreter), and prints its python's path on
# stdout (all else goes to stderr). It holds PyPI's `mlflow` at a pinned version (MLFLOW_VERSION
# overrides it): its `mlflow server` is the server tests/mlflow.rs logs to, its Python client reads
# back what was logged. A venv of its own, apart from .venv (scripts/python_venv.sh): mlflow pins
# many packages (pandas, scikit-learn, sqlalchemy, flask, ...) that must not move torch's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv-mlflow}"
python="${PYTHON:-python3}"
pins=("mlflow==${MLFLOW_VERSION:-3.17.2}")

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
        "$python" -m venv "$venv"
    fi
    if ! "$venv/bin/python" - "${pins[@]}" 2>/dev/null <<'PY'; then
import importlib.metadata as metadata
import sys

for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if metadata.version(name).split("+")[0] != version:
        sys.exit(1)
PY
        "$venv/bin/python" -m pip install --disable-pip-version-check -q "${pins[@]}"
    fi
} >&2

echo "$venv/bin/python"
