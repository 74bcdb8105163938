#!/usr/bin/env bash
# Makes (or reuses) the virtual environment .venv-tensorboard/ (git-ignored; VENV=dir to put it
# elsewhere, PYTHON= to pick the interpreter) with PyPI's tensorboard and safetensors
# (TENSORBOARD_VERSION and SAFETENSORS_VERSION override the pins below; no torch, no TensorFlow),
# and prints its python's path on stdout (all else goes to stderr). tests/tensorboard.rs runs
# scripts/check_tensorboard.py, and tests/checkpoints.rs opens checkpoints with safetensors, with
# that python when TENSORBOARD_PYTHON names it; .ci/run does so:
#
#   export TENSORBOARD_PYTHON="$(bash scripts/tensorboard_venv.sh)"
#
# The first run downloads 44 MB of wheels (tensorboard 5.5 MB, grpcio, numpy, pillow, protobuf, ...;
# 178 MB installed; 8 s on a fast link), and installs Debian's python3-venv with apt-get when
# python3 lacks venv; later runs reuse the environment (instantly).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv-tensorboard}"
python="${PYTHON:-python3}"
tensorboard_version="${TENSORBOARD_VERSION:-2.21.0}"
safetensors_version="${SAFETENSORS_VERSION:-0.8.0}"

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
    if ! "$venv/bin/python" - "$tensorboard_version" "$safetensors_version" 2>/dev/null <<'PY'; then
import importlib.metadata as metadata
import sys

ok = metadata.version("tensorboard") == sys.argv[1] and metadata.version("safetensors") == sys.argv[2]
sys.exit(0 if ok else 1)
PY
        "$venv/bin/python" -m pip install --disable-pip-version-check -q \
            "tensorboard==$tensorboard_version" "safetensors==$safetensors_version"
    fi
} >&2

echo "$venv/bin/python"
