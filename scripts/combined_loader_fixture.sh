#!/usr/bin/env bash
# Regenerates tests/fixtures/combined_loader.json: how PyTorch Lightning's `fit` reads a
# `CombinedLoader` in each mode, with and without `limit_train_batches` (epoch lengths and the
# items of every batch), which tests/combined_loader.rs compares with burn-lightning's. Run by
# hand from anywhere in the checkout (CI does not run it; the test needs only the committed file):
#
#   bash scripts/combined_loader_fixture.sh              # writes tests/fixtures/combined_loader.json
#   bash scripts/combined_loader_fixture.sh out.json     # writes out.json instead
#
# It uses the virtual environment scripts/python_venv.sh makes (PYTHON=/path/to/python to use
# another with torch and pytorch-lightning), then runs scripts/combined_loader_fixture.py (a few
# seconds on CPU).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$root/tests/fixtures/combined_loader.json}"
python="${PYTHON:-$(bash "$root/scripts/python_venv.sh")}"

cd "$root"
"$python" scripts/combined_loader_fixture.py "$output"
