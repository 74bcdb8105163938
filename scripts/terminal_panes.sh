#!/usr/bin/env bash
# The example's terminal as a person sees it (the progress bar, the model summary, why `fit`
# stopped and the test table), captured from tmux at 80 and 120 columns. Prints, for each width,
# the first frame of epoch 0 it saw (with the total: `0/110`), the first frame of epoch 1 (where
# the bar used to shrink and the line wrap) and the final pane.
# Usage: bash scripts/terminal_panes.sh [--out FILE] [mnist args...] (builds the example
# first); --out also writes what it prints to FILE (tests/data/terminal_panes.txt is one such
# capture, kept as the record README "What the progress bar shows" points to).
set -euo pipefail
out_file=""
if [[ "${1:-}" == "--out" ]]; then
    out_file="$(realpath -m "$2")"
    shift 2
fi
cd "$(dirname "$0")/.."
cargo build -q --example mnist
example="${CARGO_TARGET_DIR:-target}/debug/examples/mnist"
example="$(realpath "$example")"
captures() {
    for width in 80 120; do
        # A short run directory, so that the example's last line (`test accuracy: ... (run
        # directory: DIR)`) fits 80 columns as it does with the default `target/mnist`.
        out="$(mktemp -d /tmp/tp.XXXX)"
        session="terminal_panes_$$_$width"
        tmux new-session -d -s "$session" -x "$width" -y 60 \
            "$example $* --trainer.default_root_dir $out; echo EXIT=\$?; sleep 600"
        first="" frame=""
        for _ in $(seq 1 6000); do # up to 5 minutes: a loaded machine is slow
            sleep 0.05
            pane="$(tmux capture-pane -p -t "$session")"
            if [[ -z "$first" ]] && grep -q '^Epoch 0: ' <<<"$pane"; then
                first="$(grep '^Epoch 0: ' <<<"$pane")"
            fi
            if [[ -z "$frame" ]] && grep -q '^Epoch 1: ' <<<"$pane"; then
                frame="$(grep '^Epoch 1: ' <<<"$pane")"
            fi
            grep -q '^EXIT=' <<<"$pane" && break
        done
        echo "=== $width columns: the first frame of epoch 0 seen"
        echo "$first"
        echo "=== $width columns: a frame of epoch 1"
        echo "$frame"
        echo "=== $width columns: the final pane"
        tmux capture-pane -p -t "$session" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
        tmux kill-session -t "$session"
        rm -rf "$out"
    done
}
if [[ -n "$out_file" ]]; then
    mkdir -p "$(dirname "$out_file")"
    captures "$@" | tee "$out_file"
else
    captures "$@"
fi
