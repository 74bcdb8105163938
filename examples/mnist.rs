//! Trains the MNIST perceptron with the Lightning trainer on the IDX files shipped in
//! `examples/data/mnist`, validating every epoch and testing at the end, driven by
//! `LightningCli`.
//!
//! `cargo run --example mnist` trains 10 epochs then tests (`fit` then `test`);
//! `cargo run --example mnist -- fit --trainer.max_epochs 3 --model.hidden 256`;
//! `-- fit --model.schedule cosine --trainer.accumulate_grad_batches 4`; `-- --help` lists
//! every option.

#[path = "common/lit_mnist.rs"]
mod lit_mnist;
#[path = "common/mnist.rs"]
mod mnist;

use burn_lightning::cli::Command;
use burn_lightning::prelude::*;
use lit_mnist::LitMnist;
use mnist::MnistData;
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    run(std::env::args_os())
}

/// The example with its command line (program name first); also run by the GPU checks'
/// harness (`tests/gpu_checks.rs`).
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    mnist::trace_hooks_from_env();
    let cli = LightningCli::<LitMnist, MnistData>::new(LitMnist::new)
        .trainer_defaults(
            TrainerConfig::default()
                .max_epochs(10)
                .seed(42)
                .default_root_dir("target/mnist"),
        )
        .without_subcommand([Command::Fit, Command::Test])
        .tunable_batch_size();
    let run = match cli.run_from(args) {
        Ok(Some(run)) => run,
        Ok(None) => return ExitCode::SUCCESS,
        Err(error) => return error.exit(),
    };
    // One `Metrics` per test dataloader: this datamodule has one.
    if let Some([metrics]) = run.test_metrics.as_deref() {
        let Some(accuracy) = metrics.get("test_acc") else {
            eprintln!("error: test_acc was not logged");
            return ExitCode::FAILURE;
        };
        println!(
            "test accuracy: {:.2}% (run directory: {})",
            accuracy * 100.0,
            run.trainer.log_dir().map_or("none".into(), |d| d.display().to_string())
        );
    }
    ExitCode::SUCCESS
}
