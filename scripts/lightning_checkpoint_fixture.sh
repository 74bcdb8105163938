#!/usr/bin/env bash
# Regenerates tests/fixtures/lit_mlp.ckpt (a PyTorch Lightning checkpoint), lit_mlp.json (its
# epoch, step, hyperparameters and the logits of fixed inputs, computed in Python) and
# plain_state_dict.pt, which tests/lightning_import.rs imports. Run by hand from anywhere in the
# checkout (CI does not run it; the test needs only the committed files):
#
#   bash scripts/lightning_checkpoint_fixture.sh              # writes under tests/fixtures/
#   bash scripts/lightning_checkpoint_fixture.sh out/dir      # writes under out/dir instead
#
# It uses the virtual environment .venv/ that scripts/python_venv.sh makes (git-ignored;
# VENV=dir to put it elsewhere, PYTHON= to pick the interpreter), with torch and pytorch-lightning
# from PyPI (TORCH_VERSION and LIGHTNING_VERSION override the pins below), then runs
# scripts/lightning_checkpoint_fixture.py (a few seconds on CPU; no GPU needed). PyPI's Linux torch
# wheel is the CUDA build and does not import without its nvidia-* dependencies, so the first run
# downloads about 3.9 GB (6.8 GB installed); later runs reuse the environment.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output_dir="${1:-$root/tests/fixtures}"
python="$(bash "$root/scripts/python_venv.sh")"

cd "$root"
"$python" scripts/lightning_checkpoint_fixture.py --output-dir "$output_dir"
