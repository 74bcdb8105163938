//! A loss or gradient that is not finite: `detect_anomaly(true)` ends the run with an error
//! naming the step and the hook (and the parameter, for a gradient); without it, the run goes
//! on and the first non-finite loss on a step that logs is a warning, given once and again at
//! the end of `fit`; a checkpoint whose weights are not finite never replaces the last finite
//! one.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};

/// What goes wrong, from batch `from` of the first epoch on.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    NanLoss,
    /// A NaN loss from global step `from` on (every epoch before it is finite).
    NanLossFromStep,
    /// A finite loss (0) whose gradient is not finite: the square root's slope at 0.
    InfiniteGradient,
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[module(skip)]
    fault: Option<(Fault, usize)>,
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let out = self.layer.forward(batch.x);
        let loss = (out.clone() - batch.y).powi_scalar(2).mean();
        match self.fault {
            Some((Fault::NanLoss, from)) if batch_idx >= from => loss.mul_scalar(f64::NAN),
            Some((Fault::NanLossFromStep, from)) if cx.global_step >= from => loss.mul_scalar(f64::NAN),
            Some((Fault::InfiniteGradient, from)) if batch_idx >= from => (out.clone() - out.detach()).sqrt().mean(),
            _ => loss,
        }
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn net(fault: Option<(Fault, usize)>) -> Net {
    Net {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
        fault,
    }
}

fn builder(dir: &std::path::Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(2)
        .log_every_n_steps(1)
}

fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(24, 4), None)
}

#[test]
fn detect_anomaly_stops_at_a_nan_loss_naming_the_step_and_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).detect_anomaly(true).build().unwrap();
    let failed = trainer.fit(net(Some((Fault::NanLoss, 3))), data()).unwrap_err();
    let message = failed.error.to_string();
    assert!(
        message.contains("`training_step`")
            && message.contains("NaN")
            && message.contains("global step 3 (epoch 0, batch 3)"),
        "{message}"
    );
    assert_eq!(
        trainer.global_step(),
        3,
        "the three good steps were taken, not the fourth"
    );
}

#[test]
fn detect_anomaly_names_the_parameter_whose_gradient_is_not_finite() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).detect_anomaly(true).build().unwrap();
    let failed = trainer
        .fit(net(Some((Fault::InfiniteGradient, 1))), data())
        .unwrap_err();
    let message = failed.error.to_string();
    assert!(
        message.contains("`backward`")
            && message.contains("the gradient of `layer.")
            && message.contains("global step 1"),
        "{message}"
    );
}

#[test]
fn without_detect_anomaly_the_run_goes_on_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let ((), warnings) = common::warnings_of(|| {
        let mut trainer = builder(dir.path()).build().unwrap();
        trainer.fit(net(Some((Fault::NanLoss, 2))), data()).unwrap();
        assert_eq!(trainer.global_step(), 12);
    });
    let warnings: Vec<_> = warnings
        .into_iter()
        .filter(|w| w.contains("is not finite") || w.contains("NaN"))
        .collect();
    // At the step, and again when `fit` ends.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("global step 2 (epoch 0, batch 2)") && warnings[0].contains("detect_anomaly"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("fit ended") && warnings[1].contains("global step 2 (epoch 0, batch 2)"),
        "{warnings:?}"
    );
}

/// Lightning's default `ModelCheckpoint` (the newest epoch only) removes the last checkpoint with
/// finite weights once one with NaN weights is written: here it stays, the NaN checkpoints
/// replace each other, and `fit` ends with a warning naming the first step whose loss was NaN.
#[test]
fn a_nan_loss_never_leaves_only_checkpoints_with_nan_weights() {
    let dir = tempfile::tempdir().unwrap();
    // 6 batches an epoch; the loss is NaN from step 8 (epoch 1) on.
    let ((), warnings) = common::warnings_of(|| {
        let mut trainer = builder(dir.path()).max_epochs(3).build().unwrap();
        trainer.fit(net(Some((Fault::NanLossFromStep, 8))), data()).unwrap();
    });
    let checkpoints = dir.path().join("lightning_logs/version_0/checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["epoch=0-step=6.ckpt", "epoch=2-step=18.ckpt"]);
    let finite = Checkpoint::load(&checkpoints.join("epoch=0-step=6.ckpt"))
        .unwrap()
        .restore_module(net(None))
        .unwrap();
    let weights: Vec<f32> = finite.layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
    assert!(weights.iter().all(|w| w.is_finite()));

    assert!(
        warnings
            .iter()
            .any(|w| w.contains("kept") && w.contains("epoch=0-step=6.ckpt")),
        "{warnings:?}"
    );
    let last = warnings.last().unwrap();
    assert!(
        last.contains("fit ended") && last.contains("NaN at global step 8"),
        "{warnings:?}"
    );
}
