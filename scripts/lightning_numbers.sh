#!/usr/bin/env bash
# Regenerates tests/data/lightning_numbers.json (what PyTorch Lightning gives a script to read back:
# loop limits, the steps of logged rows, what `validate` and `test` return) with the pinned torch and
# pytorch-lightning of scripts/python_venv.sh. A few seconds on a CPU; tests/lightning_numbers.rs
# compares the Rust trainer with the file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$root/tests/data/lightning_numbers.json}"
python="$(bash "$root/scripts/python_venv.sh")"
"$python" "$root/scripts/lightning_numbers.py" --output "$output"
echo "wrote $output" >&2
