//! Trains the MNIST perceptron under each `precision` value and prints the test accuracy and
//! the training time of each: the figures of the README's "Precision" section.
//!
//! `cargo run --release --example mnist_precision [-- EPOCHS [PRECISION,..]]`
//! (default: 3 epochs, every precision the device's backend supports).

#[path = "common/mnist.rs"]
mod mnist;

use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;
use mnist::{MnistBatch, MnistData, PIXELS};
use std::time::Instant;

impl CastFloats for MnistBatch {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        Self {
            images: self.images.cast_floats(dtype),
            ..self
        }
    }
}

/// The perceptron of `examples/mnist.rs` (784-128-10, Adam), casting its batches for the
/// precision it runs in.
#[lightning_module]
#[derive(Module, Debug)]
pub struct PrecisionMnist {
    l1: Linear,
    act: Relu,
    l2: Linear,
}

impl PrecisionMnist {
    fn new(device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(PIXELS, 128).init(device),
            act: Relu::new(),
            l2: LinearConfig::new(128, 10).init(device),
        }
    }

    /// Loss and accuracy; the loss is computed from `f32` logits, as torch's autocast computes
    /// cross-entropy in `f32`.
    fn loss_and_accuracy(&self, batch: MnistBatch) -> (Tensor<1>, Tensor<1>) {
        let logits = self.l2.forward(self.act.forward(self.l1.forward(batch.images)));
        mnist::loss_and_accuracy(logits.cast(FloatDType::F32), batch.targets)
    }
}

#[lightning_module]
impl PrecisionMnist {
    #[hook]
    fn training_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let (loss, _) = self.loss_and_accuracy(cx.cast_input(batch));
        cx.log_with("train_loss", &loss, LogOptions::new().on_epoch(true));
        loss
    }

    #[hook]
    fn validation_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (loss, accuracy) = self.loss_and_accuracy(cx.cast_input(batch));
        cx.log("val_loss", loss);
        cx.log("val_acc", accuracy);
    }

    #[hook]
    fn test_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (loss, accuracy) = self.loss_and_accuracy(cx.cast_input(batch));
        cx.log("test_loss", loss);
        cx.log("test_acc", accuracy);
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().init(), 1e-3)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let device = Device::default();
    let precisions = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<Vec<Precision>, _>>()?,
        None => Precision::supported_on(&device),
    };
    println!("| precision | test accuracy | test loss | fit time ({epochs} epochs) |");
    println!("|---|---|---|---|");
    for precision in precisions {
        let mut data = MnistData::new(MnistData::bundled_dir(), 64, 1000, 42);
        let mut trainer = Trainer::builder()
            .max_epochs(epochs)
            .seed(42)
            .device(device.clone())
            .precision(precision)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .enable_checkpointing(false)
            .enable_logger(false)
            .default_root_dir("target/mnist_precision")
            .build()?;
        let started = Instant::now();
        let mut model = trainer.fit(PrecisionMnist::new(&device), &mut data)?;
        let fit_time = started.elapsed();
        let metrics = trainer.test(&mut model, &mut data)?;
        println!(
            "| `{precision}` | {:.2}% | {:.4} | {:.1} s |",
            metrics.get("test_acc").unwrap_or(f64::NAN) * 100.0,
            metrics.get("test_loss").unwrap_or(f64::NAN),
            fit_time.as_secs_f64()
        );
    }
    Ok(())
}
