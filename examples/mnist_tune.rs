//! Tunes the MNIST perceptron before training it: `Tuner::lr_find` picks Adam's learning rate
//! (the curve is drawn into `lr_find.svg` in the search's run directory), then the model trains
//! with it for the example's 10 epochs and is tested.
//!
//! `cargo run --release --example mnist_tune [-- EPOCHS]`

#[path = "common/lit_mnist.rs"]
mod lit_mnist;
#[path = "common/mnist.rs"]
mod mnist;

use burn_lightning::prelude::*;
use lit_mnist::{LitMnist, LitMnistHparams};
use mnist::MnistData;

/// What `update_attr` rebuilds the module with: its constructor.
impl LoadFromCheckpoint for LitMnist {
    fn from_hparams(hparams: &LitMnistHparams, device: &Device) -> Self {
        LitMnist::new(hparams, device)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(10);
    let device = Device::default();
    let model = LitMnist::new(&LitMnistHparams::new(), &device);
    let mut data = MnistData::new(MnistData::bundled_dir(), 64, 1000, 42);
    let mut trainer = Trainer::builder()
        .max_epochs(epochs)
        .seed(42)
        .device(device)
        .default_root_dir("target/mnist_tune")
        .build()?;

    let finder = Tuner::new(&mut trainer).lr_find(&model, &mut data, LrFind::new().min_lr(1e-6))?;
    let suggestion = finder
        .suggestion()
        .ok_or("the search gave too few points for a suggestion")?;
    println!(
        "lr_find: {} steps, suggested lr {suggestion:.3e} (plot: {})",
        finder.lrs().len(),
        finder.plot_path().map_or("none".into(), |p| p.display().to_string())
    );
    let model = finder.update_attr(model)?;

    let mut model = trainer.fit(model, &mut data)?;
    let metrics = &trainer.test(&mut model, &mut data)?[0];
    let accuracy = metrics.get("test_acc").ok_or("test_acc was not logged")?;
    println!("test accuracy with lr {suggestion:.3e}: {:.2}%", accuracy * 100.0);
    Ok(())
}
