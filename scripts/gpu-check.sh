#!/usr/bin/env bash
# The GPU checks on a machine that has both the Rust toolchain and a GPU: packs them
# (scripts/gpu-pack.sh: one release binary with `--features cuda`) and runs the pack
# (gpu-run.sh). Where the GPU machine has no toolchain, run each half on its side (README,
# Backends).
# Usage: bash scripts/gpu-check.sh [gpu-run.sh's options: --quick, --reps N, --budget S, --out DIR]
# Exit status: gpu-pack.sh's if it failed, else the number of checks that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/gpu-pack.sh
exec bash target/gpu-pack/gpu-run.sh "$@"
