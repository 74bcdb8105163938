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
# 40 MB/s). Later runs reuse the environment (instantly). Installs Debian's python3-venv with
# apt-get when python3 lacks venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
pins=(
    "tensorboard==${TENSORBOARD_VERSION:-2.21.0}"
    "safetensors==${SAFETENSORS_VERSION:-0.8.0}"
    "torch==${TORCH_VERSION:-2.9.0}"
    "pytorch-lightning==${LIGHTNING_VERSION:-2.6.6}"
    "torchmetrics==${TORCHMETRICS_VERSION:-1.9.0}"
)

{
    if [ ! -x "$venv/bin/python" ]; then
        # Debian's python3 lacks `venv` (and its pip) until python3-venv is installed.
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            if command -v apt-get >/dev/null; then
                sudo=""
                [ "$(id -u)" -eq 0 ] || sudo="sudo"
                $sudo apt-get update -q
                $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            else
                echo "$python has no venv module and apt-get is missing: install python3-venv" >&2
                exit 1
            fi
        fi
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    if ! "$venv/bin/python" - "${pins[@]}" 2>/dev/null <<'PY'; then
import importlib.metadata as metadata
import sys

for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if metadata.version(name).split("+")[0] != version:
        sys.exit(1)
PY
        "$venv/bin/python" -m pip install --disable-pip-version-check -q "${pins[@]}"
    fi
} >&2

echo "$venv/bin/python"
