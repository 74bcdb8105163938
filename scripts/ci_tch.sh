#!/usr/bin/env bash
# CI stage for burn's LibTorch backend (feature `tch`), on libtorch's CPU device: builds against
# PyPI's torch 2.9.0 (the virtual environment of scripts/lightning_venv.sh, since the libtorch
# download is not reachable everywhere), then runs the MNIST example (it must reach 94% after
# 10 epochs, as on flex) and the hook-order and checkpoint tests with BURN_DEVICE=tch.
#
# It builds in the dev profile, like the README's commands: the dependencies that do not depend
# on burn's backend features are reused from them; burn and the backend are built again with
# FEATURES (default `tch`; flex stays compiled in, BURN_DEVICE picks libtorch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="$(bash scripts/lightning_venv.sh)"
torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH); the binaries load
# its libraries from torch/lib.
export LIBTORCH_USE_PYTORCH=1
export PATH="$(dirname "$python"):$PATH"
export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
export BURN_DEVICE=tch

output=$(mktemp)
cargo run --features "${FEATURES:-tch}" --example mnist | tee "$output"
accuracy=$(grep -oP 'test accuracy: \K[0-9.]+' "$output")
awk -v a="$accuracy" 'BEGIN { if (a < 94.0) { print "tch: test accuracy " a "% is below 94%" > "/dev/stderr"; exit 1 } }'
echo "tch: the MNIST example reached $accuracy% on libtorch's CPU device"

cargo test --features "${FEATURES:-tch}" --test hook_order --test checkpoints
