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
pins=("mlflow==${MLFLOW_VERSION:-3.17.2}")

exec bash "$root/scripts/venv_with_pins.sh" "$venv" "${pins[@]}"
