//! The MNIST classifier as a LightningModule: a two-layer perceptron trained with Adam, its
//! accuracy measured by metric objects (torchmetrics' `Accuracy`).
#![allow(dead_code)]

use super::mnist::{MnistBatch, PIXELS};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn::optim::lr_scheduler::{
    LrSchedulerConfig as BurnScheduler, cosine::CosineAnnealingLrSchedulerConfig, linear::LinearLrSchedulerConfig,
    sequential::SequentialLrSchedulerConfig,
};
use burn_lightning::metrics::Accuracy;
use burn_lightning::prelude::*;
use serde::{Deserialize, Serialize};

/// The learning-rate schedule of [`LitMnist`] (`--model.schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The learning rate `lr` throughout.
    Constant,
    /// A linear warm-up from `lr / 100` over `warmup_steps`, then a cosine decay to 0 over
    /// `decay_steps`, stepped after every optimizer step.
    Cosine,
}

/// Classifies MNIST digits with a two-layer perceptron (784-`hidden`-10).
#[lightning_module]
#[derive(Module, Debug)]
pub struct LitMnist {
    l1: Linear,
    act: Relu,
    l2: Linear,
    val_acc: Accuracy,
    test_acc: Accuracy,
    /// Width of the hidden layer.
    #[hparam(default = 128)]
    hidden: usize,
    /// Adam's learning rate.
    #[hparam(default = 1e-3)]
    lr: f64,
    /// Learning-rate schedule: `constant`, or `cosine` (warm-up, then cosine decay, per step).
    #[hparam(default = Schedule::Constant)]
    schedule: Schedule,
    /// Optimizer steps of the cosine schedule's linear warm-up.
    #[hparam(default = 100)]
    warmup_steps: usize,
    /// Optimizer steps of the cosine schedule's decay after the warm-up (10 epochs of 110
    /// batches is 1,100 steps; divide by `accumulate_grad_batches`).
    #[hparam(default = 1000)]
    decay_steps: usize,
}

impl LitMnist {
    /// A fresh model (its weights are drawn on first use, from the trainer's seed).
    pub fn new(hparams: &LitMnistHparams, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(PIXELS, hparams.hidden).init(device),
            act: Relu::new(),
            l2: LinearConfig::new(hparams.hidden, 10).init(device),
            val_acc: Accuracy::multiclass(10),
            test_acc: Accuracy::multiclass(10),
            hidden: hparams.hidden,
            lr: hparams.lr,
            schedule: hparams.schedule,
            warmup_steps: hparams.warmup_steps,
            decay_steps: hparams.decay_steps,
        }
    }

    /// The `cosine` schedule: linear warm-up to `lr`, then cosine decay, stepped every
    /// optimizer step.
    fn warmup_cosine(&self) -> LrSchedulerConfig {
        let (warmup, decay) = (self.warmup_steps.max(1), self.decay_steps.max(1));
        LrSchedulerConfig::new(move |lr| {
            SequentialLrSchedulerConfig::new(
                vec![
                    BurnScheduler::Linear(LinearLrSchedulerConfig::new(lr / 100.0, lr, warmup)),
                    BurnScheduler::Cosine(CosineAnnealingLrSchedulerConfig::new(lr, decay)),
                ],
                vec![warmup],
            )
            .init()
        })
        .interval(Interval::Step)
    }

    /// Class scores `[n, 10]` of images `[n, 784]`.
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.l2.forward(self.act.forward(self.l1.forward(images)))
    }

    /// The class scores and cross-entropy loss of a batch.
    pub fn logits_and_loss(&self, batch: &MnistBatch) -> (Tensor<2>, Tensor<1>) {
        let logits = self.forward(batch.images.clone());
        let loss = super::mnist::cross_entropy(logits.clone(), batch.targets.clone());
        (logits, loss)
    }
}

#[lightning_module]
impl LitMnist {
    /// Cross-entropy on one batch.
    #[hook]
    fn training_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let (_, loss) = self.logits_and_loss(&batch);
        cx.log_with("train_loss", &loss, LogOptions::new().on_epoch(true).prog_bar(true));
        loss
    }

    /// Validation loss, averaged over the validation set, and accuracy: the metric object adds
    /// each batch on the device and is computed (then reset) when the epoch ends.
    #[hook]
    fn validation_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (logits, loss) = self.logits_and_loss(&batch);
        self.val_acc.update(&logits, &batch.targets);
        cx.log_with("val_loss", loss, LogOptions::new().prog_bar(true));
        cx.log_with("val_acc", &self.val_acc, LogOptions::new().prog_bar(true));
    }

    /// Test loss and accuracy.
    #[hook]
    fn test_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (logits, loss) = self.logits_and_loss(&batch);
        self.test_acc.update(&logits, &batch.targets);
        cx.log("test_loss", loss);
        cx.log("test_acc", &self.test_acc);
    }

    /// Predicted digits of a batch.
    #[hook]
    fn predict_step(&self, batch: MnistBatch, _batch_idx: usize) -> Tensor<1, Int> {
        self.forward(batch.images).argmax(1).squeeze_dim::<1>(1)
    }

    /// Adam, with the learning-rate schedule `schedule` names.
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let optimizer = OptimizerConfig::new(AdamConfig::new(), self.lr);
        match self.schedule {
            Schedule::Constant => optimizer,
            Schedule::Cosine => optimizer.with_scheduler(self.warmup_cosine()),
        }
    }
}
