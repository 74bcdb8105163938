#!/usr/bin/env bash
# The MLflow logger's cost in training: the CPU time (user + sys, /usr/bin/time) of the mnist
# example's fit (the trainer benchmark's `mlp`) with `log_every_n_steps 1`, without a logger, with
# the CSV logger (what reading the logged values every step costs the trainer, whatever the
# logger) and with the MLflow logger sending to MLFLOW_TRACKING_URI (a local `mlflow server`),
# runs alternating, REPS times each (default 3), EPOCHS epochs (default 30). Needs the example built
# with the feature: `cargo build --features mlflow --example mnist`.
#
# Whole-process CPU times differ by more between runs than the bound in question (2% of an
# epoch), so the MLflow runs also measure the logger's own thread: the CPU time of the
# `mlflow-logger` sender thread (nanoseconds from /proc/<pid>/task/<tid>/schedstat, sampled
# every 20 ms until it exits), which does all the logger's network and JSON work. The last line
# puts it against an epoch's CPU time without a logger. What the training thread spends putting
# values in the queue (a lock and a push per value) is not in it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/debug/examples/mnist
URI=${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to a running mlflow server}
EPOCHS=${EPOCHS:-30}
common=(fit --trainer.max_epochs "$EPOCHS" --trainer.log_every_n_steps 1 --trainer.enable_progress_bar false)

# The CPU seconds of the `mlflow-logger` threads of process $1, sampled until it exits.
sender_cpu() {
  local -A last=()
  local task ns rest total=0
  while [[ -d /proc/$1 ]]; do
    for task in /proc/"$1"/task/*; do
      [[ $(cat "$task/comm" 2>/dev/null) == mlflow-logger ]] || continue
      read -r ns rest < "$task/schedstat" 2>/dev/null && last[${task##*/}]=$ns
    done
    sleep 0.02
  done
  for ns in "${last[@]}"; do total=$((total + ns)); done
  awk -v ns="$total" 'BEGIN { printf "%.4f", ns / 1e9 }'
}

out=$(mktemp)
for rep in $(seq "${REPS:-3}"); do
  for side in none csv mlflow; do
    root=$(mktemp -d)
    case $side in
      none) logger=false ;;
      csv) logger="{class_path: CSVLogger, init_args: {flush_logs_every_n_steps: 100000}}" ;;
      mlflow) logger="{class_path: MLFlowLogger, init_args: {tracking_uri: '$URI', experiment_name: cost}}" ;;
    esac
    /usr/bin/time -o "$root/time" -f "cpu_s=%U+%S wall_s=%e" "$BIN" "${common[@]}" \
      --trainer.default_root_dir "$root" --trainer.logger "$logger" > /dev/null &
    timer=$!
    sender=""
    if [[ $side == mlflow ]]; then
      child=""
      while [[ -z $child ]] && kill -0 "$timer" 2>/dev/null; do
        child=$(pgrep -P "$timer" || true)
        sleep 0.01
      done
      [[ -n $child ]] && sender=" sender_cpu_s=$(sender_cpu "$child")"
    fi
    wait "$timer"
    echo "$side rep$rep $(cat "$root/time")$sender" | tee -a "$out"
    rm -rf "$root"
  done
done
# Medians of the process's CPU time per side, and of the sender thread's against an epoch.
awk -v epochs="$EPOCHS" '
  function median(list, n,   sorted, i, j, t) {
    for (i = 1; i <= n; i++) sorted[i] = list[i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) {
      t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t
    }
    return n % 2 ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
  }
  {
    split($3, cpu, /[=+]/); n[$1]++; total[$1, n[$1]] = cpu[2] + cpu[3]
    if ($5 ~ /^sender_cpu_s=/) { split($5, s, "="); senders[++ns] = s[2] }
  }
  END {
    for (side in n) {
      delete list; for (i = 1; i <= n[side]; i++) list[i] = total[side, i]
      m[side] = median(list, n[side]); printf "median cpu_s %s %.3f\n", side, m[side]
    }
    if (ns > 0 && m["none"] > 0) {
      sender = median(senders, ns); epoch = m["none"] / epochs
      printf "sender thread: median %.4f s over %d epochs, %.2f ms an epoch, %.2f%% of an epoch (%.1f ms of CPU without a logger)\n",
        sender, epochs, 1000 * sender / epochs, 100 * sender / epochs / epoch, 1000 * epoch
    }
  }' "$out"
rm -f "$out"
