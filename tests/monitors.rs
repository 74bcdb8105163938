//! The learning-rate monitor and the gradient-norm logger send what Lightning's send, on the
//! steps Lightning sends them; evaluation loops send their per-step values after every batch.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::exponential::ExponentialLrSchedulerConfig;
use burn_lightning::prelude::*;
use common::recording::{Recording, metric_calls};
use common::{Pair, pair_loader};

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[module(skip)]
    scheduler: Option<Interval>,
}

impl Net {
    fn new(scheduler: Option<Interval>) -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            scheduler,
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        self.loss(batch)
    }
    #[hook]
    fn validation_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        cx.log_with(
            "val_batch",
            batch_idx as f64,
            LogOptions::new().on_step(true).on_epoch(false),
        );
        cx.log("val_loss", self.loss(batch));
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let config = OptimizerConfig::new(SgdConfig::new().init(), 0.1);
        match self.scheduler {
            // Halves the rate at every step of the schedule: 0.1, 0.05, 0.025, ...
            Some(interval) => config.with_scheduler(
                LrSchedulerConfig::new(|lr| ExponentialLrSchedulerConfig::new(lr, 0.5).init()).interval(interval),
            ),
            None => config,
        }
    }
}

/// 4 training batches and 2 validation batches per epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(8, 4)))
}

fn builder(dir: &std::path::Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .max_epochs(2)
        .log_every_n_steps(2)
}

/// `(step, value)` of every record holding `key`, and whether those records held `epoch`.
fn series(calls: &[common::recording::Call], key: &str) -> (Vec<(usize, f64)>, bool) {
    let records: Vec<_> = metric_calls(calls)
        .into_iter()
        .filter(|(_, m)| m.contains_key(key))
        .collect();
    let with_epoch = records.iter().any(|(_, m)| m.contains_key("epoch"));
    (records.into_iter().map(|(s, m)| (s, m[key])).collect(), with_epoch)
}

fn close(a: &[(usize, f64)], b: &[(usize, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((s1, v1), (s2, v2))| s1 == s2 && (v1 - v2).abs() < 1e-9)
}

#[test]
fn the_learning_rate_of_a_step_schedule_is_logged_at_every_logging_step() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path())
        .logger(logger)
        .callback(LearningRateMonitor::new())
        .build()
        .unwrap();
    trainer.fit(Net::new(Some(Interval::Step)), data()).unwrap();
    let (lrs, with_epoch) = series(&calls.lock().unwrap(), "lr-Optimizer");
    // Lightning: at the start of batches 1, 3, 5, 7 (the batches that log with
    // `log_every_n_steps=2`), the rate that batch's step uses, at the step count before it;
    // not at epoch starts (the scheduler steps by step), and without `epoch`.
    let expected: Vec<(usize, f64)> = [1, 3, 5, 7].iter().map(|&k| (k, 0.1 * 0.5f64.powi(k as i32))).collect();
    assert!(close(&lrs, &expected), "{lrs:?}");
    assert!(!with_epoch);
    let last = trainer.callback_metrics().get("lr-Optimizer");
    assert_eq!(
        last,
        Some(0.1 * 0.5f64.powi(7)),
        "in callback_metrics too, as Lightning puts it there"
    );
}

#[test]
fn the_learning_rate_of_an_epoch_schedule_is_logged_at_every_epoch_start() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path())
        .logger(logger)
        .callback(LearningRateMonitor::new())
        .build()
        .unwrap();
    trainer.fit(Net::new(Some(Interval::Epoch)), data()).unwrap();
    let (lrs, _) = series(&calls.lock().unwrap(), "lr-Optimizer");
    assert!(close(&lrs, &[(0, 0.1), (4, 0.05)]), "{lrs:?}");
}

#[test]
fn without_a_scheduler_the_rate_is_logged_at_epoch_starts_and_logging_steps_unless_an_interval_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path())
        .logger(logger)
        .callback(LearningRateMonitor::new())
        .build()
        .unwrap();
    trainer.fit(Net::new(None), data()).unwrap();
    let steps: Vec<usize> = series(&calls.lock().unwrap(), "lr-Optimizer")
        .0
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(steps, [0, 1, 3, 4, 5, 7]);

    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path())
        .logger(logger)
        .callback(LearningRateMonitor::new().logging_interval(Interval::Epoch))
        .build()
        .unwrap();
    trainer.fit(Net::new(Some(Interval::Step)), data()).unwrap();
    let (lrs, _) = series(&calls.lock().unwrap(), "lr-Optimizer");
    assert!(close(&lrs, &[(0, 0.1), (4, 0.1 * 0.5f64.powi(4))]), "{lrs:?}");
}

#[test]
fn a_learning_rate_monitor_without_a_logger_is_an_error_naming_the_logger() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .enable_logger(false)
        .callback(LearningRateMonitor::new())
        .build()
        .unwrap();
    let error = trainer
        .fit(Net::new(None), data())
        .unwrap_err()
        .into_error()
        .to_string();
    assert!(
        error.contains("logger") && error.contains("LearningRateMonitor"),
        "{error}"
    );
}

#[test]
fn track_grad_norm_logs_lightnings_keys_on_logging_steps_only() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path()).logger(logger).track_grad_norm(2.0).build().unwrap();
    trainer.fit(Net::new(None), data()).unwrap();
    let calls = calls.lock().unwrap();
    let records: Vec<_> = metric_calls(&calls)
        .into_iter()
        .filter(|(_, m)| m.contains_key("grad_2.0_norm_total"))
        .collect();
    let steps: Vec<usize> = records.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [1, 3, 5, 7], "the steps that log, and no others");
    for (_, m) in &records {
        let (w, b) = (m["grad_2.0_norm/layer.weight"], m["grad_2.0_norm/layer.bias"]);
        assert!(w > 0.0 && b > 0.0);
        let total = m["grad_2.0_norm_total"];
        assert!((total - (w * w + b * b).sqrt()).abs() < 1e-4 * total, "{m:?}");
    }
    // Zero and negative norms are refused when the trainer is built.
    let error = builder(dir.path())
        .track_grad_norm(0.0)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("track_grad_norm"), "{error}");
    let error = builder(dir.path())
        .callback(GradientNormMonitor::new(-1.0))
        .build()
        .and_then(|mut t| t.fit(Net::new(None), data()).map_err(|e| e.into_error()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("positive"), "{error}");
}

#[test]
fn validation_step_values_reach_the_loggers_after_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path()).logger(logger).build().unwrap();
    let mut model = trainer.fit(Net::new(None), data()).unwrap();
    let (values, with_epoch) = series(&calls.lock().unwrap(), "val_batch");
    // Two validation runs of two batches, at the count of validation batches logged (the
    // sanity check's are not sent), without `epoch`, as Lightning's `update_eval_step_metrics`.
    assert!(close(&values, &[(0, 0.0), (1, 1.0), (2, 0.0), (3, 1.0)]), "{values:?}");
    assert!(!with_epoch);

    // `validate` starts counting again.
    calls.lock().unwrap().clear();
    trainer.validate(&mut model, data()).unwrap();
    let (values, _) = series(&calls.lock().unwrap(), "val_batch");
    assert!(close(&values, &[(0, 0.0), (1, 1.0)]), "{values:?}");
    // Lightning's callback metrics take evaluation values per epoch only; the loggers had it.
    assert_eq!(trainer.callback_metrics().get("val_batch"), None);
    assert_eq!(trainer.logged_metrics().get("val_batch"), Some(1.0));
}
