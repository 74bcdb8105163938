#!/usr/bin/env bash
# Makes (or reuses) the virtual environment .venv-trace/ (git-ignored; VENV=dir to put it
# elsewhere, PYTHON= to pick the interpreter) with torch and pytorch-lightning from PyPI
# (TORCH_VERSION and LIGHTNING_VERSION override the pins below), and prints its python's path on
# stdout (all else goes to stderr). Shared by scripts/lightning_hook_trace.sh and
# scripts/lightning_checkpoint_fixture.sh. PyPI's Linux torch wheel is the CUDA build, and it does
# not import without its nvidia-* dependencies even on a CPU-only machine, so the first run
# downloads about 3.9 GB (torch 0.9 GB, the NVIDIA libraries 2.7 GB, triton 0.2 GB; 6.8 GB
# installed; under 2 minutes at 40 MB/s). Later runs reuse the environment.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv-trace}"
python="${PYTHON:-python3}"
torch_version="${TORCH_VERSION:-2.9.0}"
lightning_version="${LIGHTNING_VERSION:-2.6.6}"

{
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    if ! "$venv/bin/python" - "$torch_version" "$lightning_version" 2>/dev/null <<'PY'; then
import importlib.metadata as metadata
import sys

torch_version, lightning_version = sys.argv[1:]
installed = (metadata.version("torch").split("+")[0], metadata.version("pytorch-lightning"))
sys.exit(0 if installed == (torch_version, lightning_version) else 1)
PY
        "$venv/bin/python" -m pip install "torch==$torch_version" "pytorch-lightning==$lightning_version"
    fi
} >&2

echo "$venv/bin/python"
