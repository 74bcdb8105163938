#!/usr/bin/env bash
# Fault trials: reruns, against the current tree, the kill -9, damaged-checkpoint, signal,
# shared-root and bad-input trials of issue 26 and prints one `FAULT` line per trial kind with
# its counts and seconds. A by-hand command, not a CI stage (it takes minutes):
#
#   scripts/fault_trials.sh            # builds the test binaries first (cargo, debug profile)
#   FAULT_KILLS=20 scripts/fault_trials.sh     # fewer kill -9 instants
#
# The trials are `#[ignore]` tests named `fault_trial_*` (run with `--ignored`), and two normal
# tests that print their counts; they reuse the tests' child-process machinery:
#   (a) kill -9   tests/resume.rs::fault_trial_kill_nine_then_resume: FAULT_KILLS (100) children
#                 killed with SIGKILL at an instant drawn from their 24 steps, each resumed from
#                 "last"; counts bit-identical resumes, corrupt checkpoints, left temp files.
#   (b) damage    tests/checkpoints.rs::every_flipped_byte_truncation_and_extension_is_an_error_never_a_panic_or_a_silent_load
#                 and ::every_byte_of_the_header_is_covered: every damaged variant loaded; 0
#                 silent loads expected.
#   (c) signals   tests/signals.rs::fault_trial_real_signals: FAULT_SIGNAL_RUNS (10) children per
#                 signal: SIGINT/SIGTERM/SIGHUP (exit code, resumable checkpoint, metrics.csv rows,
#                 signal-to-exit time), SIGUSR1 in a SLURM job with a stand-in scontrol, and
#                 SIGTERM to a run stuck in its dataloader.
#   (d) shared    tests/resume.rs::fault_trial_concurrent_runs_share_a_root: FAULT_CONCURRENT (8)
#                 runs at once on one root, half killed, then as many again: no failed run, no
#                 corrupt checkpoint, no temp file left.
#   (e) bad CLI   tests/cli.rs::fault_trial_bad_cli_inputs: each bad command line an error exit
#                 with a message, no panic, no hang.
#
# Uses CARGO_TARGET_DIR if set. Every trial's detail (failures, corrupt files) is in
# $FAULT_LOG (default: a temporary file, named at the end). Exits 1 if any trial failed.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${FAULT_LOG:-$(mktemp -t fault_trials.XXXXXX.log)}
: >"$log"
targets=(--test resume --test checkpoints --test signals --test cli)

echo "building the test binaries ..."
if ! cargo test "${targets[@]}" --no-run >>"$log" 2>&1; then
    echo "build failed: see $log"
    exit 1
fi

failed=0
# run NAME TEST_TARGET -- ARGS...: runs one test binary's trials, prints its FAULT lines and the
# stage's wall time.
run() {
    local name=$1 target=$2
    shift 3
    local start=$SECONDS
    echo "== $name: cargo test --test $target -- $*" >>"$log"
    if ! cargo test --test "$target" -- "$@" --nocapture --test-threads 1 >>"$log.part" 2>&1; then
        failed=1
        echo "FAULT $name: FAILED (details in $log)"
    fi
    # A test's first line follows libtest's `test NAME ... ` on the same line.
    grep -ao 'FAULT .*' "$log.part"
    cat "$log.part" >>"$log"
    rm -f "$log.part"
    echo "   ($name: $((SECONDS - start)) s wall, with the test binary's start)"
}

run "kill -9 and shared root" resume -- fault_trial_ --ignored
run "damaged checkpoints" checkpoints -- every_flipped_byte every_byte_of_the_header
run "signals" signals -- fault_trial_ --ignored
run "bad CLI input" cli -- fault_trial_ --ignored

echo "details: $log"
exit $failed
