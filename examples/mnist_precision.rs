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
        OptimizerConfig::new(AdamConfig::new(), 1e-3)
    }
}

/// CPU time of this process so far (all threads, also ended ones), in seconds, from
/// `/proc/self/stat` (Linux; `None` elsewhere). Less disturbed than the wall clock by other
/// processes on a busy machine.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses: utime and stime are the 12th
    // and 13th, in clock ticks (100 per second on Linux).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let device = Device::default();
    let precisions = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<Vec<Precision>, _>>()?,
        None => Precision::supported_on(&device),
    };
    println!("| precision | test accuracy | test loss | fit, wall ({epochs} epochs) | fit, CPU |");
    println!("|---|---|---|---|---|");
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
        let (started, cpu_started) = (Instant::now(), process_cpu_seconds());
        let mut model = trainer.fit(PrecisionMnist::new(&device), &mut data)?;
        let fit_time = started.elapsed();
        let cpu = process_cpu_seconds().zip(cpu_started).map(|(end, start)| end - start);
        let metrics = &trainer.test(&mut model, &mut data)?[0];
        println!(
            "| `{precision}` | {:.2}% | {:.4} | {:.2} s | {} |",
            metrics.get("test_acc").unwrap_or(f64::NAN) * 100.0,
            metrics.get("test_loss").unwrap_or(f64::NAN),
            fit_time.as_secs_f64(),
            cpu.map_or("n/a".into(), |cpu| format!("{cpu:.2} s"))
        );
    }
    Ok(())
}
