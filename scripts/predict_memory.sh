#!/usr/bin/env bash
# The peak memory of a prediction run against its number of items: `examples/predict_stream.rs`
# predicts 10^5 and 10^6 items computed on the fly, writing each batch to a file with a
# `PredictionWriter`, once with `return_predictions(false)` (nothing kept: the peak stays flat)
# and once with `--keep` (every prediction returned: the peak grows with the items). Prints the
# example's line per run, with the peak resident memory (Linux's VmHWM). About 3 s in all.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --quiet --example predict_stream
target="${CARGO_TARGET_DIR:-$root/target}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for keep in "" --keep; do
    for items in 100000 1000000; do
        "$target/debug/examples/predict_stream" "$items" $keep --out "$out/predictions.csv"
    done
done
