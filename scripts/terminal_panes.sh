#!/usr/bin/env bash
# The example's terminal as a person sees it (the progress bar, the model summary, why `fit`
# stopped and the test table), captured from tmux at 80 and 120 columns. Prints each width's
# final pane and the first frame of epoch 1 (where the bar used to shrink and the line wrap).
# Usage: bash scripts/terminal_panes.sh [mnist args...] (builds the example first).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --example mnist
example="${CARGO_TARGET_DIR:-target}/debug/examples/mnist"
example="$(realpath "$example")"
for width in 80 120; do
    out="$(mktemp -d)"
    session="terminal_panes_$$_$width"
    tmux new-session -d -s "$session" -x "$width" -y 60 \
        "$example $* --trainer.default_root_dir $out; echo EXIT=\$?; sleep 600"
    frame=""
    for _ in $(seq 1 1200); do
        sleep 0.05
        pane="$(tmux capture-pane -p -t "$session")"
        if [[ -z "$frame" ]] && grep -q '^Epoch 1: ' <<<"$pane"; then
            frame="$(grep '^Epoch 1: ' <<<"$pane")"
        fi
        grep -q '^EXIT=' <<<"$pane" && break
    done
    echo "=== $width columns: a frame of epoch 1"
    echo "$frame"
    echo "=== $width columns: the final pane"
    tmux capture-pane -p -t "$session" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
    tmux kill-session -t "$session"
    rm -rf "$out"
done
