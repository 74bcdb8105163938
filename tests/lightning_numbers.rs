//! The numbers a script reads back, against PyTorch Lightning's for the same runs
//! (`tests/data/lightning_numbers.json`, written by `scripts/lightning_numbers.sh` with the pinned
//! pytorch-lightning): the loop limits `max_epochs`/`max_steps` resolve to, the steps at which
//! `metrics.csv` gets its rows (validation values share the step of the epoch's last training
//! row; under manual optimization every batch counts), and what `validate` and `test` return
//! and leave in `logged_metrics`.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn lightning() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/lightning_numbers.json"
    ))
    .expect("tests/data/lightning_numbers.json (scripts/lightning_numbers.sh writes it)");
    serde_json::from_str(&text).unwrap()
}

/// Lightning's regressor of the script: `train_loss` logged both ways, `val_loss` and
/// `test_loss`, and `val_hidden` and `test_hidden` with `logger=False`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Regressor {
    layer: Linear,
    /// Set: `on_fit_start` records the `max_epochs` / `max_steps` it sees there and stops.
    #[module(skip)]
    limits: Option<SeenLimits>,
}

/// The `max_epochs` and `max_steps` `on_fit_start` saw.
type SeenLimits = Arc<Mutex<Option<(Option<usize>, Option<usize>)>>>;

impl Regressor {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2)
                .with_initializer(Initializer::Constant { value: 0.01 })
                .init(&Device::default()),
            limits: None,
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Regressor {
    #[hook]
    fn on_fit_start(&mut self, cx: &mut HookContext) {
        if let Some(limits) = &self.limits {
            *limits.lock().unwrap() = Some((cx.max_epochs, cx.max_steps));
            cx.stop();
        }
    }
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = self.loss(batch);
        cx.log_with(
            "train_loss",
            loss.clone(),
            LogOptions::new().on_step(true).on_epoch(true),
        );
        loss
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = self.loss(batch);
        cx.log("val_loss", loss.clone());
        cx.log_with("val_hidden", loss, LogOptions::new().logger(false));
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = self.loss(batch);
        cx.log("test_loss", loss.clone());
        cx.log_with("test_hidden", loss, LogOptions::new().logger(false));
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

/// The same regressor under manual optimization, stepping on every other batch.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ManualRegressor {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl ManualRegressor {
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        cx.log("train_loss", loss.clone());
        if batch_idx % 2 == 1 {
            let grads = cx.manual_backward(self, loss);
            cx.optimizer_step(self, grads);
        }
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "val_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn quiet<M: LightningModule>(root: &Path) -> TrainerBuilder<M> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .num_sanity_val_steps(0)
}

/// `metrics.csv`'s rows as Lightning's script reads them: the step, and the keys with a value.
fn rows(run_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let step: u64 = cells[header.iter().position(|h| *h == "step").unwrap()]
                .parse()
                .unwrap();
            let mut keys: Vec<&str> = header
                .iter()
                .zip(&cells)
                .filter(|(key, cell)| **key != "step" && !cell.is_empty())
                .map(|(key, _)| *key)
                .collect();
            keys.sort_unstable();
            serde_json::json!({ "step": step, "keys": keys })
        })
        .collect()
}

/// -1 in Lightning's numbers is no limit.
fn limit(value: &Value) -> Option<usize> {
    value.as_i64().and_then(|n| usize::try_from(n).ok())
}

#[test]
fn loop_limits_resolve_as_lightnings_parse_loop_limits() {
    let expected = lightning();
    for case in expected["loop_limits"].as_array().unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let builder = quiet::<Regressor>(dir.path()).enable_logger(false);
        let builder = match case["case"].as_str().unwrap() {
            "unset" => builder,
            "max_epochs=-1" => builder.max_epochs(-1),
            "max_steps=40" => builder.max_steps(40),
            "max_time" => builder.max_time("00:01:00:00"),
            "max_epochs=3" => builder.max_epochs(3),
            other => panic!("unknown case {other}"),
        };
        let limits = Arc::new(Mutex::new(None));
        let model = Regressor {
            limits: Some(limits.clone()),
            ..Regressor::new()
        };
        let ((), warnings) = common::warnings_of(|| {
            let mut trainer = builder.build().unwrap();
            trainer.fit(model, Loaders::fit(pair_loader(8, 4), None)).unwrap();
        });
        let warned = warnings.iter().any(|w| w.contains("Setting it to 1000 epochs"));
        let seen = limits.lock().unwrap().unwrap();
        assert_eq!(
            (seen, warned),
            (
                (limit(&case["max_epochs"]), limit(&case["max_steps"])),
                case["warned"].as_bool().unwrap()
            ),
            "{case}"
        );
    }
}

#[test]
fn validation_rows_share_the_step_of_the_epochs_last_training_row() {
    let expected = lightning();
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = quiet::<Regressor>(dir.path())
        .max_epochs(3)
        .log_every_n_steps(5)
        .logger(CsvLogger::new(dir.path()))
        .build()
        .unwrap();
    trainer
        .fit(
            Regressor::new(),
            Loaders::fit(pair_loader(40, 4), Some(pair_loader(8, 4))),
        )
        .unwrap();
    assert_eq!(
        Value::Array(rows(trainer.log_dir().unwrap())),
        expected["fit_steps"],
        "metrics.csv's (step, keys) rows, Lightning's on the right"
    );
}

#[test]
fn under_manual_optimization_every_batch_advances_the_loggers_step() {
    let expected = lightning();
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = quiet::<ManualRegressor>(dir.path())
        .max_epochs(1)
        .log_every_n_steps(2)
        .logger(CsvLogger::new(dir.path()))
        .build()
        .unwrap();
    let model = ManualRegressor {
        layer: LinearConfig::new(32, 2)
            .with_initializer(Initializer::Constant { value: 0.01 })
            .init(&Device::default()),
    };
    trainer
        .fit(model, Loaders::fit(pair_loader(24, 4), Some(pair_loader(8, 4))))
        .unwrap();
    assert_eq!(Value::Array(rows(trainer.log_dir().unwrap())), expected["manual_steps"]);
}

#[test]
fn validate_returns_the_logged_values_and_leaves_them_in_logged_metrics() {
    let expected = &lightning()["validate"];
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = quiet::<Regressor>(dir.path()).enable_logger(false).build().unwrap();
    let mut model = Regressor::new();
    let returned = trainer.validate(&mut model, Loaders::val(pair_loader(8, 4))).unwrap();
    let keys = |metrics: &Metrics| metrics.keys().cloned().collect::<Vec<_>>();
    // Lightning returns a list of one dict per dataloader.
    assert_eq!(
        serde_json::json!(returned.iter().map(keys).collect::<Vec<_>>()),
        expected["returned_keys"]
    );
    assert_eq!(
        serde_json::json!(keys(trainer.logged_metrics())),
        expected["logged_metrics_keys"]
    );
    assert_eq!(
        serde_json::json!(keys(trainer.callback_metrics())),
        expected["callback_metrics_keys"]
    );
}

/// `test` as `validate`: it returns only what was sent to the loggers (not `test_hidden`,
/// logged with `logger(false)`), which `logged_metrics` holds too.
#[test]
fn test_returns_the_logged_values_and_leaves_them_in_logged_metrics() {
    let expected = &lightning()["test"];
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = quiet::<Regressor>(dir.path()).enable_logger(false).build().unwrap();
    let mut model = Regressor::new();
    let returned = trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    let keys = |metrics: &Metrics| metrics.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        serde_json::json!(returned.iter().map(keys).collect::<Vec<_>>()),
        expected["returned_keys"]
    );
    assert_eq!(
        serde_json::json!(keys(trainer.logged_metrics())),
        expected["logged_metrics_keys"]
    );
    assert_eq!(
        serde_json::json!(keys(trainer.callback_metrics())),
        expected["callback_metrics_keys"]
    );
}
