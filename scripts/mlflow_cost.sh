#!/usr/bin/env bash
# The MLflow logger's cost in training: the CPU time (user + sys, /usr/bin/time) of the mnist
# example's fit (the trainer benchmark's `mlp`) with `log_every_n_steps 1`, without a logger, with
# the CSV logger (what reading the logged values every step costs the trainer, whatever the
# logger) and with the MLflow logger sending to MLFLOW_TRACKING_URI (a local `mlflow server`),
# runs alternating, REPS times each (default 3), EPOCHS epochs (default 30). Needs the example built
# with the feature: `cargo build --features mlflow --example mnist`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug/examples/mnist
URI=${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to a running mlflow server}
common=(fit --trainer.max_epochs "${EPOCHS:-30}" --trainer.log_every_n_steps 1 --trainer.enable_progress_bar false)
for rep in $(seq "${REPS:-3}"); do
  for side in none csv mlflow; do
    root=$(mktemp -d)
    case $side in
      none) logger=false ;;
      csv) logger="{class_path: CSVLogger, init_args: {flush_logs_every_n_steps: 100000}}" ;;
      mlflow) logger="{class_path: MLFlowLogger, init_args: {tracking_uri: '$URI', experiment_name: cost}}" ;;
    esac
    /usr/bin/time -f "$side rep$rep cpu_s=%U+%S wall_s=%e" "$BIN" "${common[@]}" \
      --trainer.default_root_dir "$root" --trainer.logger "$logger" > /dev/null
    rm -rf "$root"
  done
done
