//! Trains the MNIST perceptron with the Lightning trainer on the IDX files shipped in
//! `examples/data/mnist`, validating every epoch and testing at the end.
//!
//! `cargo run --release --example mnist [-- EPOCHS [DATA_DIR]]`

#[path = "common/lit_mnist.rs"]
mod lit_mnist;
#[path = "common/mnist.rs"]
mod mnist;

use burn_lightning::prelude::*;
use lit_mnist::{LitMnist, LitMnistHparams};
use mnist::MnistData;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    mnist::trace_hooks_from_env();
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let dir = args.next().map_or_else(MnistData::bundled_dir, Into::into);

    let device = Device::default();
    let hparams = LitMnistHparams::new();
    let model = LitMnist::new(&hparams, &device);
    let mut data = MnistData::new(dir, 64, 1000, 42);

    let mut trainer = Trainer::builder()
        .max_epochs(epochs)
        .seed(42)
        .device(device)
        .default_root_dir("target/mnist")
        .build()?;
    let mut model = trainer.fit(model, &mut data)?;
    let metrics = trainer.test(&mut model, &mut data)?;

    let accuracy = metrics.get("test_acc").ok_or("test_acc was not logged")?;
    println!(
        "test accuracy: {:.2}% (run directory: {})",
        accuracy * 100.0,
        trainer.log_dir().map_or("none".into(), |d| d.display().to_string())
    );
    Ok(())
}
