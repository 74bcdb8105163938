#!/usr/bin/env bash
# Shows why the MNIST example's test accuracy depends on the machine: burn's CPU backend (flex)
# multiplies matrices with the `gemm` crate, which reads the CPU's cache geometry from
# /sys/devices/system/cpu at run time and blocks the inner (K) dimension of a product by it. The
# first layer's products run over K = 784 pixels: one block of 784 with a large or highly
# associative L1 data cache, two of 392 with a 32 KiB 8-way one, and the other summation order
# rounds differently; ten epochs later the accuracy differs in the last digit.
#
# Runs the example (debug profile, as the README's command) once per L1 geometry below, each in
# its own mount namespace where a fake /sys/devices/system/cpu holds that geometry (Linux, as
# root: `unshare -m` and a bind mount), and prints one line per geometry. Build the example first
# (`cargo build --example mnist`); about 2 s per run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
example="${EXAMPLE:-$root/target/debug/examples/mnist}"
[ -x "$example" ] || { echo "build the example first: cargo build --example mnist" >&2; exit 1; }

# L1 data size and ways, then L2 and L3 sizes (as sysfs writes them).
geometries=(
    "32K 8 512K 32768K"    # AMD Zen 2 to Zen 4, Intel Skylake to Comet Lake
    "48K 12 1280K 49152K"  # Intel Ice Lake and later server cores, AMD Zen 5
)

fake_sysfs() {
    local dir=$1 l1=$2 ways=$3 l2=$4 l3=$5
    local cache="$dir/cpu0/cache"
    mkdir -p "$cache/index0" "$cache/index2" "$cache/index3"
    write() { printf '%s\n' "$3" > "$cache/$1/$2"; }
    for index in index0 index2 index3; do write $index coherency_line_size 64; write $index shared_cpu_list 0; done
    write index0 level 1; write index0 type Data; write index0 size "$l1"; write index0 ways_of_associativity "$ways"
    write index2 level 2; write index2 type Unified; write index2 size "$l2"; write index2 ways_of_associativity 8
    write index3 level 3; write index3 type Unified; write index3 size "$l3"; write index3 ways_of_associativity 16
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for geometry in "${geometries[@]}"; do
    read -r l1 ways l2 l3 <<<"$geometry"
    fake="$work/sysfs-$l1-$ways"
    fake_sysfs "$fake" "$l1" "$ways" "$l2" "$l3"
    out="$work/run-$l1-$ways"
    accuracy=$(unshare -m sh -c 'mount --bind "$1" /sys/devices/system/cpu && cd "$2" && "$3" --trainer.default_root_dir "$4"' \
        sh "$fake" "$root" "$example" "$out" | grep -oP 'test accuracy: \K[0-9.]+%')
    echo "L1d $l1 $ways-way: test accuracy $accuracy"
done
