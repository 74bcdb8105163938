#!/usr/bin/env bash
# Data-parallel training across processes (feature `mpi`): installs Debian's Open MPI
# (openmpi-bin, libopenmpi-dev) and libclang-dev (mpi-sys generates its bindings with bindgen)
# with apt-get when `mpirun`, `mpicc` or libclang is missing (sudo when not root), then runs
# tests/mpi.rs, which re-launches its own test binary under `mpirun -np 2 --oversubscribe`:
# two processes against one on the same global batches, resuming on every rank, mismatched
# flags, and a rank that hangs, exits or crashes mid-run. In the dev profile (dependencies
# optimized), as the README's main command, so the builds are shared.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

have_libclang() {
    ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1
}

if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null || ! have_libclang; then
    if command -v apt-get >/dev/null; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -q >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q openmpi-bin libopenmpi-dev libclang-dev >&2
    else
        echo "mpirun, mpicc or libclang is missing and apt-get is not there: install Open MPI (or MPICH) and libclang" >&2
        exit 1
    fi
fi

cargo test --features mpi --test mpi
