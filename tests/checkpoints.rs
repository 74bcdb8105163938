//! Checkpoints as a user sees them: the files `ModelCheckpoint` writes and keeps, what a
//! checkpoint restores, what `on_save_checkpoint` adds, errors for damaged files, and
//! `EarlyStopping` ending a fit when a monitored metric stops improving.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, file_names, pair_loader, values};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A linear regressor with hyperparameters, which logs `score` from a script at each epoch end
/// and adds an entry to its checkpoints.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    /// SGD's learning rate.
    #[hparam(default = 0.05)]
    lr: f64,
    /// Output features.
    #[hparam(default = 2)]
    outputs: usize,
    /// A label.
    #[hparam(default = String::from("net"))]
    tag: String,
    /// `score` logged at the end of epoch `i` is `scores[i]` (nothing when empty).
    #[module(skip)]
    scores: Vec<f64>,
    /// The `note` entries `on_load_checkpoint` saw.
    #[module(skip)]
    loaded: Arc<Mutex<Vec<JsonValue>>>,
    /// Training epochs that ended.
    #[module(skip)]
    epochs: Arc<Mutex<usize>>,
}

impl Net {
    fn new(hparams: &NetHparams) -> Self {
        Self {
            layer: LinearConfig::new(32, hparams.outputs).init(&Device::default()),
            lr: hparams.lr,
            outputs: hparams.outputs,
            tag: hparams.tag.clone(),
            scores: Vec::new(),
            loaded: Arc::default(),
            epochs: Arc::default(),
        }
    }

    fn scored(scores: &[f64]) -> Self {
        Self {
            scores: scores.to_vec(),
            ..Self::new(&NetHparams::new())
        }
    }

    fn weights(&self) -> (Vec<f32>, Vec<f32>) {
        (
            values(self.layer.weight.val()),
            values(self.layer.bias.as_ref().expect("a bias").val()),
        )
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        self.loss(batch)
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
        *self.epochs.lock().unwrap() += 1;
        if let Some(score) = self.scores.get(cx.current_epoch) {
            cx.log("score", *score);
        }
    }
    #[hook]
    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint, cx: &mut HookContext) {
        checkpoint.extra.insert(
            "note".into(),
            serde_json::json!({"tag": self.tag, "epoch": cx.current_epoch}),
        );
    }
    #[hook]
    fn on_load_checkpoint(&mut self, checkpoint: &Checkpoint) {
        self.loaded
            .lock()
            .unwrap()
            .push(checkpoint.extra.get("note").cloned().unwrap_or_default());
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

impl LoadFromCheckpoint for Net {
    fn from_hparams(hparams: &NetHparams, _device: &Device) -> Self {
        Net::new(hparams)
    }
}

fn builder(root: &Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .num_sanity_val_steps(0)
}

/// 4 training batches per epoch, 1 validation batch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
}

fn checkpoints_dir(root: &Path) -> PathBuf {
    root.join("lightning_logs/version_0/checkpoints")
}

/// Lists the checkpoint directory when training ends.
struct ListCheckpoints(Arc<Mutex<Vec<Vec<String>>>>);

impl Callback<Net> for ListCheckpoints {
    fn on_train_end(&mut self, _module: &mut Net, cx: &mut HookContext<'_>) {
        let dir = cx.log_dir().expect("a run directory").join("checkpoints");
        self.0.lock().unwrap().push(file_names(&dir));
    }
}

#[test]
fn the_default_checkpoint_is_written_every_epoch_and_only_the_latest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let listed = Arc::new(Mutex::new(Vec::new()));
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .callback(ListCheckpoints(listed.clone()))
        .build()
        .unwrap();
    trainer.fit(Net::new(&NetHparams::new()), data()).unwrap();
    assert_eq!(
        trainer.log_dir(),
        Some(dir.path().join("lightning_logs/version_0").as_path())
    );
    // Checkpoints are written in the background, and all of them before `on_train_end`.
    assert_eq!(*listed.lock().unwrap(), [vec!["epoch=2-step=12.ckpt".to_string()]]);
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=2-step=12.ckpt"],
        "no other file, temporary or old"
    );

    // Keeping all shows that every epoch wrote one.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .callback(ModelCheckpoint::new().save_top_k(-1))
        .build()
        .unwrap();
    trainer.fit(Net::new(&NetHparams::new()), data()).unwrap();
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"]
    );
}

#[test]
fn a_checkpoint_restores_the_weights_hparams_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let hparams = NetHparams::new().with_lr(0.02).with_tag("restored".into());
    let trained = builder(dir.path())
        .max_epochs(2)
        .build()
        .unwrap()
        .fit(Net::new(&hparams), data())
        .unwrap();

    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=1-step=8.ckpt")).unwrap();
    assert_eq!((checkpoint.epoch, checkpoint.global_step), (1, 8));
    let saved: NetHparams = checkpoint.hparams().unwrap();
    assert_eq!(saved, hparams);
    assert!(
        checkpoint
            .callbacks
            .contains_key("ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}"),
        "Lightning's state key: {:?}",
        checkpoint.callbacks.keys()
    );

    let fresh = Net::new(&saved);
    assert_ne!(
        fresh.weights(),
        trained.weights(),
        "a fresh module starts from other weights"
    );
    let restored = checkpoint.restore_module(fresh).unwrap();
    assert_eq!(restored.weights(), trained.weights());
}

#[test]
fn on_save_checkpoint_entries_are_saved_and_on_load_checkpoint_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let hparams = NetHparams::new().with_tag("noted".into());
    let trained = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&hparams), data())
        .unwrap();
    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    let note = serde_json::json!({"tag": "noted", "epoch": 0});
    assert_eq!(checkpoint.extra.get("note"), Some(&note));

    let fresh = Net::new(&hparams);
    let loaded = fresh.loaded.clone();
    let restored = checkpoint.load_into(fresh).unwrap();
    assert_eq!(*loaded.lock().unwrap(), [note]);
    assert_eq!(restored.weights(), trained.weights());
}

#[test]
fn a_checkpoint_does_not_restore_into_a_module_of_another_shape() {
    let dir = tempfile::tempdir().unwrap();
    builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    let other = Net::new(&NetHparams::new().with_outputs(3));
    let error = checkpoint.restore_module(other).unwrap_err();
    assert!(matches!(error, Error::Checkpoint(_)), "{error:?}");
}

/// The bytes of a real checkpoint.
fn real_checkpoint(root: &Path) -> Vec<u8> {
    builder(root)
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    std::fs::read(checkpoints_dir(root).join("epoch=0-step=4.ckpt")).unwrap()
}

/// As in Lightning, where both are `Checkpoint`s: an `OnExceptionCheckpoint` alone replaces the
/// default `ModelCheckpoint`, so a fit that ends well writes no checkpoint at all.
#[test]
fn an_on_exception_checkpoint_alone_replaces_the_default_model_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    builder(dir.path())
        .max_epochs(1)
        .callback(OnExceptionCheckpoint::new(dir.path()))
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    assert!(!checkpoints_dir(dir.path()).exists());
    assert!(!dir.path().join("on_exception.ckpt").exists());
}

#[test]
fn damaged_checkpoint_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = real_checkpoint(dir.path());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"this is not a checkpoint at all".to_vec()),
        ("header length only", good[..8].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("one byte too many", [good.as_slice(), &[0]].concat()),
        ("huge header length", [&u64::MAX.to_le_bytes()[..], &good[8..]].concat()),
        ("format 1 magic, nothing else", b"BLCKPT01".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.ckpt"));
        std::fs::write(&path, bytes).unwrap();
        let error = Checkpoint::load(&path).expect_err(name);
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{name}: the error names the file: {error}"
        );
    }
    let missing = dir.path().join("missing.ckpt");
    assert!(matches!(Checkpoint::load(&missing), Err(Error::Io { .. })));
}

/// Where the data of the tensor `name` lies in a safetensors file.
fn tensor_bytes(file: &[u8], name: &str) -> std::ops::Range<usize> {
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + header_len]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let start = 8 + header_len + offsets[0].as_u64().unwrap() as usize;
    let end = 8 + header_len + offsets[1].as_u64().unwrap() as usize;
    start..end
}

#[test]
fn every_flipped_byte_truncation_and_extension_is_an_error_never_a_panic_or_a_silent_load() {
    let dir = tempfile::tempdir().unwrap();
    let good = real_checkpoint(dir.path());
    assert!(Checkpoint::from_bytes(&good).is_ok());
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bytes = good.clone();
            bytes[i] ^= mask;
            variants.push((format!("byte {i} ^ {mask:#x}"), bytes));
        }
    }
    for len in 0..good.len() {
        variants.push((format!("truncated to {len}"), good[..len].to_vec()));
    }
    for extra in 1..=16 {
        variants.push((
            format!("{extra} bytes appended"),
            [good.as_slice(), &vec![b' '; extra]].concat(),
        ));
    }
    let cases = variants.len();
    let mut loaded = Vec::new();
    let mut panicked = Vec::new();
    let started = std::time::Instant::now();
    for (name, bytes) in variants {
        match std::panic::catch_unwind(|| Checkpoint::from_bytes(&bytes).is_ok()) {
            Ok(true) => loaded.push(name),
            Ok(false) => {}
            Err(_) => panicked.push(name),
        }
    }
    // A line for scripts/fault_trials.sh (shown with `--nocapture`).
    println!(
        "FAULT damaged checkpoint: {cases} loads of a {}-byte checkpoint (every byte ^0x01/^0x80/^0xFF, every truncation, \
         1-16 bytes appended); errors {}, silent loads {}, panics {}; {:.2} s",
        good.len(),
        cases - loaded.len() - panicked.len(),
        loaded.len(),
        panicked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(cases > 3 * good.len(), "{cases} cases");
    assert_eq!(panicked, Vec::<String>::new(), "panics");
    assert_eq!(loaded, Vec::<String>::new(), "damaged files that loaded");
}

/// Every byte of the header (its length, JSON, padding) is covered: each one replaced by JSON
/// whitespace, a digit, a letter or a quote either leaves the file unchanged or makes it an
/// error. A space of the padding turned into a tab or a newline, or the version digit into
/// another, used to load as if nothing had happened.
#[test]
fn every_byte_of_the_header_is_covered() {
    let dir = tempfile::tempdir().unwrap();
    let good = real_checkpoint(dir.path());
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    assert!(
        good[..header_end].ends_with(b" ") || header_end.is_multiple_of(8),
        "safetensors pads the header with spaces"
    );
    let mut loaded = Vec::new();
    let (mut cases, started) = (0, std::time::Instant::now());
    for i in 0..header_end {
        for replacement in *b" \t\n\r0123456789aAfF:,\"\\{}" {
            if good[i] == replacement {
                continue;
            }
            let mut bytes = good.clone();
            bytes[i] = replacement;
            cases += 1;
            if Checkpoint::from_bytes(&bytes).is_ok() {
                loaded.push(format!("byte {i}: {:?} -> {:?}", good[i] as char, replacement as char));
            }
        }
    }
    println!(
        "FAULT damaged header: {cases} loads, each of the {header_end} header bytes replaced by each of 24 JSON characters; \
         errors {}, silent loads {}; {:.2} s",
        cases - loaded.len(),
        loaded.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(loaded, Vec::<String>::new(), "damaged headers that loaded");
    // The padding, when there is some: a tab instead of a space is named as header damage.
    if good[header_end - 1] == b' ' {
        let mut bytes = good.clone();
        bytes[header_end - 1] = b'\t';
        let error = Checkpoint::from_bytes(&bytes).unwrap_err().to_string();
        assert!(error.contains("header is damaged"), "{error}");
    }
}

#[test]
fn a_damaged_section_is_named_and_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = real_checkpoint(dir.path());
    let damage = |range: std::ops::Range<usize>| {
        let mut bytes = good.clone();
        bytes[range.start + (range.end - range.start) / 2] ^= 0x10;
        Checkpoint::from_bytes(&bytes).unwrap_err().to_string()
    };
    let weights = damage(tensor_bytes(&good, "layer.weight"));
    assert!(weights.contains("weights section is damaged"), "{weights}");
    let optimizer = damage(tensor_bytes(&good, "__burn_lightning__.optimizer"));
    assert!(optimizer.contains("optimizer section is damaged"), "{optimizer}");
    // A digit of `global_step` in the metadata still parses: only the checksum tells.
    let find = |pattern: &[u8]| good.windows(pattern.len()).position(|w| w == pattern).unwrap();
    let at = find(b"global_step");
    let digit = at + good[at..].iter().position(u8::is_ascii_digit).unwrap();
    let mut bytes = good.clone();
    bytes[digit] = if bytes[digit] == b'9' { b'8' } else { bytes[digit] + 1 };
    let metadata = Checkpoint::from_bytes(&bytes).unwrap_err().to_string();
    assert!(metadata.contains("metadata section is damaged"), "{metadata}");

    // A file from a newer burn-lightning: the same bytes, format version 5. Formats 2 and 3 are
    // read, but the version is in the checksums: a `4` damaged into either is damage; 0 and 1
    // are versions no burn-lightning writes.
    let version = find(br#""format_version":"4""#) + br#""format_version":""#.len();
    let mut newer = good.clone();
    newer[version] = b'5';
    let error = Checkpoint::from_bytes(&newer).unwrap_err().to_string();
    assert!(error.contains("format 5") && error.contains("upgrade"), "{error}");
    for older in [b'2', b'3'] {
        newer[version] = older;
        let error = Checkpoint::from_bytes(&newer).unwrap_err().to_string();
        assert!(error.contains("metadata section is damaged"), "{error}");
    }
    for unknown in [b'0', b'1'] {
        newer[version] = unknown;
        let error = Checkpoint::from_bytes(&newer).unwrap_err().to_string();
        assert!(
            error.contains("which no burn-lightning writes") && error.contains("damaged"),
            "{error}"
        );
    }
    // Format 1, from before the first release, is refused with a message that says so.
    let error = Checkpoint::from_bytes(b"BLCKPT01\x02\0\0\0\0\0\0\0{}")
        .unwrap_err()
        .to_string();
    assert!(error.contains("format 1"), "{error}");
}

#[test]
fn the_weights_open_with_pythons_safetensors() {
    let Ok(python) = std::env::var("REFERENCE_PYTHON") else {
        eprintln!("REFERENCE_PYTHON is not set (scripts/python_venv.sh makes it): checked in Rust only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trained = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    let path = checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt");
    let script = r#"
import json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
tensors = load_file(sys.argv[1])
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = f.metadata()
print(json.dumps({
    "names": sorted(tensors),
    "shapes": {k: list(v.shape) for k, v in tensors.items()},
    "weight": tensors["layer.weight"].astype(float).ravel().tolist(),
    "epoch": json.loads(meta["checkpoint"])["epoch"],
    "format_version": meta["format_version"],
}))
"#;
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (REFERENCE_PYTHON): {e}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        read["names"],
        serde_json::json!(["__burn_lightning__.optimizer", "layer.bias", "layer.weight"])
    );
    // burn's Linear stores its weight as [inputs, outputs].
    assert_eq!(read["shapes"]["layer.weight"], serde_json::json!([32, 2]));
    let weight: Vec<f32> = read["weight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(weight, trained.weights().0);
    assert_eq!(
        (read["epoch"].as_u64(), read["format_version"].as_str()),
        (Some(0), Some("4"))
    );
}

#[test]
fn model_checkpoint_keeps_the_best_k_by_a_monitored_metric() {
    // score per epoch: 3, 1, 4, 5, 2; 4 steps per epoch.
    let scores = [3.0, 1.0, 4.0, 5.0, 2.0];
    for (mode, kept, best, best_score) in [
        (
            Mode::Min,
            ["epoch=1-step=8.ckpt", "epoch=4-step=20.ckpt"],
            "epoch=1-step=8.ckpt",
            1.0,
        ),
        (
            Mode::Max,
            ["epoch=2-step=12.ckpt", "epoch=3-step=16.ckpt"],
            "epoch=3-step=16.ckpt",
            5.0,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let callback = ModelCheckpoint::new().monitor("score", mode).save_top_k(2);
        builder(dir.path())
            .max_epochs(5)
            .callback(callback)
            .build()
            .unwrap()
            .fit(Net::scored(&scores), data())
            .unwrap();
        let checkpoints = checkpoints_dir(dir.path());
        assert_eq!(file_names(&checkpoints), kept, "{mode:?}");
        // The newest kept file records the best so far.
        let newest = Checkpoint::load(&checkpoints.join(kept[1])).unwrap();
        let state = state_of(&newest, "ModelCheckpoint");
        assert_eq!(state["best_model_score"], serde_json::json!(best_score), "{mode:?}");
        assert!(
            state["best_model_path"].as_str().unwrap().ends_with(best),
            "{mode:?}: {state}"
        );
    }
}

#[test]
fn model_checkpoint_can_monitor_a_validation_metric() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    /// Records `val_loss` at each epoch end.
    struct ValLoss(Arc<Mutex<Vec<f64>>>);
    impl Callback<Net> for ValLoss {
        fn on_train_epoch_end(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
            self.0.lock().unwrap().push(cx.callback_metrics()["val_loss"]);
        }
    }
    // Max keeps the worst validation loss, which is not simply the newest checkpoint.
    let callback = ModelCheckpoint::new().monitor("val_loss", Mode::Max);
    builder(dir.path())
        .max_epochs(4)
        .callback(ValLoss(seen.clone()))
        .callback(callback)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    let losses = seen.lock().unwrap().clone();
    assert_eq!(losses.len(), 4);
    let worst = (0..4).max_by(|a, b| losses[*a].total_cmp(&losses[*b])).unwrap();
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        [format!("epoch={worst}-step={}.ckpt", 4 * (worst + 1))],
        "{losses:?}"
    );
}

#[test]
fn save_last_writes_last_ckpt_beside_the_kept_ones() {
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new().save_last(true);
    builder(dir.path())
        .max_epochs(2)
        .callback(callback)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=1-step=8.ckpt", "last.ckpt"]
    );
    assert_eq!(
        Checkpoint::load(&checkpoints_dir(dir.path()).join("last.ckpt"))
            .unwrap()
            .global_step,
        8
    );

    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new().save_last(true).save_top_k(0);
    builder(dir.path())
        .max_epochs(2)
        .callback(callback)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    assert_eq!(file_names(&checkpoints_dir(dir.path())), ["last.ckpt"]);
}

#[test]
fn model_checkpoint_writes_into_its_dirpath() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let callback = ModelCheckpoint::new().dirpath(&elsewhere);
    builder(dir.path())
        .max_epochs(1)
        .callback(callback)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    assert_eq!(file_names(&elsewhere), ["epoch=0-step=4.ckpt"]);
    assert!(file_names(&checkpoints_dir(dir.path())).is_empty());
}

#[test]
fn enable_checkpointing_false_writes_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    builder(dir.path())
        .max_epochs(2)
        .enable_checkpointing(false)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    // The run directory holds the hyperparameters and the default logger's event file, and no
    // checkpoint.
    let files = common::files_under(dir.path());
    assert!(
        files.contains(&PathBuf::from("lightning_logs/version_0/hparams.yaml")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_none_or(|e| e != "ckpt") && !f.ends_with("checkpoints")),
        "{files:?}"
    );
}

#[test]
fn early_stopping_ends_fitting_when_the_metric_stops_improving() {
    // Best at epoch 1; epochs 2 and 3 do not improve: with patience 2 the fit stops after epoch 3.
    let scores = [5.0, 4.0, 4.5, 4.6, 4.7, 4.8, 4.9, 5.0];
    let dir = tempfile::tempdir().unwrap();
    let model = Net::scored(&scores);
    let epochs = model.epochs.clone();
    let mut trainer = builder(dir.path())
        .max_epochs(8)
        .callback(EarlyStopping::new("score", Mode::Min).patience(2))
        .build()
        .unwrap();
    trainer.fit(model, data()).unwrap();
    assert_eq!(*epochs.lock().unwrap(), 4);
    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=3-step=16.ckpt")).unwrap();
    let state = state_of(&checkpoint, "EarlyStopping");
    assert_eq!(
        (state["stopped_epoch"].as_u64(), state["wait_count"].as_u64()),
        (Some(3), Some(2)),
        "{state}"
    );

    // Improving every epoch, it never stops.
    let dir = tempfile::tempdir().unwrap();
    let model = Net::scored(&[8.0, 7.0, 6.0, 5.0, 4.0]);
    let epochs = model.epochs.clone();
    builder(dir.path())
        .max_epochs(5)
        .callback(EarlyStopping::new("score", Mode::Min).patience(1))
        .build()
        .unwrap()
        .fit(model, data())
        .unwrap();
    assert_eq!(*epochs.lock().unwrap(), 5);
}

#[test]
fn early_stopping_counts_only_improvements_larger_than_min_delta() {
    let scores = [5.0, 4.95, 4.9, 4.85, 4.8, 4.75];
    let run = |min_delta: f64, mode: Mode, scores: &[f64]| {
        let dir = tempfile::tempdir().unwrap();
        let model = Net::scored(scores);
        let epochs = model.epochs.clone();
        let stopping = EarlyStopping::new("score", mode).patience(2).min_delta(min_delta);
        builder(dir.path())
            .max_epochs(6)
            .callback(stopping)
            .build()
            .unwrap()
            .fit(model, data())
            .unwrap();
        *epochs.lock().unwrap()
    };
    assert_eq!(run(0.0, Mode::Min, &scores), 6);
    assert_eq!(run(0.1, Mode::Min, &scores), 3);
    // In Max mode the same falling scores never improve.
    assert_eq!(run(0.0, Mode::Max, &scores), 3);
}

/// The state a callback saved, by the start of its state key (Lightning's keys name the type,
/// then the settings that tell two instances apart).
fn state_of<'a>(checkpoint: &'a Checkpoint, prefix: &str) -> &'a serde_json::Value {
    let mut states = checkpoint.callbacks.iter().filter(|(key, _)| key.starts_with(prefix));
    let (_, state) = states
        .next()
        .unwrap_or_else(|| panic!("no {prefix} state in {:?}", checkpoint.callbacks.keys()));
    assert!(states.next().is_none(), "several {prefix} states");
    state
}

#[test]
fn a_second_fit_on_the_same_trainer_goes_on_from_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .callback(ModelCheckpoint::new())
        .build()
        .unwrap();
    let first = trainer.fit(Net::new(&NetHparams::new()), data()).unwrap();
    assert_eq!((trainer.current_epoch(), trainer.global_step()), (1, 4));
    // As in Lightning, progress and the run directory persist: past `max_epochs`, the second
    // fit trains nothing and writes no checkpoint.
    let again = trainer.fit(first.clone(), data()).unwrap();
    assert_eq!((trainer.current_epoch(), trainer.global_step()), (1, 4));
    assert_eq!(values(again.layer.weight.val()), values(first.layer.weight.val()));
    let logs = dir.path().join("lightning_logs");
    assert_eq!(file_names(&logs.join("version_0/checkpoints")), ["epoch=0-step=4.ckpt"]);
    assert!(!logs.join("version_1").exists());
}

#[test]
fn early_stopping_keeps_its_state_across_fits_on_one_trainer() {
    let scores = [5.0, 4.0, 4.5, 4.6, 4.7, 4.8];
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(6)
        .callback(EarlyStopping::new("score", Mode::Min).patience(2))
        .build()
        .unwrap();
    let model = Net::scored(&scores);
    let epochs = model.epochs.clone();
    trainer.fit(model, data()).unwrap();
    assert_eq!(*epochs.lock().unwrap(), 4, "stops after two epochs without improvement");
    // The second fit goes on from epoch 4 with the callback's best score and wait count: the
    // first epoch without improvement stops it again (Lightning does not reset callbacks).
    let model = Net::scored(&scores);
    let epochs = model.epochs.clone();
    trainer.fit(model, data()).unwrap();
    assert_eq!(*epochs.lock().unwrap(), 1);
    assert_eq!(trainer.current_epoch(), 5);
}

#[test]
fn load_from_checkpoint_rebuilds_the_module_from_its_hparams_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let hparams = NetHparams::new().with_lr(0.02).with_tag("saved".into());
    let trained = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&hparams), data())
        .unwrap();
    let path = checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt");

    let loaded = Net::load_from_checkpoint(&path).unwrap();
    assert_eq!(loaded.hparams(), hparams);
    assert_eq!(loaded.weights(), trained.weights());

    let loaded =
        Net::load_from_checkpoint_with(&path, LoadOptions::new().hparam("lr", 0.5).hparam("tag", "tuned")).unwrap();
    assert_eq!(
        loaded.module.hparams(),
        hparams.clone().with_lr(0.5).with_tag("tuned".into())
    );
    assert_eq!(loaded.module.weights(), trained.weights());
    assert_eq!((loaded.checkpoint.epoch, loaded.checkpoint.global_step), (0, 4));
    assert_eq!(loaded.report, burn_lightning::KeyReport::default());

    let error = Net::load_from_checkpoint_with(&path, LoadOptions::new().hparam("learning_rate", 0.5)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`learning_rate` is not a hyperparameter") && message.contains("lr"),
        "{message}"
    );
    // An override that changes the layers' shape: the saved weights no longer fit.
    let error = Net::load_from_checkpoint_with(&path, LoadOptions::new().hparam("outputs", 3)).unwrap_err();
    assert!(error.to_string().contains("layer.weight"), "{error}");
}

#[test]
fn hparams_saved_by_an_older_version_of_the_module_load_with_the_new_fields_defaults() {
    let dir = tempfile::tempdir().unwrap();
    builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new().with_lr(0.03)), data())
        .unwrap();
    let mut checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    // The older module had `dropout` (since removed) and no `tag` (added since, with a default).
    let saved = checkpoint.hyper_parameters.as_object_mut().unwrap();
    saved.remove("tag");
    saved.insert("dropout".into(), serde_json::json!(0.1));
    let old = dir.path().join("old.ckpt");
    checkpoint.save(&old).unwrap();

    let loaded = Net::load_from_checkpoint(&old).unwrap();
    assert_eq!(loaded.hparams(), NetHparams::new().with_lr(0.03));
}

/// A module with one more layer than `Net`.
#[derive(Module, Debug)]
struct Wider {
    layer: Linear,
    extra: Linear,
}

#[test]
fn a_non_strict_load_reports_missing_and_unexpected_parameters_and_a_strict_one_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let trained = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    let device = Device::default();
    let wider = Wider {
        layer: LinearConfig::new(32, 2).init(&device),
        extra: LinearConfig::new(2, 2).init(&device),
    };
    let extra_before = values(wider.extra.weight.val());
    let error = checkpoint.restore_module(wider.clone()).unwrap_err().to_string();
    assert!(
        error.contains("missing from the checkpoint: extra.") && error.contains("strict(false)"),
        "{error}"
    );

    let (loaded, report) = checkpoint.restore_module_with(wider, false).unwrap();
    let mut missing = report.missing.clone();
    missing.sort();
    assert_eq!(missing, ["extra.bias", "extra.weight"]);
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert_eq!(values(loaded.layer.weight.val()), trained.weights().0);
    assert_eq!(
        values(loaded.extra.weight.val()),
        extra_before,
        "a missing parameter keeps its value"
    );

    // The other way round: the checkpoint has parameters the module lacks.
    #[derive(Module, Debug)]
    struct Bare {
        other: Linear,
    }
    let bare = Bare {
        other: LinearConfig::new(32, 2).init(&device),
    };
    let (_, report) = checkpoint.restore_module_with(bare, false).unwrap();
    let mut unexpected = report.unexpected.clone();
    unexpected.sort();
    assert_eq!(unexpected, ["layer.bias", "layer.weight"]);
}

/// Fits `Net::scored(scores)` for `scores.len()` epochs with `callback` and returns the trainer.
fn fit_scored(root: &Path, scores: &[f64], callback: ModelCheckpoint) -> Trainer<Net> {
    let mut trainer = builder(root)
        .max_epochs(scores.len())
        .callback(callback)
        .build()
        .unwrap();
    trainer.fit(Net::scored(scores), data()).unwrap();
    trainer
}

fn name_of(path: Option<&Path>) -> Option<String> {
    path.map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
}

#[test]
fn filename_templates_render_metrics_as_lightning_does() {
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new()
        .monitor("score", Mode::Min)
        .filename("{epoch}-{score:.2f}");
    fit_scored(dir.path(), &[3.0, 1.25, 4.0], callback);
    assert_eq!(file_names(&checkpoints_dir(dir.path())), ["epoch=1-score=1.25.ckpt"]);

    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new()
        .monitor("score", Mode::Min)
        .filename("e{epoch:02d}_s{score:.1f}_{missing}")
        .auto_insert_metric_name(false);
    fit_scored(dir.path(), &[3.0, 1.25, 4.0], callback);
    assert_eq!(file_names(&checkpoints_dir(dir.path())), ["e01_s1.2_0.ckpt"]);

    // A metric name with `/`: auto-inserted, it makes a subdirectory, as in Lightning; written
    // by hand it does not.
    struct LogSlashed;
    impl Callback<Net> for LogSlashed {
        fn on_train_epoch_end(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
            let value = 0.5 + cx.current_epoch as f64 / 10.0;
            cx.log("val/acc", value);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (inserted, by_hand) = (dir.path().join("inserted"), dir.path().join("by_hand"));
    builder(dir.path())
        .max_epochs(2)
        .callback(LogSlashed)
        .callback(ModelCheckpoint::new().dirpath(&inserted).filename("{val/acc:.2f}"))
        .callback(
            ModelCheckpoint::new()
                .dirpath(&by_hand)
                .filename("acc{val/acc:.2f}")
                .auto_insert_metric_name(false),
        )
        .build()
        .unwrap()
        .fit(Net::new(&NetHparams::new()), data())
        .unwrap();
    assert_eq!(file_names(&inserted.join("val")), ["acc=0.60.ckpt"]);
    assert_eq!(file_names(&by_hand), ["acc0.60.ckpt"]);
}

#[test]
fn save_top_k_minus_one_keeps_all_and_zero_keeps_none() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = fit_scored(
        dir.path(),
        &[3.0, 1.0, 4.0],
        ModelCheckpoint::new().monitor("score", Mode::Min).save_top_k(-1),
    );
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"]
    );
    let callback = trainer.checkpoint_callback().expect("a ModelCheckpoint");
    let kept: Vec<(Option<String>, f64)> = callback
        .best_k_models()
        .iter()
        .map(|(p, s)| (name_of(Some(p)), *s))
        .collect();
    assert_eq!(
        kept,
        [
            (Some("epoch=0-step=4.ckpt".into()), 3.0),
            (Some("epoch=1-step=8.ckpt".into()), 1.0),
            (Some("epoch=2-step=12.ckpt".into()), 4.0)
        ]
    );
    assert_eq!(name_of(callback.best_model_path()), Some("epoch=1-step=8.ckpt".into()));
    assert_eq!(callback.best_model_score(), Some(1.0));

    let dir = tempfile::tempdir().unwrap();
    let trainer = fit_scored(
        dir.path(),
        &[3.0, 1.0],
        ModelCheckpoint::new().monitor("score", Mode::Min).save_top_k(0),
    );
    assert!(file_names(&checkpoints_dir(dir.path())).is_empty());
    let callback = trainer.checkpoint_callback().unwrap();
    assert_eq!((callback.best_model_path(), callback.best_model_score()), (None, None));
}

#[test]
fn nan_scores_rank_worst_and_never_stop_later_saves() {
    // Kept 2: the NaN of epoch 0 counts as +inf, so epoch 2's 1.0 replaces it, and the NaN of
    // epoch 3 is not saved.
    let dir = tempfile::tempdir().unwrap();
    let trainer = fit_scored(
        dir.path(),
        &[f64::NAN, 2.0, 1.0, f64::NAN],
        ModelCheckpoint::new().monitor("score", Mode::Min).save_top_k(2),
    );
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"]
    );
    let callback = trainer.checkpoint_callback().unwrap();
    assert_eq!(callback.best_model_score(), Some(1.0));
    assert_eq!(
        name_of(callback.kth_best_model_path()),
        Some("epoch=1-step=8.ckpt".into())
    );
    assert_eq!(callback.kth_value(), 2.0);

    // In Mode::Max a NaN counts as -inf; with one kept, the first finite score replaces it.
    for (mode, expected_score) in [(Mode::Max, f64::NEG_INFINITY), (Mode::Min, f64::INFINITY)] {
        let dir = tempfile::tempdir().unwrap();
        let trainer = fit_scored(dir.path(), &[f64::NAN], ModelCheckpoint::new().monitor("score", mode));
        assert_eq!(
            trainer.checkpoint_callback().unwrap().best_model_score(),
            Some(expected_score)
        );
        let dir = tempfile::tempdir().unwrap();
        fit_scored(
            dir.path(),
            &[f64::NAN, 2.0],
            ModelCheckpoint::new().monitor("score", mode),
        );
        assert_eq!(
            file_names(&checkpoints_dir(dir.path())),
            ["epoch=1-step=8.ckpt"],
            "{mode:?}"
        );
    }
}

#[test]
fn save_last_link_makes_last_ckpt_a_link_to_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .callback(ModelCheckpoint::new().save_last(SaveLast::Link))
        .build()
        .unwrap();
    trainer.fit(Net::new(&NetHparams::new()), data()).unwrap();
    let checkpoints = checkpoints_dir(dir.path());
    assert_eq!(file_names(&checkpoints), ["epoch=2-step=12.ckpt", "last.ckpt"]);
    let last = checkpoints.join("last.ckpt");
    #[cfg(unix)]
    assert_eq!(std::fs::read_link(&last).unwrap(), Path::new("epoch=2-step=12.ckpt"));
    assert_eq!(Checkpoint::load(&last).unwrap().global_step, 12);
    let callback = trainer.checkpoint_callback().unwrap();
    assert_eq!(callback.last_model_path(), Some(last.as_path()));
}

#[test]
fn every_n_train_steps_saves_at_those_steps_only() {
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new().every_n_train_steps(3).save_top_k(-1);
    fit_scored(dir.path(), &[0.0, 0.0], callback);
    // 4 steps per epoch: steps 3 and 6, and none at the epoch ends.
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]
    );
}

#[test]
fn every_n_epochs_saves_every_nth_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new().every_n_epochs(2).save_top_k(-1);
    fit_scored(dir.path(), &[0.0; 5], callback);
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"]
    );
}

#[test]
fn train_time_interval_saves_when_the_interval_has_passed() {
    // A zero interval has always passed: a save after every batch.
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new()
        .train_time_interval(std::time::Duration::ZERO)
        .save_top_k(-1);
    fit_scored(dir.path(), &[0.0], callback);
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        [
            "epoch=0-step=1.ckpt",
            "epoch=0-step=2.ckpt",
            "epoch=0-step=3.ckpt",
            "epoch=0-step=4.ckpt"
        ]
    );
    // An hour has not passed: no save, and none at epoch ends either.
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new().train_time_interval(std::time::Duration::from_secs(3600));
    let trainer = fit_scored(dir.path(), &[0.0, 0.0], callback);
    assert!(file_names(&checkpoints_dir(dir.path())).is_empty());
    assert!(trainer.checkpoint_callback().unwrap().best_model_path().is_none());
}

#[test]
fn save_weights_only_writes_no_optimizer_or_callback_state() {
    let dir = tempfile::tempdir().unwrap();
    fit_scored(dir.path(), &[0.0], ModelCheckpoint::new().save_weights_only(true));
    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    assert!(!checkpoint.has_optimizer_state());
    assert!(checkpoint.callbacks.is_empty(), "{:?}", checkpoint.callbacks.keys());
    assert!(!checkpoint.extra.contains_key("note"), "no on_save_checkpoint hooks");
    assert_eq!(checkpoint.global_step, 4);
    // It still loads the module.
    Net::load_from_checkpoint(checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    fit_scored(dir.path(), &[0.0], ModelCheckpoint::new());
    let checkpoint = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    assert!(checkpoint.has_optimizer_state());
}

#[test]
fn the_trainer_gives_typed_access_to_its_checkpoint_and_early_stopping_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(4)
        .callback(EarlyStopping::new("score", Mode::Min).patience(1))
        .callback(ModelCheckpoint::new().monitor("score", Mode::Min).save_last(true))
        .callback(ModelCheckpoint::new().dirpath(dir.path().join("latest")))
        .build()
        .unwrap();
    trainer.fit(Net::scored(&[3.0, 1.0, 2.0, 0.5]), data()).unwrap();
    assert_eq!(trainer.checkpoint_callbacks().len(), 2);
    let best = trainer.checkpoint_callback().unwrap();
    assert_eq!(name_of(best.best_model_path()), Some("epoch=1-step=8.ckpt".into()));
    assert_eq!(best.best_model_score(), Some(1.0));
    assert_eq!(name_of(best.last_model_path()), Some("last.ckpt".into()));
    let latest = trainer.checkpoint_callbacks()[1];
    assert_eq!(name_of(latest.best_model_path()), Some("epoch=2-step=12.ckpt".into()));
    let stopping = trainer.early_stopping_callback().unwrap();
    assert_eq!(stopping.stopped_epoch(), Some(2));
    assert_eq!(stopping.stop_reason(), Some(EarlyStoppingReason::PatienceExhausted));
    assert_eq!((stopping.wait_count(), stopping.best_score()), (1, 1.0));
    assert!(stopping.stop_message().unwrap().contains("did not improve"));
}

#[test]
fn early_stopping_thresholds_and_check_finite_stop_with_their_reason() {
    let run = |scores: &[f64], stopping: EarlyStopping| {
        let dir = tempfile::tempdir().unwrap();
        let model = Net::scored(scores);
        let epochs = model.epochs.clone();
        let mut trainer = builder(dir.path())
            .max_epochs(scores.len())
            .callback(stopping)
            .build()
            .unwrap();
        trainer.fit(model, data()).unwrap();
        let stopping = trainer.early_stopping_callback().unwrap();
        (
            *epochs.lock().unwrap(),
            stopping.stop_reason(),
            stopping.stop_message().map(str::to_string),
        )
    };
    let patient = |mode| EarlyStopping::new("score", mode).patience(10);
    let (epochs, reason, message) = run(&[5.0, 3.0, 0.5, 0.4], patient(Mode::Min).stopping_threshold(1.0));
    assert_eq!((epochs, reason), (3, Some(EarlyStoppingReason::StoppingThreshold)));
    assert!(
        message
            .unwrap()
            .starts_with("Stopping threshold reached: score = 0.5 < 1")
    );
    let (epochs, reason, _) = run(&[5.0, 20.0, 1.0], patient(Mode::Min).divergence_threshold(10.0));
    assert_eq!((epochs, reason), (2, Some(EarlyStoppingReason::DivergenceThreshold)));
    let (epochs, reason, _) = run(&[0.1, 0.9, 0.95], patient(Mode::Max).stopping_threshold(0.9));
    assert_eq!((epochs, reason), (3, Some(EarlyStoppingReason::StoppingThreshold)));
    let (epochs, reason, _) = run(&[5.0, f64::NAN, 4.0], patient(Mode::Min));
    assert_eq!((epochs, reason), (2, Some(EarlyStoppingReason::NonFiniteMetric)));
    // Without `check_finite`, a NaN is a check without improvement.
    let (epochs, reason, _) = run(&[5.0, f64::NAN, 4.0], patient(Mode::Min).check_finite(false));
    assert_eq!((epochs, reason), (3, None));
    let (epochs, reason, _) = run(
        &[5.0, f64::NAN, 4.0],
        EarlyStopping::new("score", Mode::Min).patience(1).check_finite(false),
    );
    assert_eq!((epochs, reason), (2, Some(EarlyStoppingReason::PatienceExhausted)));
    // Accepted, and no different with one process.
    let (epochs, reason, _) = run(&[5.0, 6.0], patient(Mode::Min).verbose(true).log_rank_zero_only(true));
    assert_eq!((epochs, reason), (2, None));
}

#[test]
fn checkpoint_and_early_stopping_states_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("ckpts");
    let make_checkpoint = || {
        ModelCheckpoint::new()
            .dirpath(&checkpoints)
            .monitor("score", Mode::Min)
            .save_top_k(2)
            .save_last(true)
    };
    let make_stopping = || EarlyStopping::new("score", Mode::Min).patience(1);
    let mut trainer = builder(dir.path())
        .max_epochs(4)
        .callback(make_stopping())
        .callback(make_checkpoint())
        .build()
        .unwrap();
    // Epoch 2 does not improve: early stopping stops there, after the checkpoint of epoch 2
    // (second best) and `last.ckpt` are saved.
    trainer.fit(Net::scored(&[3.0, 1.0, 2.0, 4.0]), data()).unwrap();
    let last = Checkpoint::load(&checkpoints.join("last.ckpt")).unwrap();
    assert_eq!(last.global_step, 12);

    let saved = state_of(&last, "ModelCheckpoint").clone();
    for key in [
        "monitor",
        "best_model_score",
        "best_model_path",
        "current_score",
        "dirpath",
        "best_k_models",
        "kth_best_model_path",
        "kth_value",
        "last_model_path",
    ] {
        assert!(saved.get(key).is_some(), "Lightning's key {key} in {saved}");
    }
    let mut restored = make_checkpoint();
    Callback::<Net>::load_state_dict(&mut restored, saved.clone()).unwrap();
    let original = trainer.checkpoint_callback().unwrap();
    assert_eq!(restored.best_model_path(), original.best_model_path());
    assert_eq!(restored.best_model_score(), Some(1.0));
    assert_eq!(restored.best_k_models(), original.best_k_models());
    assert_eq!(restored.kth_best_model_path(), original.kth_best_model_path());
    assert_eq!(restored.last_model_path(), original.last_model_path());
    assert_eq!(Callback::<Net>::state_dict(&mut restored), Some(saved.clone()));

    // From another directory only `best_model_path` comes back, as in Lightning.
    let mut elsewhere = ModelCheckpoint::new()
        .dirpath(dir.path().join("other"))
        .monitor("score", Mode::Min);
    Callback::<Net>::load_state_dict(&mut elsewhere, saved).unwrap();
    assert_eq!(elsewhere.best_model_path(), original.best_model_path());
    assert_eq!(
        (elsewhere.best_model_score(), elsewhere.best_k_models().len()),
        (None, 0)
    );

    let saved = state_of(&last, "EarlyStopping").clone();
    let mut restored = make_stopping();
    Callback::<Net>::load_state_dict(&mut restored, saved.clone()).unwrap();
    let original = trainer.early_stopping_callback().unwrap();
    assert_eq!(
        (
            restored.wait_count(),
            restored.best_score(),
            restored.stopped_epoch(),
            restored.stop_reason()
        ),
        (
            original.wait_count(),
            original.best_score(),
            original.stopped_epoch(),
            original.stop_reason()
        )
    );
    assert_eq!(restored.stopped_epoch(), Some(2));
    assert_eq!(Callback::<Net>::state_dict(&mut restored), Some(saved));

    // A state it cannot read is an error, not a panic.
    let error =
        Callback::<Net>::load_state_dict(&mut make_stopping(), serde_json::json!({"wait_count": "x"})).unwrap_err();
    assert!(error.to_string().contains("wait_count"), "{error}");
}

#[test]
fn model_checkpoint_options_that_cannot_work_are_errors_naming_the_option() {
    let cases = [
        (ModelCheckpoint::new().save_top_k(-2), "save_top_k"),
        (ModelCheckpoint::new().save_top_k(2), "save_top_k"),
        (
            ModelCheckpoint::new().every_n_train_steps(2).every_n_epochs(1),
            "every_n_train_steps",
        ),
        (
            ModelCheckpoint::new()
                .every_n_epochs(1)
                .train_time_interval(std::time::Duration::from_secs(1)),
            "every_n_epochs",
        ),
        (ModelCheckpoint::new().filename("{epoch"), "filename"),
        (ModelCheckpoint::new().filename("{epoch}}"), "filename"),
    ];
    for (callback, flag) in cases {
        let error = Trainer::<Net>::builder()
            .callback(callback)
            .build()
            .err()
            .expect("an error");
        assert!(
            matches!(&error, Error::Config { flag: f, .. } if *f == flag),
            "{flag}: {error}"
        );
    }

    // A callback from `configure_callbacks` is checked when `fit` starts.
    let dir = tempfile::tempdir().unwrap();
    let error = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(
            Misconfigured {
                layer: LinearConfig::new(32, 2).init(&Device::default()),
            },
            Loaders::fit(pair_loader(16, 4), None),
        )
        .expect_err("an error")
        .into_error();
    assert!(matches!(&error, Error::Config { flag: "save_top_k", .. }), "{error}");
}

/// A module whose `configure_callbacks` returns a `ModelCheckpoint` that cannot work.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Misconfigured {
    layer: Linear,
}

#[lightning_module]
impl Misconfigured {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
    #[hook]
    fn configure_callbacks(&mut self) -> Callbacks<Self> {
        vec![Box::new(ModelCheckpoint::new().save_top_k(-3))]
    }
}

/// Fails the run at global step `at`.
struct FailAt(usize);

impl Callback<Net> for FailAt {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if cx.global_step == self.0 {
            cx.fail(Error::user("boom"));
        }
    }
}

#[test]
fn save_on_exception_saves_where_the_run_failed() {
    for (save, expected) in [
        (true, vec!["epoch=0-step=4.ckpt", "epoch=1-step=6.ckpt"]),
        (false, vec!["epoch=0-step=4.ckpt"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let error = builder(dir.path())
            .max_epochs(3)
            .callback(FailAt(6))
            .callback(ModelCheckpoint::new().save_on_exception(save))
            .build()
            .unwrap()
            .fit(Net::new(&NetHparams::new()), data())
            .expect_err("the run fails");
        assert!(error.to_string().contains("boom"), "{error}");
        assert_eq!(
            file_names(&checkpoints_dir(dir.path())),
            expected,
            "save_on_exception({save})"
        );
    }
}

#[test]
fn the_version_counter_can_be_turned_off_to_overwrite() {
    let run = |counter: bool| {
        let dir = tempfile::tempdir().unwrap();
        let callback = ModelCheckpoint::new()
            .monitor("score", Mode::Min)
            .filename("fixed")
            .save_top_k(-1)
            .enable_version_counter(counter);
        let trainer = fit_scored(dir.path(), &[3.0, 2.0, 1.0], callback);
        let best = trainer
            .checkpoint_callback()
            .unwrap()
            .best_model_path()
            .map(Path::to_path_buf);
        (
            file_names(&checkpoints_dir(dir.path())),
            best.map(|p| Checkpoint::load(&p).unwrap().global_step),
        )
    };
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        run(true),
        (names(&["fixed-v1.ckpt", "fixed-v2.ckpt", "fixed.ckpt"]), Some(12))
    );
    assert_eq!(run(false), (names(&["fixed.ckpt"]), Some(12)));
}

/// A module whose `on_save_checkpoint` panics (a bug in it), counting its calls.
#[lightning_module]
#[derive(Module, Debug)]
pub struct PanicsOnSave {
    layer: Linear,
    #[module(skip)]
    saves: Arc<Mutex<usize>>,
}

#[lightning_module]
impl PanicsOnSave {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn on_save_checkpoint(&mut self, _checkpoint: &mut Checkpoint) {
        *self.saves.lock().unwrap() += 1;
        panic!("the module's state cannot be saved");
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new(), 0.05)
    }
}

/// Before, the on-exception checkpoint called the hook that had panicked again, and its second
/// panic left neither the checkpoint nor `report.html`.
#[test]
fn a_panic_in_on_save_checkpoint_still_leaves_the_on_exception_checkpoint_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let saves = Arc::new(Mutex::new(0));
    let module = PanicsOnSave {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
        saves: saves.clone(),
    };
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(1)
        .callback(ModelCheckpoint::new().every_n_train_steps(2))
        .callback(OnExceptionCheckpoint::new(dir.path()))
        .build()
        .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(trainer.fit(module, data()))))
        .expect_err("the panic goes on to the caller, as in Lightning");
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"the module's state cannot be saved")
    );
    assert_eq!(*saves.lock().unwrap(), 1, "the hook that panicked is not called again");
    let saved = Checkpoint::load(&dir.path().join("on_exception.ckpt")).unwrap();
    assert_eq!(saved.global_step, 2);
    assert!(dir.path().join("lightning_logs/version_0/report.html").is_file());
}
