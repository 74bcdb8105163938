//! Loggers receive what Lightning sends them: the hyperparameters once per run, step values
//! every `log_every_n_steps` batches (with `epoch`), epoch values when a loop's epoch ends,
//! nothing logged with `logger(false)` or during the sanity check, and `finalize` when the run
//! ends, with its status. The first logger's directory is the run directory.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::recording::{Call, Recording};
use common::{Pair, pair_loader};

/// Logs `train_loss` per step (and `train_mean` both ways), `hidden` with `logger(false)`,
/// `val_loss` in validation, `test_loss` in test; fails in `on_train_epoch_end` of epoch
/// `fail_at` when set.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[hparam(default = 0.05)]
    lr: f64,
    #[module(skip)]
    fail_at: Option<usize>,
}

impl Net {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            lr: 0.05,
            fail_at: None,
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = self.loss(batch);
        cx.log("train_loss", &loss);
        cx.log_with(
            "train_mean",
            batch_idx as f64,
            LogOptions::new().on_step(true).on_epoch(true).prog_bar(true),
        );
        cx.log_with("hidden", 1.0, LogOptions::new().logger(false));
        loss
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("test_loss", self.loss(batch));
    }
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) -> Result<(), Error> {
        if self.fail_at == Some(cx.current_epoch) {
            return Err(Error::Data("a failure the test asked for".into()));
        }
        Ok(())
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

/// 4 training batches and 1 validation batch per epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
}

fn metrics(calls: &[Call]) -> Vec<(usize, Vec<String>)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Metrics(step, m) => Some((*step, m.keys().cloned().collect())),
            _ => None,
        })
        .collect()
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn loggers_get_step_values_every_n_steps_and_epoch_values_at_epoch_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(2)
        .log_every_n_steps(3)
        .logger(logger)
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.first(), Some(&Call::Hparams(serde_json::json!({"lr": 0.05}))));
    assert_eq!(calls.last(), Some(&Call::Finalize("success".into())));
    let step = keys(&["epoch", "train_loss", "train_mean_step"]);
    let train_epoch = keys(&["epoch", "train_mean_epoch"]);
    let validation = keys(&["epoch", "val_loss"]);
    // Batches 0..8 step the optimizer; steps 2 and 5 are every third. Validation ends each
    // epoch at the step of its last batch (3, 7), as Lightning's, before the training epoch's
    // values at that same step; no sanity check values, no `hidden`.
    assert_eq!(
        metrics(&calls),
        [
            (2, step.clone()),
            (3, validation.clone()),
            (3, train_epoch.clone()),
            (5, step),
            (7, validation),
            (7, train_epoch),
        ]
    );
    let epochs: Vec<f64> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Metrics(_, m) => m.get("epoch").copied(),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    // Every log is followed by a save, as Lightning's connector does.
    let saves = calls.iter().filter(|c| **c == Call::Save).count();
    assert_eq!(saves, 6);

    // The first logger's directory is the run directory: checkpoints go there.
    let run_dir = dir.path().join("recorded/version_0");
    assert_eq!(trainer.log_dir(), Some(run_dir.as_path()));
    assert!(run_dir.join("checkpoints/epoch=1-step=8.ckpt").exists());
    assert!(run_dir.join("hparams.yaml").exists());

    let logged = trainer.logged_metrics();
    assert!(logged.get("val_loss").is_some() && logged.get("train_mean_epoch").is_some());
    assert!(
        logged.get("hidden").is_none(),
        "`logger(false)` keeps it from the loggers"
    );
    assert!(
        trainer.callback_metrics().get("hidden").is_some(),
        "but not from callback_metrics"
    );
    assert_eq!(
        trainer.progress_bar_metrics().keys().collect::<Vec<_>>(),
        ["train_mean_epoch", "train_mean_step"]
    );
}

#[test]
fn validate_and_test_log_their_epoch_values_at_the_trainers_step() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(1)
        .logger(logger)
        .build()
        .unwrap();
    let mut model = trainer.fit(Net::new(), data()).unwrap();
    calls.lock().unwrap().clear();
    trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(metrics(&calls), [(4, keys(&["epoch", "test_loss"]))]);
    assert_eq!(
        trainer.logged_metrics().keys().collect::<Vec<_>>(),
        ["epoch", "test_loss"]
    );
    assert_eq!(calls.last(), Some(&Call::Finalize("success".into())));
}

#[test]
fn a_failed_run_finalizes_its_loggers_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let model = Net {
        fail_at: Some(0),
        ..Net::new()
    };
    let result = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(2)
        .logger(logger)
        .build()
        .unwrap()
        .fit(model, data());
    assert!(result.is_err());
    assert_eq!(calls.lock().unwrap().last(), Some(&Call::Finalize("failed".into())));
}

#[test]
fn without_loggers_nothing_is_logged_and_log_every_n_steps_must_be_positive() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(1)
        .enable_logger(false)
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert!(trainer.loggers().is_empty());
    // Lightning's `logged_metrics` without a logger: only the validation's epoch values.
    let logged: Vec<&String> = trainer.logged_metrics().keys().collect();
    assert_eq!(logged, ["val_loss"]);
    let error = Trainer::<Net>::builder().log_every_n_steps(0).build().err().unwrap();
    assert!(error.to_string().contains("`log_every_n_steps`"), "{error}");
}

/// Lightning's `trainer.log_dir` is `default_root_dir` without a logger: no `version_N`, no
/// `hparams.yaml`; checkpoints go to `<default_root_dir>/checkpoints`, `report.html` and the
/// profiler's report beside.
#[test]
fn without_a_logger_a_fit_writes_no_version_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(1)
        .enable_logger(false)
        .profiler("simple")
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(trainer.log_dir(), Some(dir.path()));
    assert!(!dir.path().join("lightning_logs").exists());
    assert!(!dir.path().join("hparams.yaml").exists());
    assert!(dir.path().join("checkpoints/epoch=0-step=4.ckpt").is_file());
    assert!(dir.path().join("report.html").is_file());
    // Where the report lands is the point here, not its rows: they come from `tracing` spans,
    // whose per-callsite interest another test's subscriber on another thread of this binary
    // can turn off for a moment (CI saw a report without `training_step`); tests/profiler.rs
    // checks the rows.
    let profile = std::fs::read_to_string(dir.path().join("fit-profiler.txt")).unwrap();
    assert!(profile.starts_with("FIT Profiler Report"), "{profile}");
    // Nothing at all with checkpointing and the report off too.
    let empty = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(empty.path())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(1)
        .enable_logger(false)
        .enable_checkpointing(false)
        .enable_report(false)
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(common::files_under(empty.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_csv_logger_writes_lightnings_metrics_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(2)
        .log_every_n_steps(2)
        .logger(CsvLogger::new(dir.path()))
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    let run_dir = dir.path().join("lightning_logs/version_0");
    assert_eq!(trainer.log_dir(), Some(run_dir.as_path()));
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("epoch,step,train_loss,train_mean_epoch,train_mean_step,val_loss"),
        "{csv}"
    );
    // One row per log call: step values at steps 1, 3, 5, 7, validation and the training epoch
    // values at the step of each epoch's last batch, 3 and 7; `epoch` on every row.
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let steps: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        steps,
        [
            ("0", "1"),
            ("0", "3"),
            ("0", "3"),
            ("0", "3"),
            ("1", "5"),
            ("1", "7"),
            ("1", "7"),
            ("1", "7")
        ]
    );
    // The step rows hold `train_mean_step` (the batch index) and no epoch value.
    assert_eq!((rows[0][4], rows[0][3]), ("1", ""));
    assert_eq!(
        (rows[3][3], rows[3][4]),
        ("1.5", ""),
        "the epoch mean of batch indices 0..4"
    );
    assert!(run_dir.join("hparams.yaml").exists());
}

/// A CSV logger whose disk "fills up" from step `fail_from` on.
struct FailingLogger {
    inner: CsvLogger,
    fail_from: usize,
}

impl burn_lightning::Logger for FailingLogger {
    fn name(&self) -> &str {
        "failing"
    }
    fn log_dir(&mut self) -> Result<std::path::PathBuf, Error> {
        self.inner.log_dir()
    }
    fn log_hyperparams(&mut self, hparams: &JsonValue) -> Result<(), Error> {
        self.inner.log_hyperparams(hparams)
    }
    fn log_metrics(&mut self, metrics: &std::collections::BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        if step >= self.fail_from {
            let path = self.inner.log_dir()?.join("metrics.csv");
            return Err(Error::Io {
                action: "append to",
                path,
                source: std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"),
            });
        }
        self.inner.log_metrics(metrics, step)
    }
    fn save(&mut self) -> Result<(), Error> {
        self.inner.save()
    }
    fn finalize(&mut self, status: &str) -> Result<(), Error> {
        self.inner.finalize(status)
    }
}

#[test]
fn a_logger_failing_mid_run_ends_fit_with_its_file_and_keeps_the_checkpoints_and_rows_written() {
    let dir = tempfile::tempdir().unwrap();
    let logger = FailingLogger {
        inner: CsvLogger::new(dir.path()),
        fail_from: 6,
    };
    let result = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(3)
        .log_every_n_steps(1)
        .logger(logger)
        .build()
        .unwrap()
        .fit(Net::new(), data());
    let error = result.expect_err("the logger failed").into_error().to_string();
    assert!(
        error.contains("metrics.csv") && error.contains("no space left"),
        "{error}"
    );
    // Epoch 0 ended (steps 0..4) before the failure in epoch 1: its checkpoint and rows stay.
    let run_dir = dir.path().join("lightning_logs/version_0");
    assert!(
        run_dir.join("checkpoints/epoch=0-step=4.ckpt").exists(),
        "{:?}",
        common::files_under(&run_dir)
    );
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert!(csv.lines().count() > 4, "{csv}");
}

#[test]
fn an_unwritable_root_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the run directory's parent should be.
    let root = dir.path().join("not-a-directory");
    std::fs::write(&root, b"").unwrap();
    let error = Trainer::builder()
        .default_root_dir(&root)
        .enable_progress_bar(false)
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(), data())
        .expect_err("no run directory can be made")
        .into_error()
        .to_string();
    assert!(error.contains("not-a-directory"), "{error}");
}
