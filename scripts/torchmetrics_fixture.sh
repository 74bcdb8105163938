#!/usr/bin/env bash
# Regenerates tests/fixtures/torchmetrics.json (inputs, and the values torchmetrics computes from
# them, batch by batch and at the end), which tests/metrics_torchmetrics.rs compares
# burn-lightning's metrics with. Run by hand from anywhere in the checkout; CI runs the script
# again through that test (when REFERENCE_PYTHON is set) and checks that the committed file is
# what it writes:
#
#   bash scripts/torchmetrics_fixture.sh                        # writes tests/fixtures/torchmetrics.json
#   bash scripts/torchmetrics_fixture.sh out/torchmetrics.json  # writes there instead
#
# It uses the virtual environment .venv/ that scripts/python_venv.sh makes, with torch and
# torchmetrics from PyPI at their pinned versions, then runs scripts/torchmetrics_fixture.py (a few
# seconds on CPU).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$root/tests/fixtures/torchmetrics.json}"
python="$(bash "$root/scripts/python_venv.sh")"

cd "$root"
"$python" scripts/torchmetrics_fixture.py --output "$output"
