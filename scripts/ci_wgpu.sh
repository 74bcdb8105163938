#!/usr/bin/env bash
# CI stage for burn's wgpu backend (feature `wgpu`) on a machine without a GPU: Vulkan through
# Mesa's software rasterizer lavapipe (Debian's mesa-vulkan-drivers, installed here with apt-get
# when missing). Runs the MNIST example for EPOCHS epochs (default 10; it must reach MIN_ACCURACY,
# default 94%, as on flex; lavapipe takes about 1.6 s per epoch on 2 cores, after about 4 s of
# compiling kernels) and the hook-order tests with BURN_DEVICE=wgpu.
#
# Builds with FEATURES (default `wgpu`) in the dev profile, like the README's commands: the
# dependencies that do not depend on burn's backend features are reused from them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
features="${FEATURES:-wgpu}"
epochs="${EPOCHS:-10}"
min_accuracy="${MIN_ACCURACY:-94}"

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
export BURN_DEVICE=wgpu
# torch-sys (when FEATURES has tch) needs the same environment as in scripts/ci_tch.sh.
if [[ ",$features," == *",tch,"* ]]; then
    python="$(bash scripts/lightning_venv.sh)"
    torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export LIBTORCH_USE_PYTORCH=1 PATH="$(dirname "$python"):$PATH"
    export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
fi

output=$(mktemp)
cargo run --features "$features" --example mnist -- --trainer.max_epochs "$epochs" | tee "$output"
accuracy=$(grep -oP 'test accuracy: \K[0-9.]+' "$output")
awk -v a="$accuracy" -v min="$min_accuracy" -v e="$epochs" \
    'BEGIN { if (a < min) { print "wgpu: test accuracy " a "% after " e " epochs is below " min "%" > "/dev/stderr"; exit 1 } }'
echo "wgpu: the MNIST example reached $accuracy% after $epochs epochs on lavapipe"

cargo test --features "$features" --test hook_order
