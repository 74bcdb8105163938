//! What a `DataModule` tells the run besides its dataloaders: its hyperparameters, which join
//! the module's in `hparams.yaml` and the loggers' (Lightning's `_log_hyperparams`) and are saved
//! in checkpoints (Lightning's `datamodule_hyper_parameters`), and the device it is given before
//! `setup`. And each stage's own batch type: a predict stage of inputs without targets.

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

/// Inputs without targets: the predict stage's batch type of [`Staged`].
#[derive(Clone, Debug)]
pub struct Inputs {
    x: Tensor<2>,
}

#[derive(Clone, Debug)]
struct InputsBatcher;

impl burn::data::dataloader::batcher::Batcher<Vec<f32>, Inputs> for InputsBatcher {
    fn batch(&self, items: Vec<Vec<f32>>, device: &Device) -> Inputs {
        let n = items.len();
        Inputs {
            x: Tensor::from_data(TensorData::new(items.concat(), [n, 32]), device),
        }
    }
}

/// `items` inputs of 32 features, `batch_size` a batch.
fn inputs_loader(items: usize, batch_size: usize) -> Loader<Inputs> {
    let rows = (0..items).map(|i| vec![i as f32 / 10.0; 32]).collect();
    burn::data::dataloader::DataLoaderBuilder::new(InputsBatcher)
        .batch_size(batch_size)
        .build(burn::data::dataset::InMemDataset::new(rows))
}

/// What the transfer hooks of the examples below need of a batch, whatever its stage: its rows.
/// A hook generic over it runs on every stage's batches, `Pair`s and `Inputs` alike.
trait Rows {
    fn rows(&self) -> usize;
}

impl Rows for Pair {
    fn rows(&self) -> usize {
        self.x.dims()[0]
    }
}

impl Rows for Inputs {
    fn rows(&self) -> usize {
        self.x.dims()[0]
    }
}

/// The transfer hooks one ran, with the batch's rows, in order.
type TransferCalls = Arc<Mutex<Vec<(&'static str, usize)>>>;

/// Trains and validates on `Pair`s, predicts on `Inputs`: each step's batch parameter is its
/// stage's batch type.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Staged {
    layer: Linear,
    /// The module's transfer hooks that ran, with the batch's rows.
    #[module(skip)]
    transfers: TransferCalls,
}

impl Staged {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            transfers: Arc::default(),
        }
    }
}

#[lightning_module]
impl Staged {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }

    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "val_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }

    #[hook]
    fn predict_step(&self, batch: Inputs, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.x)
    }

    #[hook]
    fn on_predict_batch_end(&self, outputs: &Tensor<2>, batch: &Inputs, _batch_idx: usize) {
        assert_eq!(outputs.dims()[0], batch.x.dims()[0]);
    }

    /// Generic over the batch type: runs on the batches of every stage, the training and
    /// validation `Pair`s and the predict stage's `Inputs`.
    #[hook]
    fn on_before_batch_transfer<B: Rows>(&self, batch: B, _dataloader_idx: usize) -> B {
        self.transfers
            .lock()
            .unwrap()
            .push(("on_before_batch_transfer", batch.rows()));
        batch
    }

    #[hook]
    fn transfer_batch_to_device<B: Rows>(&self, batch: B, _device: &Device, _dataloader_idx: usize) -> B {
        self.transfers
            .lock()
            .unwrap()
            .push(("transfer_batch_to_device", batch.rows()));
        batch
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

/// Sees the predict stage's batches with their own type.
#[derive(Default)]
struct PredictRows(Arc<Mutex<usize>>);

impl Callback<Staged> for PredictRows {
    fn on_predict_batch_start(
        &mut self,
        _module: &mut Staged,
        batch: &Inputs,
        _batch_idx: usize,
        _dataloader_idx: usize,
        _cx: &mut HookContext<'_>,
    ) {
        *self.0.lock().unwrap() += batch.x.dims()[0];
    }
}

/// The dataloaders of `Staged`'s stages: labelled pairs to fit and validate on, inputs alone
/// to predict (the same in both datamodules below).
macro_rules! staged_dataloaders {
    () => {
        fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
            Some(pair_loader(8, 4))
        }
        fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
            Some(pair_loader(6, 3))
        }
        fn predict_dataloader(&mut self) -> Option<Loader<Inputs>> {
            Some(inputs_loader(5, 2))
        }
    };
}

struct StagedData;

impl DataModule<Pair, Pair, Pair, Inputs> for StagedData {
    staged_dataloaders!();
}

/// [`StagedData`] with its own batch-transfer hooks: the three for `Pair`s (the training type,
/// so also the validation stage's), and `on_after_batch_transfer` for the predict stage's
/// `Inputs`. They run instead of the module's; the module's run where the datamodule has none
/// for a stage's type (`on_before_batch_transfer` and `transfer_batch_to_device` on `Inputs`).
#[derive(Default)]
struct TransferringData {
    calls: TransferCalls,
}

impl TransferringData {
    fn record<B: Rows>(&self, hook: &'static str, batch: B) -> Result<B, Error> {
        self.calls.lock().unwrap().push((hook, batch.rows()));
        Ok(batch)
    }
}

impl DataModule<Pair, Pair, Pair, Inputs> for TransferringData {
    staged_dataloaders!();

    fn on_before_batch_transfer(&mut self, batch: Pair, _dataloader_idx: usize) -> Result<Pair, Error> {
        self.record("on_before_batch_transfer", batch)
    }

    fn transfer_batch_to_device(
        &mut self,
        batch: Pair,
        device: &Device,
        _dataloader_idx: usize,
    ) -> Result<Pair, Error> {
        let batch = Pair {
            x: batch.x.to_device(device),
            y: batch.y.to_device(device),
        };
        self.record("transfer_batch_to_device", batch)
    }

    fn on_after_batch_transfer(&mut self, batch: Pair, _dataloader_idx: usize) -> Result<Pair, Error> {
        self.record("on_after_batch_transfer", batch)
    }

    fn on_after_predict_batch_transfer(&mut self, batch: Inputs, _dataloader_idx: usize) -> Result<Inputs, Error> {
        self.record("on_after_predict_batch_transfer", batch)
    }
}

/// The rows of the batches `hook` saw, in order.
fn rows_seen_by(calls: &[(&'static str, usize)], hook: &str) -> Vec<usize> {
    calls
        .iter()
        .filter(|(h, _)| *h == hook)
        .map(|(_, rows)| *rows)
        .collect()
}

#[test]
fn the_datamodules_transfer_hooks_run_instead_of_the_modules_on_each_stage_of_their_batch_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    let model = Staged::new();
    let module_transfers = model.transfers.clone();
    let mut data = TransferringData::default();
    let (mut model, warnings) = common::warnings_of(|| trainer.fit(model, &mut data).unwrap());
    // Lightning's warning, once each, for the hooks both override (not for
    // `on_after_batch_transfer`, which only the datamodule does).
    let mut both: Vec<_> = warnings.iter().filter(|w| w.contains("in both")).collect();
    both.sort();
    assert_eq!(both.len(), 2, "{warnings:?}");
    assert!(
        both[0].contains("`on_before_batch_transfer` in both `LightningModule` and `LightningDataModule`"),
        "{}",
        both[0]
    );
    assert!(
        both[1].contains("`transfer_batch_to_device` in both `LightningModule` and `LightningDataModule`"),
        "{}",
        both[1]
    );
    let calls = data.calls.lock().unwrap().clone();
    // Two training batches of 4, then two validation batches of 3, each through the three hooks,
    // in Lightning's order.
    assert_eq!(calls.len(), 12, "{calls:?}");
    assert_eq!(
        calls[..3],
        [
            ("on_before_batch_transfer", 4),
            ("transfer_batch_to_device", 4),
            ("on_after_batch_transfer", 4)
        ]
    );
    for hook in [
        "on_before_batch_transfer",
        "transfer_batch_to_device",
        "on_after_batch_transfer",
    ] {
        assert_eq!(rows_seen_by(&calls, hook), [4, 4, 3, 3], "{hook}");
    }
    // The datamodule's `on_before_batch_transfer` and `transfer_batch_to_device` won over the
    // module's.
    assert_eq!(*module_transfers.lock().unwrap(), []);

    trainer.validate(&mut model, &mut data).unwrap();
    assert_eq!(
        rows_seen_by(&data.calls.lock().unwrap(), "transfer_batch_to_device"),
        [4, 4, 3, 3, 3, 3]
    );
    assert_eq!(*module_transfers.lock().unwrap(), []);

    // The predict stage's `Inputs`: the datamodule's hook for them runs, and where it has none
    // for `Inputs`, the module's (generic) hooks do.
    data.calls.lock().unwrap().clear();
    trainer.predict(&mut model, &mut data).unwrap();
    assert_eq!(
        *data.calls.lock().unwrap(),
        [
            ("on_after_predict_batch_transfer", 2),
            ("on_after_predict_batch_transfer", 2),
            ("on_after_predict_batch_transfer", 1)
        ]
    );
    assert_eq!(
        *module_transfers.lock().unwrap(),
        [
            ("on_before_batch_transfer", 2),
            ("transfer_batch_to_device", 2),
            ("on_before_batch_transfer", 2),
            ("transfer_batch_to_device", 2),
            ("on_before_batch_transfer", 1),
            ("transfer_batch_to_device", 1)
        ]
    );
}

#[test]
fn each_stage_takes_its_own_batch_type_and_the_transfer_hooks_run_on_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    let model = Staged::new();
    let transfers = model.transfers.clone();
    let mut model = trainer.fit(model, StagedData).unwrap();
    // Two training batches of 4 and two validation batches of 3, all `Pair`s.
    assert_eq!(
        rows_seen_by(&transfers.lock().unwrap(), "on_before_batch_transfer"),
        [4, 4, 3, 3]
    );

    let rows = Arc::new(Mutex::new(0));
    let mut predictor = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .callback(PredictRows(rows.clone()))
        .build()
        .unwrap();
    transfers.lock().unwrap().clear();
    let predictions = predictor.predict(&mut model, StagedData).unwrap();
    assert_eq!(
        predictions.iter().map(|p| p.dims()).collect::<Vec<_>>(),
        [[2, 2], [2, 2], [1, 2]]
    );
    assert_eq!(*rows.lock().unwrap(), 5, "the callback saw every predicted row");
    // The `Inputs` batches went through the module's transfer hooks too, as in Lightning.
    let transfers_seen = transfers.lock().unwrap().clone();
    assert_eq!(rows_seen_by(&transfers_seen, "on_before_batch_transfer"), [2, 2, 1]);
    assert_eq!(rows_seen_by(&transfers_seen, "transfer_batch_to_device"), [2, 2, 1]);

    // Loaders infer each stage's type from the module.
    let predictions = predictor
        .predict(&mut model, Loaders::predict(inputs_loader(3, 3)))
        .unwrap();
    assert_eq!(predictions.len(), 1);
}

/// The `.ckpt` files under `dir`, at any depth.
fn checkpoint_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(checkpoint_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "ckpt") {
            found.push(path);
        }
    }
    found
}

#[test]
fn checkpoints_hold_the_datamodules_hyperparameters_under_lightnings_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).enable_checkpointing(true).build().unwrap();
    let hparams = serde_json::json!({"batch_size": 4, "noise": 0.5});
    trainer.fit(Net::new(), Data::new(hparams.clone())).unwrap();

    let files = checkpoint_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let checkpoint = burn_lightning::Checkpoint::load(&files[0]).unwrap();
    assert_eq!(checkpoint.datamodule_hyper_parameters, Some(hparams.clone()));
    // The module's stay apart, as in Lightning.
    assert_eq!(checkpoint.hyper_parameters, serde_json::json!({"lr": 0.01}));
    // Lightning's key, in the file's metadata (read by Python's safetensors when there is one).
    let bytes = std::fs::read(&files[0]).unwrap();
    let key = b"datamodule_hyper_parameters";
    assert!(bytes.windows(key.len()).any(|window| window == key));
    if let Some(python) = reference_python() {
        let script = r#"
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    print(json.dumps(json.loads(f.metadata()["checkpoint"])["datamodule_hyper_parameters"]))
"#;
        let read = run_python(&python, script, &files[0]);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&read).unwrap(), hparams);
    }

    // Without datamodule hyperparameters there is no such entry.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).enable_checkpointing(true).build().unwrap();
    trainer.fit(Net::new(), Loaders::fit(pair_loader(8, 4), None)).unwrap();
    let checkpoint = burn_lightning::Checkpoint::load(&checkpoint_files(dir.path())[0]).unwrap();
    assert_eq!(checkpoint.datamodule_hyper_parameters, None);
}

/// `REFERENCE_PYTHON` (a Python with torch and Lightning, see `scripts/python_venv.sh`), if set.
fn reference_python() -> Option<String> {
    let python = std::env::var("REFERENCE_PYTHON").ok();
    if python.is_none() {
        eprintln!("REFERENCE_PYTHON is not set (scripts/python_venv.sh makes it): checked in Rust only");
    }
    python
}

/// Runs `script` with `python`, `path` as its argument; its standard output.
fn run_python(python: &str, script: &str, path: &std::path::Path) -> String {
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (REFERENCE_PYTHON): {e}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_lightning_checkpoints_datamodule_hyperparameters_are_read() {
    let Some(python) = reference_python() else {
        return;
    };
    // A Lightning fit of one step whose datamodule saves its hyperparameters, then its checkpoint.
    let script = r#"
import sys, warnings
warnings.filterwarnings("ignore")
import torch
import pytorch_lightning as pl

class Data(pl.LightningDataModule):
    def __init__(self, batch_size=4, noise=0.5):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        x = torch.randn(8, 4)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=self.hparams.batch_size)

class Net(pl.LightningModule):
    def __init__(self, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu")
trainer.fit(Net(), Data())
trainer.save_checkpoint(sys.argv[1])
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lightning.ckpt");
    run_python(&python, script, &path);
    let checkpoint = burn_lightning::LightningCheckpoint::read(&path)
        .unwrap()
        .to_checkpoint();
    assert_eq!(
        checkpoint.datamodule_hyper_parameters,
        Some(serde_json::json!({"batch_size": 4, "noise": 0.5}))
    );
    assert_eq!(checkpoint.hyper_parameters, serde_json::json!({"lr": 0.1}));
    assert!(!checkpoint.extra.contains_key("datamodule_hyper_parameters"));
}
