//! What a `DataModule` tells the run besides its dataloaders: its hyperparameters, which join
//! the module's in `hparams.yaml` and the loggers' (Lightning's `_log_hyperparams`), and the
//! device it is given before `setup`.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::recording::{Call, Recording};
use common::{Pair, pair_loader};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[hparam(default = 0.01)]
    lr: f64,
}

impl Net {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            lr: 0.01,
        }
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

/// A datamodule with hyperparameters, which records what it is told, in order.
struct Data {
    hparams: serde_json::Value,
    told: Arc<Mutex<Vec<String>>>,
}

impl Data {
    fn new(hparams: serde_json::Value) -> Self {
        Self {
            hparams,
            told: Arc::default(),
        }
    }
}

impl DataModule<Pair> for Data {
    fn set_device(&mut self, device: &Device) {
        self.told
            .lock()
            .unwrap()
            .push(format!("set_device {}", *device == Device::default()));
    }
    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        self.told.lock().unwrap().push(format!("setup {stage}"));
        Ok(())
    }
    fn hparams(&self) -> Option<serde_json::Value> {
        Some(self.hparams.clone())
    }
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(8, 4))
    }
}

fn builder(root: &std::path::Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .max_epochs(1)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
}

#[test]
fn the_datamodules_hyperparameters_join_the_modules_in_hparams_yaml_and_every_logger() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path()).logger(logger).build().unwrap();
    // A name both give with the same value is kept once, as Lightning merges them.
    let data = Data::new(serde_json::json!({"batch_size": 4, "noise": 0.5, "lr": 0.01}));
    trainer.fit(Net::new(), data).unwrap();

    let expected = serde_json::json!({"lr": 0.01, "batch_size": 4, "noise": 0.5});
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.first(), Some(&Call::Hparams(expected.clone())));
    let yaml = std::fs::read_to_string(trainer.log_dir().unwrap().join("hparams.yaml")).unwrap();
    let saved: BTreeMap<String, serde_json::Value> = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(serde_json::to_value(saved).unwrap(), expected, "{yaml}");
    // Written by the trainer (this logger writes no file): the module's first, then the
    // datamodule's.
    assert!(yaml.starts_with("lr:"), "{yaml}");
}

#[test]
fn a_hyperparameter_both_give_with_different_values_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let error = trainer
        .fit(Net::new(), Data::new(serde_json::json!({"lr": 0.5})))
        .unwrap_err()
        .error
        .to_string();
    assert!(
        error.contains("[\"lr\"]") && error.contains("different values"),
        "{error}"
    );
}

#[test]
fn hyperparameters_that_are_not_an_object_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let error = trainer
        .fit(Net::new(), Data::new(serde_json::json!([1, 2])))
        .unwrap_err()
        .error
        .to_string();
    assert!(error.contains("must return a JSON object"), "{error}");
}

#[test]
fn the_datamodule_learns_the_device_before_setup() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let data = Data::new(serde_json::json!({}));
    let told = data.told.clone();
    trainer.fit(Net::new(), data).unwrap();
    assert_eq!(*told.lock().unwrap(), ["set_device true", "setup fit"]);
}
