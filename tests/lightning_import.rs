//! Importing a checkpoint that PyTorch Lightning wrote: `tests/fixtures/lit_mlp.ckpt` (made by
//! `bash scripts/lightning_checkpoint_fixture.sh`, which also wrote what Python computed into
//! `tests/fixtures/lit_mlp.json`) loads into a `#[lightning_module]` with the same layers and
//! computes the same logits; differing names load through `remap_key`; files that are not
//! Lightning checkpoints, damaged files and weights that do not fit are errors naming the file.

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::tensor::activation::relu;
use burn_lightning::prelude::*;
use burn_lightning::{KeyReport, LightningCheckpoint};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The Python module's twin: `encoder` and `head` as in its `state_dict`, and its
/// `save_hyperparameters()` names as `#[hparam]`s.
#[lightning_module]
#[derive(Module, Debug)]
pub struct LitMlp {
    encoder: Linear,
    head: Linear,
    /// Input features.
    #[hparam(default = 4)]
    in_features: usize,
    /// Hidden units.
    #[hparam(default = 16)]
    hidden_size: usize,
    /// Classes.
    #[hparam(default = 3)]
    out_features: usize,
    /// Adam's learning rate in Python (SGD's here).
    #[hparam(default = 0.1)]
    lr: f64,
    /// What `on_load_checkpoint` saw: (epoch, global_step, version).
    #[module(skip)]
    seen: Arc<Mutex<Option<(usize, usize, String)>>>,
}

impl LitMlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.head.forward(relu(self.encoder.forward(x)))
    }
}

#[lightning_module]
impl LitMlp {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<1> {
        self.forward(batch).mean()
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
    #[hook]
    fn on_load_checkpoint(&mut self, checkpoint: &Checkpoint) {
        *self.seen.lock().unwrap() = Some((checkpoint.epoch, checkpoint.global_step, checkpoint.version.clone()));
    }
}

impl LoadFromCheckpoint for LitMlp {
    fn from_hparams(hparams: &LitMlpHparams, device: &Device) -> Self {
        Self {
            encoder: LinearConfig::new(hparams.in_features, hparams.hidden_size).init(device),
            head: LinearConfig::new(hparams.hidden_size, hparams.out_features).init(device),
            in_features: hparams.in_features,
            hidden_size: hparams.hidden_size,
            out_features: hparams.out_features,
            lr: hparams.lr,
            seen: Arc::default(),
        }
    }
}

/// The same network with other field names than the Python module's `encoder` and `head`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct RenamedMlp {
    hidden: Linear,
    output: Linear,
    /// Input features.
    #[hparam(default = 4)]
    in_features: usize,
    /// Hidden units.
    #[hparam(default = 16)]
    hidden_size: usize,
    /// Classes.
    #[hparam(default = 3)]
    out_features: usize,
}

impl RenamedMlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(relu(self.hidden.forward(x)))
    }
}

#[lightning_module]
impl RenamedMlp {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<1> {
        self.forward(batch).mean()
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

impl LoadFromCheckpoint for RenamedMlp {
    fn from_hparams(hparams: &RenamedMlpHparams, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(hparams.in_features, hparams.hidden_size).init(device),
            output: LinearConfig::new(hparams.hidden_size, hparams.out_features).init(device),
            in_features: hparams.in_features,
            hidden_size: hparams.hidden_size,
            out_features: hparams.out_features,
        }
    }
}

/// `tests/fixtures/lit_mlp.json`: what Python read back from the checkpoint and computed.
#[derive(Deserialize)]
struct Expected {
    pytorch_lightning_version: String,
    epoch: usize,
    global_step: usize,
    hyper_parameters: JsonValue,
    state_dict: std::collections::BTreeMap<String, Vec<usize>>,
    inputs: Vec<Vec<f32>>,
    logits: Vec<Vec<f32>>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture("lit_mlp.json")).expect("tests/fixtures/lit_mlp.json");
    serde_json::from_str(&text).expect("lit_mlp.json as the fixture script writes it")
}

fn inputs(expected: &Expected) -> Tensor<2> {
    let rows = expected.inputs.len();
    let columns = expected.inputs[0].len();
    let flat: Vec<f32> = expected.inputs.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows, columns]), &Device::default())
}

/// Asserts that `logits` are Python's, each to 1e-5.
fn assert_logits_match(logits: Tensor<2>, expected: &Expected) {
    let [rows, columns] = logits.dims();
    assert_eq!((rows, columns), (expected.logits.len(), expected.logits[0].len()));
    let computed = logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    for (index, (computed, python)) in computed.iter().zip(expected.logits.iter().flatten()).enumerate() {
        assert!(
            (computed - python).abs() <= 1e-5,
            "logit {index} (row {}, column {}): Rust {computed}, Python {python}",
            index / columns,
            index % columns
        );
    }
}

#[test]
fn a_lightning_checkpoint_rebuilds_the_module_and_computes_pythons_logits() {
    let expected = expected();
    let loaded = LitMlp::load_from_lightning_checkpoint(fixture("lit_mlp.ckpt"), LoadOptions::new()).unwrap();

    assert_eq!(loaded.checkpoint.epoch, expected.epoch);
    assert_eq!(loaded.checkpoint.global_step, expected.global_step);
    assert!(expected.global_step > 0, "the fixture was trained");
    assert_eq!(loaded.checkpoint.hyper_parameters, expected.hyper_parameters);
    assert_eq!(
        loaded.checkpoint.lightning_version.as_deref(),
        Some(expected.pytorch_lightning_version.as_str())
    );
    assert_eq!(
        loaded.checkpoint.parameter_names(),
        expected.state_dict.keys().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(loaded.report, KeyReport::default());

    // The saved hyperparameters (hidden_size 8 in Python), not the defaults (16), built the module.
    let module = loaded.module;
    assert_eq!(module.hidden_size, 8);
    assert_eq!(module.lr, expected.hyper_parameters["lr"].as_f64().unwrap());
    // torch's [out, in] Linear weights arrive as burn's [in, out].
    assert_eq!(module.encoder.weight.dims(), [4, 8]);
    assert_eq!(expected.state_dict["encoder.weight"], [8, 4]);
    assert_eq!(
        *module.seen.lock().unwrap(),
        Some((
            expected.epoch,
            expected.global_step,
            format!("pytorch-lightning {}", expected.pytorch_lightning_version)
        ))
    );

    assert_logits_match(module.forward(inputs(&expected)), &expected);
}

#[test]
fn the_other_entries_of_a_lightning_checkpoint_are_kept_as_json() {
    let checkpoint = LightningCheckpoint::read(fixture("lit_mlp.ckpt")).unwrap();
    let hparams: LitMlpHparams = checkpoint.hparams().unwrap();
    assert_eq!(
        (hparams.in_features, hparams.hidden_size, hparams.out_features),
        (4, 8, 3)
    );
    // Lightning's loop progress is plain data; the optimizer's moment tensors are not.
    assert!(checkpoint.extra["loops"].is_object(), "{:?}", checkpoint.extra.keys());
    let optimizer = &checkpoint.extra["optimizer_states"][0];
    assert_eq!(optimizer["param_groups"][0]["lr"], checkpoint.hyper_parameters["lr"]);
    assert_eq!(optimizer["state"]["0"]["exp_avg"], JsonValue::Null);
    assert!(!checkpoint.extra.contains_key("state_dict"));
}

#[test]
fn weights_load_into_a_module_built_by_hand_and_overrides_apply() {
    let expected = expected();
    let checkpoint = LightningCheckpoint::read(fixture("lit_mlp.ckpt")).unwrap();
    let hparams: LitMlpHparams = checkpoint.hparams().unwrap();
    let (module, report) = checkpoint
        .restore_module_with(LitMlp::from_hparams(&hparams, &Device::default()), &LoadOptions::new())
        .unwrap();
    assert_eq!(report, KeyReport::default());
    assert_logits_match(module.forward(inputs(&expected)), &expected);

    // An override of the learning rate leaves the weights as saved.
    let loaded =
        LitMlp::load_from_lightning_checkpoint(fixture("lit_mlp.ckpt"), LoadOptions::new().hparam("lr", 0.5)).unwrap();
    assert_eq!(loaded.module.lr, 0.5);
    assert_logits_match(loaded.module.forward(inputs(&expected)), &expected);
}

#[test]
fn differing_field_names_load_through_key_remapping() {
    let expected = expected();
    let path = fixture("lit_mlp.ckpt");

    let error = RenamedMlp::load_from_lightning_checkpoint(&path, LoadOptions::new()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("lit_mlp.ckpt"), "{message}");
    assert!(
        message.contains("hidden.weight") && message.contains("encoder.weight"),
        "{message}"
    );
    assert!(message.contains("remap_key"), "{message}");

    let options = LoadOptions::new()
        .remap_key(r"^encoder\.", "hidden.")
        .remap_key(r"^head\.(weight|bias)$", "output.$1");
    let loaded = RenamedMlp::load_from_lightning_checkpoint(&path, options).unwrap();
    assert_eq!(loaded.report, KeyReport::default());
    assert_logits_match(loaded.module.forward(inputs(&expected)), &expected);

    // Non-strict, with only the encoder renamed: the head keeps its fresh weights, and both
    // sides' leftovers are reported.
    let options = LoadOptions::new().strict(false).remap_key(r"^encoder\.", "hidden.");
    let loaded = RenamedMlp::load_from_lightning_checkpoint(&path, options).unwrap();
    let mut missing = loaded.report.missing.clone();
    missing.sort();
    let mut unexpected = loaded.report.unexpected.clone();
    unexpected.sort();
    assert_eq!(missing, ["output.bias", "output.weight"]);
    assert_eq!(unexpected, ["head.bias", "head.weight"]);

    let error = RenamedMlp::load_from_lightning_checkpoint(&path, LoadOptions::new().remap_key("(", "x")).unwrap_err();
    assert!(error.to_string().contains("`remap_key` was given `(`"), "{error}");
}

#[test]
fn a_hidden_size_that_does_not_fit_the_saved_weights_is_an_error_naming_the_file() {
    let error =
        LitMlp::load_from_lightning_checkpoint(fixture("lit_mlp.ckpt"), LoadOptions::new().hparam("hidden_size", 5))
            .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("lit_mlp.ckpt"), "{message}");
    assert!(message.contains("encoder.weight"), "{message}");
}

#[test]
fn files_that_are_not_lightning_checkpoints_are_errors_naming_the_file() {
    let directory = tempfile::tempdir().unwrap();

    // A PyTorch file of weights alone.
    let plain = fixture("plain_state_dict.pt");
    let message = LitMlp::load_from_lightning_checkpoint(&plain, LoadOptions::new())
        .unwrap_err()
        .to_string();
    assert!(message.contains("plain_state_dict.pt"), "{message}");
    assert!(message.contains("not a PyTorch Lightning checkpoint"), "{message}");
    assert!(message.contains("no `state_dict`"), "{message}");

    // Not a PyTorch file at all: this crate's own checkpoint format, and text.
    let ours = directory.path().join("ours.ckpt");
    Checkpoint::of_module(&LitMlp::from_hparams(&LitMlpHparams::new(), &Device::default()))
        .unwrap()
        .save(&ours)
        .unwrap();
    let text = directory.path().join("notes.ckpt");
    std::fs::write(&text, "epoch 3, step 12\n").unwrap();
    for path in [&ours, &text] {
        let message = LightningCheckpoint::read(path).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not a PyTorch Lightning checkpoint"), "{message}");
    }

    // A checkpoint cut short, and one that is missing.
    let bytes = std::fs::read(fixture("lit_mlp.ckpt")).unwrap();
    let truncated = directory.path().join("truncated.ckpt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = LitMlp::load_from_lightning_checkpoint(&truncated, LoadOptions::new())
        .unwrap_err()
        .to_string();
    assert!(message.contains(&truncated.display().to_string()), "{message}");
    let missing = directory.path().join("missing.ckpt");
    let message = LightningCheckpoint::read(&missing).unwrap_err().to_string();
    assert!(message.contains(&missing.display().to_string()), "{message}");
}

#[test]
fn key_remapping_renames_the_weights_of_this_crates_own_checkpoints_too() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("lit_mlp.ckpt");
    let original = LitMlp::from_hparams(&LitMlpHparams::new(), &Device::default());
    Checkpoint::of_module(&original).unwrap().save(&path).unwrap();

    let error = RenamedMlp::load_from_checkpoint(&path).unwrap_err();
    assert!(error.to_string().contains("hidden.weight"), "{error}");

    let options = LoadOptions::new()
        .remap_key(r"^encoder\.", "hidden.")
        .remap_key(r"^head\.", "output.");
    let loaded = RenamedMlp::load_from_checkpoint_with(&path, options).unwrap();
    assert_eq!(loaded.report, KeyReport::default());
    let x = Tensor::<2>::ones([2, 4], &Device::default());
    let (expected, computed) = (original.forward(x.clone()), loaded.module.forward(x));
    computed.into_data().assert_eq(&expected.into_data(), true);
}
