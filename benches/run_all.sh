#!/usr/bin/env bash
# Runs every benchmark against the peers and writes BENCHMARKS.md and its chart
# (benches/epoch_seconds.svg), in one command:
#
#   benches/run_all.sh [--epochs N] [--reps N] [--cnn-reps N] [--startup-reps N]
#                      [--note TEXT] [--compile-cost] [--gpt-steps N] [--gpt-args "FLAGS"]
#                      [--gpt-tch] [--gpt-only]
#
# 1. the Rust benchmark (`cargo bench --features bench-peers --bench trainer_overhead`): the
#    hand-written burn loop, `Trainer::fit`, burn-train as in its MNIST example and minimal,
#    interleaved, on the perceptron (`--reps`, default 20) and on the CNN (`--cnn-reps`, default
#    5), `--epochs` each (default 3, the first a warm-up), and the time to the first optimizer
#    step and peak RSS of `--startup-reps` child processes per side (default 3);
# 2. the same two Rust sides built with `--features tch` and run with BURN_DEVICE=tch: on
#    libtorch's CPU kernels, the ones PyTorch runs, which isolates each framework's own cost;
# 3. PyTorch and PyTorch Lightning on the same work (benches/pytorch/run.sh, which makes the
#    virtual environment of scripts/python_venv.sh on first use: about 4 GB to download);
# 4. with `--compile-cost`, the compile cost a user pays (a cold build of the mnist example in a
#    fresh target directory, with the README's command (dev profile, dependencies optimized),
#    about 10 minutes on 2 cores; the rebuild after editing one hook;
#    `cargo build --timings` for the macro crate);
# 5. the character-level GPT of examples/gpt.rs (trainer, flex; with `--gpt-tch` also on tch)
#    and benches/pytorch/gpt.py (PyTorch Lightning) on the same data, model, hyperparameters and
#    batch order, one after the other, `--gpt-steps` optimizer steps each (default 500): tokens
#    per second, time to the first batch, peak memory, validation loss every 50 steps
#    (`--gpt-args "--model.n_embd 256 --data.batch_size 32"`: the example's flags, which
#    gpt.py also takes, given to both sides); with
#    `--gpt-only` nothing else runs and only BENCHMARKS.md's GPT section and its chart
#    (benches/gpt_val_loss.svg) are rewritten;
# 6. benches/report.py: BENCHMARKS.md (machine, date, versions, medians and spread, ratios
#    measured in the same run) and the SVG chart, made with matplotlib from the same virtual
#    environment.
#
# The raw output of every step is kept under target/bench-results/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
epochs=3 reps=20 cnn_reps=5 startup_reps=3 compile_cost=0 note="" gpt_steps=500 gpt_tch=0 gpt_only=0 gpt_args=""
command_line="benches/run_all.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) epochs="$2"; shift 2 ;;
        --reps) reps="$2"; shift 2 ;;
        --cnn-reps) cnn_reps="$2"; shift 2 ;;
        --startup-reps) startup_reps="$2"; shift 2 ;;
        --note) note="$2"; shift 2 ;;
        --compile-cost) compile_cost=1; shift ;;
        --gpt-steps) gpt_steps="$2"; shift 2 ;;
        --gpt-tch) gpt_tch=1; shift ;;
        --gpt-args) gpt_args="$2"; shift 2 ;;
        --gpt-only) gpt_only=1; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
    esac
done

# Seconds since `$1` (a `date +%s.%N` reading), to one decimal.
seconds_since() { awk -v start="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - start }'; }

out="$root/target/bench-results"
[ "$gpt_only" = 1 ] && out="$root/target/bench-results-gpt"
rm -rf "$out"
mkdir -p "$out"

python="$("$root/scripts/python_venv.sh")"
# REPORT_PYTHON: a Python with matplotlib for benches/report.py (default: the venv's, where
# matplotlib is installed if missing).
report_python="${REPORT_PYTHON:-$python}"
if ! "$report_python" -c "import matplotlib" 2>/dev/null; then
    "$report_python" -m pip install matplotlib >&2
fi

# The GPT side by side (step 5): each side's output, with the load average around it.
run_gpt() {
    echo "== GPT: examples/gpt.rs (trainer, flex$([ "$gpt_tch" = 1 ] && echo ", tch")) and benches/pytorch/gpt.py (PyTorch Lightning), $gpt_steps steps each" >&2
    # Epochs of 50 batches: a validation, a sample and a checkpoint every 50 steps, for the curves.
    local common=(--trainer.max_steps "$gpt_steps" --model.decay_steps "$((gpt_steps > 100 ? gpt_steps - 100 : 1))"
        --data.batches_per_epoch 50)
    local extra
    read -r -a extra <<< "$gpt_args"
    common+=("${extra[@]}")
    cargo build --example gpt
    {
        echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        target/debug/examples/gpt fit "${common[@]}" --trainer.default_root_dir "$out/gpt-trainer-run"
        echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    } | tee "$out/gpt-trainer.txt"
    if [ "$gpt_tch" = 1 ]; then
        "${tch_env[@]}" cargo build --features tch --example gpt
        {
            echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
            "${tch_env[@]}" BURN_DEVICE=tch target/debug/examples/gpt fit "${common[@]}" \
                --trainer.default_root_dir "$out/gpt-trainer-tch-run"
            echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
        } | tee "$out/gpt-trainer-tch.txt"
        # The flex build back, for whoever runs the example next.
        cargo build --example gpt
    fi
    {
        echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        "$python" benches/pytorch/gpt.py "${common[@]}" --default_root_dir "$out/gpt-lightning-run" 2>&1
        echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    } | tee "$out/gpt-lightning.txt"
}

# torch-sys builds against the venv's torch (LIBTORCH_USE_PYTORCH) and the binary loads its
# libraries; OMP_NUM_THREADS gives libtorch the machine's cores, as bench.py gives PyTorch.
torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
tch_env=(env LIBTORCH_USE_PYTORCH=1 PATH="$(dirname "$python"):$PATH"
    LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}" OMP_NUM_THREADS="$(nproc)")

# The GPT chart's file: one per set of --gpt-args.
gpt_svg=benches/gpt_val_loss.svg
[ -n "$gpt_args" ] && gpt_svg="benches/gpt_val_loss_$(echo "$gpt_args" | tr -c 'a-zA-Z0-9' '_' | sed 's/__*/_/g; s/^_//; s/_$//').svg"

if [ "$gpt_only" = 1 ]; then
    run_gpt
    "$report_python" benches/report.py --results "$out" --command "$command_line" --note "$note" \
        --markdown BENCHMARKS.md --svg benches/epoch_seconds.svg --gpt-svg "$gpt_svg" --gpt-flags "$gpt_args" --gpt-only
    echo "rewrote BENCHMARKS.md's GPT section and $gpt_svg (raw output in $out)" >&2
    exit 0
fi

echo "== Rust: hand-written loop, Trainer::fit, burn-train" >&2
cargo bench --features bench-peers --bench trainer_overhead --no-run
for model in mlp cnn; do
    model_reps="$reps"
    [ "$model" = cnn ] && model_reps="$cnn_reps"
    cargo bench --features bench-peers --bench trainer_overhead -- \
        --models "$model" --epochs "$epochs" --reps "$model_reps" --startup-reps "$startup_reps" \
        | tee "$out/rust-$model.txt"
done

echo "== Rust on libtorch (tch): the hand-written loop and Trainer::fit on PyTorch's CPU kernels" >&2
"${tch_env[@]}" cargo bench --features tch --bench trainer_overhead --no-run
for model in mlp cnn; do
    model_reps="$reps"
    [ "$model" = cnn ] && model_reps="$cnn_reps"
    # The sides are renamed `hand-written-tch` and `trainer-tch` for the report.
    "${tch_env[@]}" BURN_DEVICE=tch cargo bench --features tch --bench trainer_overhead -- \
        --models "$model" --sides hand-written,trainer --epochs "$epochs" --reps "$model_reps" \
        --startup-reps "$startup_reps" | sed -E 's/ side=(hand-written|trainer) / side=\1-tch /' \
        | tee "$out/rust-tch-$model.txt"
done

echo "== Python: PyTorch, PyTorch Lightning" >&2
for model in mlp cnn; do
    model_reps="$reps"
    [ "$model" = cnn ] && model_reps="$cnn_reps"
    "$python" benches/pytorch/bench.py --models "$model" --epochs "$epochs" --reps "$model_reps" \
        --startup-reps "$startup_reps" | tee "$out/python-$model.txt"
done

run_gpt

if [ "$compile_cost" = 1 ]; then
    echo "== compile cost" >&2
    cold_target="$out/cold-target"
    start=$(date +%s.%N)
    CARGO_TARGET_DIR="$cold_target" cargo build --example mnist >&2
    cold=$(seconds_since "$start")
    # Editing one hook: a change to the example's module, then the rebuild.
    hook_file=examples/common/lit_mnist.rs
    cp "$hook_file" "$out/hook_file.bak"
    trap 'cp "$out/hook_file.bak" "$root/$hook_file"' EXIT
    sed -i 's|let (loss, _) = self.loss_and_accuracy(batch);|let (loss, _accuracy) = self.loss_and_accuracy(batch);|' "$hook_file"
    start=$(date +%s.%N)
    CARGO_TARGET_DIR="$cold_target" cargo build --example mnist >&2
    incremental=$(seconds_since "$start")
    cp "$out/hook_file.bak" "$hook_file"
    trap - EXIT
    touch lightning-macros/src/lib.rs
    CARGO_TARGET_DIR="$cold_target" cargo build -p burn-lightning-macros --timings >&2
    timings=$(ls -t "$cold_target"/cargo-timings/cargo-timing-*.html | head -1)
    cp "$timings" "$out/cargo-timing-macros.html"
    # The unit's compile seconds, from the report's embedded JSON (`"duration": 1.93`).
    macros=$("$python" - "$timings" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
found = re.search(r'"name":\s*"burn-lightning-macros".*?"duration":\s*([0-9.]+)', text, re.S)
print(found.group(1) if found else "unknown")
PY
)
    {
        echo "COMPILE what=cold_build_mnist_example seconds=$cold"
        echo "COMPILE what=rebuild_after_editing_one_hook seconds=$incremental"
        echo "COMPILE what=burn_lightning_macros_crate seconds=${macros:-unknown}"
    } | tee "$out/compile.txt"
fi

"$report_python" benches/report.py --results "$out" --command "$command_line" --note "$note" \
    --markdown BENCHMARKS.md --svg benches/epoch_seconds.svg --gpt-svg "$gpt_svg" --gpt-flags "$gpt_args"
echo "wrote BENCHMARKS.md, benches/epoch_seconds.svg and $gpt_svg (raw output in $out)" >&2
