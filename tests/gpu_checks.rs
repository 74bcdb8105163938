//! Every GPU check in one test binary, for machines with a GPU and no Rust toolchain:
//! `scripts/gpu-pack.sh` builds it (with `--features cuda`, or on flex with `--cpu`), strips and
//! compresses it, and `scripts/gpu-run.sh` runs it there, one check per process. One binary
//! rather than one per test file, because each `cuda` binary links LLVM statically.
//!
//! The test files are included as modules, unchanged, so their tests are named
//! `hook_order::...`, `checkpoints::...` and so on (`gpu-run.sh` selects a file's tests by that
//! prefix). The `mnist` and `gpt` examples and the trainer benchmark are ignored tests of the module
//! `programs`: `gpu-run.sh` runs each alone (`--exact --ignored --nocapture`) with the program's
//! arguments in `GPU_CHECKS_ARGS` (split on whitespace).
//!
//! Not built by `cargo test` (`test = false` in `Cargo.toml`): its tests are the other files',
//! which run there already. `cargo test --test gpu_checks` builds and runs it.

// Each test file is a crate of its own with its own copy of `tests/common` (and the example's
// of `examples/common`): included unchanged, each module keeps its copy.
#![allow(clippy::duplicate_mod)]

#[path = "checkpoints.rs"]
mod checkpoints;
#[path = "ddp.rs"]
mod ddp;
#[path = "hook_order.rs"]
mod hook_order;
#[path = "precision.rs"]
mod precision;
#[path = "resume.rs"]
mod resume;

// The programs' own `main`s are not called here.
#[allow(dead_code)]
#[path = "../examples/gpt.rs"]
mod gpt_example;
#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist_example;
#[allow(dead_code)]
#[path = "../benches/trainer_overhead.rs"]
mod trainer_overhead;

/// The examples and the benchmark, as ignored tests that take their arguments from
/// `GPU_CHECKS_ARGS`.
mod programs {
    use std::process::ExitCode;

    /// The program arguments in `GPU_CHECKS_ARGS`, split on whitespace.
    fn args() -> Vec<String> {
        std::env::var("GPU_CHECKS_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// `cargo run --example mnist -- $GPU_CHECKS_ARGS`.
    #[test]
    #[ignore = "a program: scripts/gpu-run.sh runs it with its arguments in GPU_CHECKS_ARGS"]
    fn mnist_example() -> ExitCode {
        let program = std::iter::once("mnist".to_string()).chain(args());
        super::mnist_example::run(program.map(Into::into))
    }

    /// `cargo run --example gpt -- $GPU_CHECKS_ARGS`.
    #[test]
    #[ignore = "a program: scripts/gpu-run.sh runs it with its arguments in GPU_CHECKS_ARGS"]
    fn gpt_example() -> ExitCode {
        let program = std::iter::once("gpt".to_string()).chain(args());
        super::gpt_example::run(program.map(Into::into))
    }

    /// `cargo bench --bench trainer_overhead -- $GPU_CHECKS_ARGS` (without `--startup-reps`,
    /// whose child processes would be this test binary).
    #[test]
    #[ignore = "a program: scripts/gpu-run.sh runs it with its arguments in GPU_CHECKS_ARGS"]
    fn trainer_overhead() -> Result<(), Box<dyn std::error::Error>> {
        let args = args();
        if args.iter().any(|arg| arg.starts_with("--startup-reps")) {
            return Err("--startup-reps spawns the benchmark as a child process: not in this binary".into());
        }
        super::trainer_overhead::run(args)
    }
}
