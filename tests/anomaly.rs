//! A loss or gradient that is not finite: `detect_anomaly(true)` ends the run with an error
//! naming the step and the hook (and the parameter, for a gradient); without it, the run goes
//! on and the first non-finite loss on a step that logs is a warning, given once.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::sync::{Arc, Mutex};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

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

/// Counts the warnings about losses that are not finite.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            if message.0.contains("is not finite") || message.0.contains("NaN") {
                self.0.lock().unwrap().push(message.0);
            }
        }
    }
}

#[test]
fn without_detect_anomaly_the_run_goes_on_and_warns_once() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let dir = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        let mut trainer = builder(dir.path()).build().unwrap();
        trainer.fit(net(Some((Fault::NanLoss, 2))), data()).unwrap();
        assert_eq!(trainer.global_step(), 12);
    });
    let warnings = warnings.0.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("global step 2 (epoch 0, batch 2)") && warnings[0].contains("detect_anomaly"),
        "{warnings:?}"
    );
}
