#!/usr/bin/env bash
# CI stage for burn's other backends, built once together beside flex (features `tch,wgpu`;
# BURN_DEVICE picks one at run time), in the dev profile like the README's commands so that the
# dependencies that do not depend on burn's backend features are reused from them:
#
# - LibTorch (`tch`) on libtorch's CPU device, built against PyPI's torch 2.9.0 from the
#   virtual environment of scripts/python_venv.sh (the libtorch download is not reachable
#   everywhere): the MNIST example (it must reach 94% after 10 epochs, as on flex), the
#   hook-order and checkpoint tests;
# - wgpu on a machine without a GPU: Vulkan through Mesa's software rasterizer lavapipe
#   (Debian's mesa-vulkan-drivers, installed here with apt-get when missing): the MNIST example
#   for EPOCHS epochs (default 10; it must reach MIN_ACCURACY, default 94%; lavapipe takes about
#   1.6 s per epoch on 2 cores, after about 4 s of compiling kernels) and the hook-order tests.
#
# FEATURES overrides the feature list (default `tch,wgpu`); a backend it leaves out is skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
features="${FEATURES:-tch,wgpu}"
epochs="${EPOCHS:-10}"
min_accuracy="${MIN_ACCURACY:-94}"
has() { [[ ",$features," == *",$1,"* ]]; }

if has tch; then
    # torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH); the binaries
    # load its libraries from torch/lib.
    python="$(bash scripts/python_venv.sh)"
    torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export LIBTORCH_USE_PYTORCH=1 PATH="$(dirname "$python"):$PATH"
    export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
fi
if has wgpu; then
    if ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -q >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1 >&2
    fi
    # Only lavapipe, whatever else is installed; wgpu wants a runtime directory.
    VK_ICD_FILENAMES="$(ls /usr/share/vulkan/icd.d/lvp_icd.*.json | head -1)"
    export VK_ICD_FILENAMES
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
fi

# One build of everything the backends run.
tests=(--test hook_order)
has tch && tests+=(--test checkpoints)
cargo build --features "$features" --example mnist "${tests[@]}"

# The example on one backend: `name` for messages, then the example's arguments.
run_example() {
    local name=$1 min=$2
    shift 2
    local output
    output=$(mktemp)
    cargo run -q --features "$features" --example mnist -- "$@" | tee "$output"
    local accuracy
    accuracy=$(grep -oP 'test accuracy: \K[0-9.]+' "$output")
    awk -v a="$accuracy" -v min="$min" -v name="$name" \
        'BEGIN { if (a < min) { print name ": test accuracy " a "% is below " min "%" > "/dev/stderr"; exit 1 } }'
    echo "$name: the MNIST example reached $accuracy%"
}

if has tch; then
    BURN_DEVICE=tch run_example "tch (libtorch's CPU device)" 94
    BURN_DEVICE=tch cargo test -q --features "$features" --test hook_order --test checkpoints
fi
if has wgpu; then
    BURN_DEVICE=wgpu run_example "wgpu (lavapipe, $epochs epochs)" "$min_accuracy" --trainer.max_epochs "$epochs"
    BURN_DEVICE=wgpu cargo test -q --features "$features" --test hook_order
fi
