#!/usr/bin/env bash
# CI: the MLflow logger against MLflow itself. Makes the venv with PyPI's mlflow (pinned,
# scripts/mlflow_venv.sh; about 2.5 minutes the first time), builds the tests with the `mlflow`
# feature, and runs tests/mlflow.rs: each test starts `mlflow server` (SQLite, artifacts served)
# on a free port, logs a fit to it and reads it back with MLflow's Python client; the fault tests
# kill it mid-run and hold its answers. The logger's unit tests run with the feature too, and
# tests/cli.rs's MLflow test (the logger by name, its errors; it needs no server).
set -euo pipefail
cd "$(dirname "$0")/.."

MLFLOW_PYTHON="$(bash scripts/mlflow_venv.sh)"
export MLFLOW_PYTHON
cargo test --features mlflow --test mlflow -- --test-threads 2
cargo test -p burn-lightning-runtime --features mlflow --lib mlflow
cargo test --features mlflow --test cli mlflow
cargo clippy --features mlflow --test mlflow -p burn-lightning -- -D warnings
