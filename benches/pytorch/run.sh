#!/usr/bin/env bash
# PyTorch and PyTorch Lightning on the benchmark's work (see bench.py): makes or reuses the
# virtual environment of scripts/python_venv.sh (torch 2.9.0 and pytorch-lightning 2.6.6 from
# PyPI; the first run downloads about 4 GB) and runs bench.py with this script's arguments
# (`--models mlp,cnn --sides pytorch,lightning,lightning-minimal --epochs N --reps N
# --startup-reps N`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="$("$root/scripts/python_venv.sh")"
exec "$python" "$root/benches/pytorch/bench.py" "$@"
