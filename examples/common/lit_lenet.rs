//! A LeNet-5-sized convolutional MNIST classifier as a LightningModule, trained with Adam: the
//! heavier of the benchmark's two models (`benches/trainer_overhead.rs`), where compute dominates.
#![allow(dead_code)]

use super::mnist::{MnistBatch, PIXELS};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::AdamConfig;
use burn_lightning::metrics::Accuracy;
use burn_lightning::prelude::*;

/// LeNet-5 with ReLU and max pooling: conv 5x5 (1→6, padded) → pool → conv 5x5 (6→16) → pool →
/// 400-120-84-10.
#[lightning_module]
#[derive(Module, Debug)]
pub struct LitLenet {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    act: Relu,
    val_acc: Accuracy,
    /// Adam's learning rate.
    #[hparam(default = 1e-3)]
    lr: f64,
}

impl LitLenet {
    /// A fresh model (its weights are drawn on first use, from the trainer's seed).
    pub fn new(hparams: &LitLenetHparams, device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([1, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(16 * 5 * 5, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            fc3: LinearConfig::new(84, 10).init(device),
            act: Relu::new(),
            val_acc: Accuracy::multiclass(10),
            lr: hparams.lr,
        }
    }

    /// Class scores `[n, 10]` of images `[n, 784]`.
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        let [n, pixels] = images.dims();
        debug_assert_eq!(pixels, PIXELS);
        let x = images.reshape([n, 1, 28, 28]);
        let x = self.pool.forward(self.act.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.act.forward(self.conv2.forward(x)));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.act.forward(self.fc1.forward(x));
        let x = self.act.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

#[lightning_module]
impl LitLenet {
    /// Cross-entropy on one batch.
    #[hook]
    fn training_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = super::mnist::cross_entropy(self.forward(batch.images), batch.targets);
        cx.log_with("train_loss", &loss, LogOptions::new().on_epoch(true).prog_bar(true));
        loss
    }

    /// Validation loss, averaged over the validation set, and accuracy (a metric object).
    #[hook]
    fn validation_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let logits = self.forward(batch.images);
        self.val_acc.update(&logits, &batch.targets);
        let loss = super::mnist::cross_entropy(logits, batch.targets);
        cx.log_with("val_loss", loss, LogOptions::new().prog_bar(true));
        cx.log_with("val_acc", &self.val_acc, LogOptions::new().prog_bar(true));
    }

    /// Adam with a constant learning rate.
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new(), self.lr)
    }
}
