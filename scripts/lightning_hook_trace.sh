#!/usr/bin/env bash
# Regenerates tests/data/lightning_hook_entry_order.txt, the hook ENTRY order of PyTorch Lightning
# that tests/hook_order.rs compares the Rust trainer with. Run by hand from anywhere in the checkout
# (CI does not run it):
#
#   bash scripts/lightning_hook_trace.sh            # writes tests/data/lightning_hook_entry_order.txt
#   bash scripts/lightning_hook_trace.sh out.txt    # writes out.txt instead
#
# It makes the virtual environment .venv/ with scripts/python_venv.sh (git-ignored; VENV=dir to put it elsewhere, PYTHON=
# to pick the interpreter) with torch and pytorch-lightning from PyPI (TORCH_VERSION and
# LIGHTNING_VERSION override the pins below), then runs scripts/lightning_hook_trace.py (about 5 s
# on CPU; no GPU needed). PyPI's Linux torch wheel is the CUDA build, and it does not import without
# its nvidia-* dependencies even on a CPU-only machine, so the first run downloads about 3.9 GB
# (torch 0.9 GB, the NVIDIA libraries 2.7 GB, triton 0.2 GB; 6.8 GB installed; under 2 minutes at
# 40 MB/s). Later runs reuse the environment.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$root/tests/data/lightning_hook_entry_order.txt}"
python="$(bash "$root/scripts/python_venv.sh")"

cd "$root"
"$python" scripts/lightning_hook_trace.py --output "$output" --command "bash scripts/lightning_hook_trace.sh"
echo "wrote $output" >&2
