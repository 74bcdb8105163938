#!/usr/bin/env bash
# Packs the GPU checks for a machine with a GPU and no Rust toolchain (the GPU machines this
# project can reach have CUDA 13 and Python with torch and pytorch-lightning, no compiler and no
# network; what travels there, the working tree and the carried folders together, must stay
# under 64 MiB). Run it where the toolchain is; `bash <pack>/gpu-run.sh` runs the checks there.
#
# The pack (default target/gpu-pack/, or target/gpu-pack-cpu/ with --cpu, relative to the
# repository root: carry that path):
#   bin/gpu_checks.xz  one test binary with every check (tests/gpu_checks.rs: the mnist and gpt
#                      examples, the hook-order, checkpoint and resume, precision and ddp tests,
#                      the trainer benchmark), stripped of debug info and xz-compressed: a `cuda` binary links
#                      LLVM statically, so one binary rather than one per check;
#   lib/*.xz           the shared libraries it needs beyond glibc, libgcc and libstdc++ (none, or
#                      zlib and zstd), should the other machine lack them;
#   data/mnist/        the bundled MNIST files and data/shakespeare/ the GPT example's corpus (the
#                      binary reads them through BURN_LIGHTNING_DATA_DIR, not the source tree it
#                      was compiled from);
#   python/bench.py    PyTorch and PyTorch Lightning on the benchmark's work, and python/gpt.py
#                      the GPT example in PyTorch Lightning (benches/pytorch);
#   gpu-run.sh         scripts/gpu-run.sh;
#   MANIFEST           what was built, from which commit, with what, and the sizes.
#
# Usage: bash scripts/gpu-pack.sh [--cpu] [--out DIR]
#   (default) release build with `--features cuda`: LLVM from Debian through
#             scripts/system_llvm_for_cuda.sh (root, once), CUDARC_CUDA_VERSION for the driver;
#   --cpu     the same harness on flex in the dev profile, reusing the builds of the README's
#             commands (what CI runs, with `gpu-run.sh --cpu`);
#   --out DIR where to put the pack (emptied first).
# Environment: CARGO_TARGET_DIR (give the cuda build a directory of its own: it rebuilds every
# dependency in release); CUDARC_CUDA_VERSION (default 13000, CUDA 13.0: the CUDA version the
# build assumes, which the driver must offer; cudarc otherwise asks `nvcc`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

backend=cuda out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) backend=flex; shift ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0"; exit 0 ;;
        *) echo "gpu-pack.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$out" ]; then
    out=target/gpu-pack
    [ "$backend" = cuda ] || out+=-cpu
fi
# xz's strongest level for the pack that travels; a quick one for the CPU pack, which does not.
xz_level=$([ "$backend" = cuda ] && echo 9 || echo 1)
limit_mib=64 aim_mib=50

started=$SECONDS
build=(cargo test --no-run --test gpu_checks --message-format=json-render-diagnostics)
manifest=()
if [ "$backend" = cuda ]; then
    bash scripts/system_llvm_for_cuda.sh >&2
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    build+=(--release --features cuda)
    bundle="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
    # The newest PTX ISA this LLVM's NVPTX back end emits (`+ptxNN` target features): cubecl asks
    # for the newest the driver loads, and LLVM ignores a feature it does not know.
    max_ptx=$("$bundle/bin/llc" -march=nvptx64 -mattr=help 2>&1 | grep -oE '^ *ptx[0-9]+' | tr -d ' ' | sort -V | tail -1)
    manifest+=("llvm=$("$bundle/bin/llvm-config" --version)" "llvm_max_ptx=$max_ptx"
        "cudarc_cuda_version=$CUDARC_CUDA_VERSION")
fi
echo "gpu-pack: ${build[*]}" >&2
json=$(mktemp)
trap 'rm -f "$json"' EXIT
"${build[@]}" > "$json"
binary=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "gpu_checks" \
            and message.get("executable"):
        print(message["executable"])
' "$json")
[ -n "$binary" ] || { echo "gpu-pack: cargo reported no gpu_checks binary" >&2; exit 1; }
build_seconds=$((SECONDS - started))

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/python"
strip --strip-debug -o "$out/bin/gpu_checks" "$binary"
stripped_bytes=$(stat -c %s "$out/bin/gpu_checks")
# What the binary needs at run time beyond glibc, libgcc and libstdc++ (which any machine that
# runs CUDA has, in versions at least as new); libcuda is loaded lazily by cudarc, not linked.
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    case "$name" in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|ld-linux*|libgcc_s.so.*|libstdc++.so.*) ;;
        *) cp -L "$path" "$out/lib/$name" ;;
    esac
done
xz -T0 "-$xz_level" "$out/bin/gpu_checks"
for lib in "$out"/lib/*; do
    [ -e "$lib" ] && xz -T0 "-$xz_level" "$lib"
done
# The newest glibc symbol version it needs, to compare with the other machine's.
glibc=$(objdump -T "$binary" | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1)

mkdir -p "$out/data/mnist" "$out/data/shakespeare"
cp examples/data/mnist/*.gz "$out/data/mnist/"
cp examples/data/shakespeare/tragedies.txt.gz examples/data/shakespeare/COPYING.txt "$out/data/shakespeare/"
cp benches/pytorch/bench.py benches/pytorch/gpt.py "$out/python/"
cp scripts/gpu-run.sh "$out/"

bytes() { du -sb "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
pack_bytes=$(bytes "$out")
# The working tree that travels with the pack: tracked and untracked files that git does not
# ignore.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
print(sum(os.path.getsize(p) for p in sys.stdin.read().split("\0") if p and os.path.isfile(p)))')
total_bytes=$((pack_bytes + tree_bytes))
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)"
{
    echo "backend=$backend"
    echo "profile=$([ "$backend" = cuda ] && echo release || echo dev)"
    echo "commit=$commit"
    echo "built=$(date -u +%FT%TZ) on $(uname -m), $(nproc) cores"
    echo "rustc=$(rustc --version | cut -d' ' -f2)"
    [ "${#manifest[@]}" -eq 0 ] || printf '%s\n' "${manifest[@]}"
    echo "glibc_needed=${glibc#GLIBC_}"
    echo "build_seconds=$build_seconds"
    echo "binary_bytes=$(stat -c %s "$binary") (stripped $stripped_bytes, xz $(stat -c %s "$out/bin/gpu_checks.xz"))"
    echo "bundled_libs=$(cd "$out/lib" && ls | sed 's/\.xz$//' | paste -sd, -)"
    echo "pack_bytes=$pack_bytes"
    echo "working_tree_bytes=$tree_bytes"
} > "$out/MANIFEST"

cat "$out/MANIFEST" >&2
echo "gpu-pack: $out: $(mib "$pack_bytes") MiB, with the working tree $(mib "$total_bytes") MiB (limit $limit_mib MiB, aim $aim_mib MiB); built in $build_seconds s, packed in $((SECONDS - started - build_seconds)) s" >&2
if [ "$total_bytes" -gt $((limit_mib * 1048576)) ]; then
    echo "gpu-pack: the pack and the working tree exceed $limit_mib MiB: they cannot travel to the GPU machine" >&2
    exit 1
elif [ "$total_bytes" -gt $((aim_mib * 1048576)) ]; then
    echo "gpu-pack: warning: over the $aim_mib MiB aimed for" >&2
fi
