#!/usr/bin/env bash
# The GPU checks, unattended: builds with burn's `cuda` feature (LLVM from Debian, see
# scripts/system_llvm_for_cuda.sh), then runs the MNIST example, the hook-order and checkpoint
# tests and the trainer benchmark on the first CUDA device, the data-parallel test on every CUDA
# device, and prints one summary line per check.
# Usage: bash scripts/gpu-check.sh [--quick]    (--quick: 2 epochs, bench with 1 repetition)
# Exit status: the number of checks that failed. Logs: target/gpu-check/*.log
set -uo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
logs=target/gpu-check
mkdir -p "$logs"
summary=()
failed=0
export BURN_DEVICE=cuda

# Runs one check: name, seconds allowed, command. Records "PASS/FAIL name (N s) detail".
check() {
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout --signal=TERM --kill-after=30 "$limit" "$@" > "$logs/$name.log" 2>&1
  local rc=$?
  local took=$((SECONDS - started))
  local detail
  detail=$(grep -oE 'test accuracy: [0-9.]+%|test result: [^.]*|ratio[^,]*' "$logs/$name.log" | tail -2 | paste -sd ';' -)
  if [ "$rc" -eq 0 ]; then
    summary+=("PASS $name (${took} s) $detail")
  else
    [ "$rc" -eq 124 ] && detail="timed out after $limit s; $detail"
    summary+=("FAIL $name (${took} s, exit $rc) $detail; see $logs/$name.log")
    failed=$((failed + 1))
  fi
  echo "${summary[-1]}"
}

if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > "$logs/nvidia-smi.log" 2>&1; then
  echo "FAIL gpu: nvidia-smi finds no GPU (see $logs/nvidia-smi.log)"
  exit 1
fi
echo "GPU: $(head -1 "$logs/nvidia-smi.log")"

check llvm 900 bash scripts/system_llvm_for_cuda.sh
check build 1800 cargo build --release --features cuda --example mnist --tests --benches
epochs=10
[ "$quick" = "--quick" ] && epochs=2
check example 900 cargo run --release --features cuda --example mnist -- --trainer.max_epochs "$epochs"
check hook_order 600 cargo test --release --features cuda --test hook_order
check checkpoints 600 cargo test --release --features cuda --test checkpoints --test resume
check ddp 600 cargo test --release --features cuda --test ddp
bench_args=(--models mlp,cnn)
[ "$quick" = "--quick" ] && bench_args+=(--reps 1)
check bench 1200 cargo bench --features cuda --bench trainer_overhead -- "${bench_args[@]}"

echo "---- gpu-check summary ($(date -u +%FT%TZ), $(git rev-parse --short HEAD))"
printf '%s\n' "${summary[@]}"
exit "$failed"
