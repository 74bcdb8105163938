//! MNIST with manual optimization: `training_step` runs backward, clips the gradients by their
//! global norm and steps the optimizer itself, as Lightning's `automatic_optimization = False`.
//!
//! `cargo run --release --example mnist_manual [-- EPOCHS]`

#[path = "common/mnist.rs"]
mod mnist;

use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;
use mnist::{MnistBatch, MnistData, PIXELS};

/// A two-layer perceptron that drives its own optimizer.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ManualMnist {
    l1: Linear,
    act: Relu,
    l2: Linear,
    /// Adam's learning rate.
    #[hparam(default = 1e-3)]
    lr: f64,
    /// Gradients are scaled down when their global L2 norm exceeds this.
    #[hparam(default = 1.0)]
    max_grad_norm: f64,
}

impl ManualMnist {
    fn new(hparams: &ManualMnistHparams, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(PIXELS, 128).init(device),
            act: Relu::new(),
            l2: LinearConfig::new(128, 10).init(device),
            lr: hparams.lr,
            max_grad_norm: hparams.max_grad_norm,
        }
    }

    fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.l2.forward(self.act.forward(self.l1.forward(images)))
    }

    fn loss_and_accuracy(&self, batch: MnistBatch) -> (Tensor<1>, Tensor<1>) {
        mnist::loss_and_accuracy(self.forward(batch.images), batch.targets)
    }
}

#[lightning_module(manual_optimization)]
impl ManualMnist {
    /// Backward, clip by global norm, step: by hand.
    #[hook]
    fn training_step(&mut self, batch: MnistBatch, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let (loss, _) = self.loss_and_accuracy(batch);
        let mut grads = cx.manual_backward(self, loss.clone());
        if batch_idx.is_multiple_of(50) {
            // Reading the norm synchronizes with the device: do it now and then, not every step.
            cx.log("grad_norm", grads.norm(self));
        }
        grads.clip(self, GradientClip::Norm(self.max_grad_norm));
        cx.optimizer_step(self, grads);
        cx.log_with("train_loss", &loss, LogOptions::new().on_epoch(true).prog_bar(true));
        loss
    }

    #[hook]
    fn validation_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (loss, accuracy) = self.loss_and_accuracy(batch);
        cx.log_with("val_loss", loss, LogOptions::new().prog_bar(true));
        cx.log_with("val_acc", accuracy, LogOptions::new().prog_bar(true));
    }

    #[hook]
    fn test_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (_, accuracy) = self.loss_and_accuracy(batch);
        cx.log("test_acc", accuracy);
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new(), self.lr)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    mnist::trace_hooks_from_env();
    let epochs: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(5);
    let device = Device::default();
    let model = ManualMnist::new(&ManualMnistHparams::new(), &device);
    let mut data = MnistData::new(MnistData::bundled_dir(), 64, 1000, 7);
    let mut trainer = Trainer::builder()
        .max_epochs(epochs)
        .seed(7)
        .device(device)
        .default_root_dir("target/mnist_manual")
        .build()?;
    let mut model = trainer.fit(model, &mut data)?;
    // One `Metrics` per test dataloader.
    let metrics = &trainer.test(&mut model, &mut data)?[0];
    println!(
        "test accuracy: {:.2}%",
        metrics.get("test_acc").ok_or("test_acc was not logged")? * 100.0
    );
    Ok(())
}
