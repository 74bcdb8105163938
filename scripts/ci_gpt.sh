#!/usr/bin/env bash
# CI's short run of the GPT example (README "A transformer: examples/gpt.rs"): a fit of 400
# optimizer steps (4 epochs of 100 batches, warm-up 100 steps, cosine decay 300) with dropout,
# stopped after 300 steps, then resumed from the last checkpoint for the 4th epoch. On the
# held-out text the training text's character frequencies score 3.39 nats per character and its
# add-one bigrams 2.49: the 300-step fit must end below 2.60 (it trains), and the resumed fit
# below 2.47, which no model that looks at most one character back reaches (it learned to use
# its context); the resumed fit must also go on from step 300, not start again. Then gradient
# accumulation with this model, its clipping and its scheduler: 100 steps of batches of 16, and
# 100 steps of 2 accumulated batches of 8 (the same windows, 200 batches), without dropout,
# must end with the same validation loss. `cargo test --workspace` has built the example.
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

# Accumulation: the same 1,600 windows (offsets drawn from the seed and the count) as 100
# batches of 16 and as 200 batches of 8 accumulated in pairs; 32 validation batches of 8 are the
# 16 of 16. An optimizer step sees the same mean gradient, clipped and scheduled per step, so both
# end at the same loss (no dropout: its masks are drawn per batch).
same=(--model.dropout 0 --model.sample_chars 0 --trainer.max_steps 100 --trainer.enable_checkpointing false)
cargo run --example gpt -- fit "${same[@]}" --data.batches_per_epoch 100 \
    --trainer.default_root_dir "$dir/batch16" | tee "$dir/batch16.txt"
cargo run --example gpt -- fit "${same[@]}" --data.batches_per_epoch 200 --data.batch_size 8 \
    --data.val_batches 32 --trainer.accumulate_grad_batches 2 \
    --trainer.default_root_dir "$dir/accumulated" | tee "$dir/accumulated.txt"
# Its one epoch of 200 batches made 100 optimizer steps: a validation at step 100.
grep -q '^step 100: val_loss ' "$dir/accumulated.txt" || {
    echo "200 batches accumulated in pairs did not make 100 optimizer steps" >&2
    exit 1
}
plain=$(last_loss "$dir/batch16.txt") accumulated=$(last_loss "$dir/accumulated.txt")
echo "validation loss after 100 steps: $plain (batches of 16), $accumulated (2 accumulated batches of 8)"
awk -v a="$plain" -v b="$accumulated" 'BEGIN { d = a - b; exit !(d < 0.0015 && d > -0.0015) }' || {
    echo "accumulating 2 batches of 8 ended at $accumulated, batches of 16 at $plain: not the same loss" >&2
    exit 1
}
