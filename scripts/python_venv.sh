#!/usr/bin/env bash
# Makes (or reuses) the one virtual environment of the project's Python checks, .venv/
# (git-ignored; VENV=dir to put it elsewhere, PYTHON= to pick the interpreter), and prints its
# python's path on stdout (all else goes to stderr). It holds the originals the tests and scripts
# compare against, from PyPI at pinned versions (the *_VERSION variables override them):
#
# - tensorboard and safetensors: tests/tensorboard.rs has TensorBoard read the event files back,
#   tests/checkpoints.rs opens checkpoints with safetensors (when REFERENCE_PYTHON names this
#   python; .ci/run sets it: `export REFERENCE_PYTHON="$(bash scripts/python_venv.sh)"`);
# - torch and pytorch-lightning: burn's `tch` backend builds against this torch
#   (scripts/ci_backends.sh), scripts/lightning_hook_trace.sh and
#   scripts/lightning_checkpoint_fixture.sh regenerate the fixtures, benches/ runs the peers;
# - torchmetrics (the version pytorch-lightning 2.6.6 pulls in, pinned so that the fixture does
#   not drift): scripts/torchmetrics_fixture.sh writes tests/fixtures/torchmetrics.json, and
#   tests/metrics_torchmetrics.rs runs it again to check the committed file.
#
# PyPI's Linux torch wheel is the CUDA build, and it does not import without its nvidia-*
# dependencies even on a CPU-only machine, so the first run downloads about 3.9 GB (torch
# 0.9 GB, the NVIDIA libraries 2.7 GB, triton 0.2 GB; 6.8 GB installed; under 2 minutes at
# 40 MB/s). Later runs reuse the environment (instantly). scripts/venv_with_pins.sh makes it
# (installing Debian's python3-venv with apt-get when python3 lacks venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
pins=(
    "tensorboard==${TENSORBOARD_VERSION:-2.21.0}"
    "safetensors==${SAFETENSORS_VERSION:-0.8.0}"
    "torch==${TORCH_VERSION:-2.9.0}"
    "pytorch-lightning==${LIGHTNING_VERSION:-2.6.6}"
    "torchmetrics==${TORCHMETRICS_VERSION:-1.9.0}"
)

exec bash "$root/scripts/venv_with_pins.sh" "$venv" "${pins[@]}"
