#!/usr/bin/env bash
# CI's short run of the GPT example (README "A transformer: examples/gpt.rs"): a fit of 400
# optimizer steps (4 epochs of 100 batches, warm-up 100 steps, cosine decay 300) with dropout,
# stopped after 300 steps, then resumed from the last checkpoint for the 4th epoch. On the
# held-out text the training text's character frequencies score 3.39 nats per character and its
# add-one bigrams 2.49: the 300-step fit must end below 2.60 (it trains), and the resumed fit
# below 2.47, which no model that looks at most one character back reaches (it learned to use
# its context); the resumed fit must also go on from step 300, not start again.
# `cargo test --workspace` has built the example.
set -euo pipefail
cd "$(dirname "$0")/.."

threshold=2.60
resumed_threshold=2.47
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
short=(--model.decay_steps 300 --data.batches_per_epoch 100
    --model.dropout 0.1 --model.sample_chars 100 --trainer.default_root_dir "$dir")

# The validation loss a run printed last (`validation loss: 2.3456 (run directory: ..)`).
last_loss() { grep -oP '^validation loss: \K[0-9.]+' "$1"; }
# Checks the run whose output is $1 (after $2) against the bound $3.
check_loss() {
    local loss
    loss=$(last_loss "$1")
    echo "validation loss after $2: $loss (must be below $3)"
    awk -v l="$loss" -v t="$3" 'BEGIN { exit !(l < t) }' || {
        echo "the GPT example's validation loss $loss after $2 is not below $3" >&2
        exit 1
    }
}

cargo run --example gpt -- fit "${short[@]}" --trainer.max_steps 300 | tee "$dir/first.txt"
check_loss "$dir/first.txt" "300 steps" "$threshold"

cargo run --example gpt -- fit "${short[@]}" --trainer.max_steps 400 --ckpt_path last | tee "$dir/resumed.txt"
grep -q '^Restoring states from the checkpoint path at ' "$dir/resumed.txt" || {
    echo "the resumed GPT run did not restore a checkpoint" >&2
    exit 1
}
# One more epoch of 100 steps: its validation is at step 400, and no step 100 comes again.
grep -q '^step 400: val_loss ' "$dir/resumed.txt" && ! grep -q '^step 100: val_loss ' "$dir/resumed.txt" || {
    echo "the resumed GPT run did not go on from step 300" >&2
    exit 1
}
check_loss "$dir/resumed.txt" "the resume to 400 steps" "$resumed_threshold"
