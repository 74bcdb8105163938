//! A loss or gradient that is not finite: `detect_anomaly(true)` ends the run with an error
//! naming the step and the hook (and the parameter, for a gradient); without it, the run goes
//! on and the first non-finite loss on a step that logs is a warning, given once.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};

/// What goes wrong, from batch `from` of the first epoch on.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    NanLoss,
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
    fn training_step(&self, batch: Pair, batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        let out = self.layer.forward(batch.x);
        let loss = (out.clone() - batch.y).powi_scalar(2).mean();
        match self.fault {
            Some((Fault::NanLoss, from)) if batch_idx >= from => loss.mul_scalar(f64::NAN),
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
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("global step 2 (epoch 0, batch 2)") && warnings[0].contains("detect_anomaly"),
        "{warnings:?}"
    );
}
