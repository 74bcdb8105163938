//! Callbacks as a user sees them: when `ModelCheckpoint` and `EarlyStopping` act (at the end of
//! the training epoch, or after each validation run, as Lightning decides), missing monitored
//! metrics, two checkpoint callbacks in one run, `cx.save_checkpoint` from any entry point, hook
//! state that `test` keeps, panics and checkpoint write errors during `fit`, no hook after a
//! failed one, and temporary files a killed run left.
//!
//! Each test says in a comment what the runtime did before it followed Lightning here, which is
//! what the test would catch again.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, file_names, pair_loader, values};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A linear regressor that logs `val_loss` in `validation_step`, optionally a scripted
/// `val_score` at the end of each validation run, and counts its test batches in a plain field.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    /// SGD's learning rate.
    #[hparam(default = 0.05)]
    lr: f64,
    /// `val_score` logged at the end of validation run `i` (the sanity check not counted) is
    /// `val_scores[i]` (nothing when empty).
    #[module(skip)]
    val_scores: Vec<f64>,
    /// Validation runs that ended, the sanity check not counted.
    #[module(skip)]
    val_runs: Arc<Mutex<usize>>,
    /// Test batches seen: a plain field that `test_step(&mut self)` increments.
    #[module(skip)]
    test_batches: usize,
}

impl Net {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            lr: NetHparams::new().lr,
            val_scores: Vec::new(),
            val_runs: Arc::default(),
            test_batches: 0,
        }
    }

    fn scored(val_scores: &[f64]) -> Self {
        Self {
            val_scores: val_scores.to_vec(),
            ..Self::new()
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
    fn on_validation_epoch_end(&mut self, cx: &mut EpochContext) {
        if cx.sanity_checking() {
            return;
        }
        let mut runs = self.val_runs.lock().unwrap();
        if let Some(score) = self.val_scores.get(*runs) {
            cx.log("val_score", *score);
        }
        *runs += 1;
    }
    #[hook]
    fn test_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        self.test_batches += 1;
        cx.log("test_loss", self.loss(batch));
    }
    #[hook]
    fn predict_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.x)
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
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

/// The states of the callbacks whose state key starts with `prefix`, by key.
fn states_of<'a>(checkpoint: &'a Checkpoint, prefix: &str) -> Vec<(&'a String, &'a serde_json::Value)> {
    checkpoint
        .callbacks
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .collect()
}

/// The one state of a callback whose state key starts with `prefix`.
fn state_of<'a>(checkpoint: &'a Checkpoint, prefix: &str) -> &'a serde_json::Value {
    let states = states_of(checkpoint, prefix);
    assert_eq!(
        states.len(),
        1,
        "one {prefix} state in {:?}",
        checkpoint.callbacks.keys()
    );
    states[0].1
}

/// Records the hooks of fit it runs (and the error `on_exception` receives), in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, hook: &str) {
        self.0.lock().unwrap().push(hook.to_string());
    }

    fn hooks(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Callback<Net> for Seen {
    fn setup(&mut self, _module: &mut Net, _stage: Stage, _cx: &mut HookContext<'_>) {
        self.push("setup");
    }
    fn on_fit_start(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.push("on_fit_start");
    }
    fn on_sanity_check_start(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.push("on_sanity_check_start");
    }
    fn on_sanity_check_end(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.push("on_sanity_check_end");
    }
    fn on_train_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.push("on_train_start");
    }
    fn on_train_epoch_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.push("on_train_epoch_start");
    }
    fn on_train_batch_start(&mut self, _module: &mut Net, _batch: &Pair, _batch_idx: usize, _cx: &mut StepContext<'_>) {
        self.push("on_train_batch_start");
    }
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        self.push("on_train_batch_end");
    }
    fn on_validation_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.push("on_validation_start");
    }
    fn on_validation_epoch_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.push("on_validation_epoch_start");
    }
    fn on_validation_batch_start(
        &mut self,
        _module: &mut Net,
        _batch: &Pair,
        _batch_idx: usize,
        _dataloader_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        self.push("on_validation_batch_start");
    }
    fn on_validation_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: &(),
        _batch: &Pair,
        _batch_idx: usize,
        _dataloader_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        self.push("on_validation_batch_end");
    }
    fn on_validation_epoch_end(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.push("on_validation_epoch_end");
    }
    fn on_validation_end(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.push("on_validation_end");
    }
    fn on_train_epoch_end(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.push("on_train_epoch_end");
    }
    fn on_save_checkpoint(&mut self, _module: &mut Net, _checkpoint: &mut Checkpoint, _cx: &mut HookContext<'_>) {
        self.push("on_save_checkpoint");
    }
    fn on_train_end(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.push("on_train_end");
    }
    fn on_fit_end(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.push("on_fit_end");
    }
    fn teardown(&mut self, _module: &mut Net, _stage: Stage, _cx: &mut HookContext<'_>) {
        self.push("teardown");
    }
    fn on_exception(&mut self, _module: &mut Net, error: &Error, _cx: &mut HookContext<'_>) {
        self.push(&format!("on_exception: {error}"));
    }
}

#[test]
fn validating_every_other_epoch_checkpoints_and_stops_early_after_those_validations() {
    // Before, both callbacks acted at the end of every training epoch: at the end of epoch 0 no
    // validation had run, `val_loss` was missing, and the fit failed there.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(4)
        .check_val_every_n_epoch(Some(2))
        .callback(EarlyStopping::new("val_loss", Mode::Min))
        .callback(ModelCheckpoint::new().monitor("val_loss", Mode::Min).save_top_k(2))
        .build()
        .unwrap();
    let model = Net::new();
    let runs = model.val_runs.clone();
    trainer.fit(model, data()).unwrap();
    assert_eq!(trainer.current_epoch(), 4);
    assert_eq!(*runs.lock().unwrap(), 2, "validation in epochs 1 and 3");
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"]
    );
}

#[test]
fn validating_four_times_an_epoch_checkpoints_after_each_validation_not_once_per_epoch() {
    // Before, `ModelCheckpoint` saved only at the end of the training epoch: one file,
    // `epoch=0-step=4.ckpt`. The sanity check (on here) saves nothing: it would be
    // `epoch=0-step=0.ckpt`.
    let dir = tempfile::tempdir().unwrap();
    let model = Net::new();
    let runs = model.val_runs.clone();
    builder(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(2)
        .val_check_interval(0.25)
        .callback(ModelCheckpoint::new().monitor("val_loss", Mode::Min).save_top_k(10))
        .build()
        .unwrap()
        .fit(model, data())
        .unwrap();
    assert_eq!(*runs.lock().unwrap(), 4);
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        [
            "epoch=0-step=1.ckpt",
            "epoch=0-step=2.ckpt",
            "epoch=0-step=3.ckpt",
            "epoch=0-step=4.ckpt"
        ]
    );
}

#[test]
fn validating_four_times_an_epoch_early_stopping_counts_validation_runs() {
    // `val_score` per validation run: best at run 3 (the last of epoch 0), no improvement at runs
    // 4 and 5: with patience 2 the fit stops right after run 5, the second validation of epoch 1,
    // at step 6. Before, `EarlyStopping` checked once per epoch, at its end (runs 3, 7, 11: 2.0,
    // 4.8, 4.9): it stopped after epoch 2, at step 12.
    let scores = [
        5.0, 4.0, 3.0, 2.0, 4.5, 4.6, 4.7, 4.8, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9, 4.9,
    ];
    let dir = tempfile::tempdir().unwrap();
    let model = Net::scored(&scores);
    let runs = model.val_runs.clone();
    let mut trainer = builder(dir.path())
        .max_epochs(5)
        .val_check_interval(0.25)
        .callback(EarlyStopping::new("val_score", Mode::Min).patience(2))
        .build()
        .unwrap();
    trainer.fit(model, data()).unwrap();
    assert_eq!(*runs.lock().unwrap(), 6);
    assert_eq!((trainer.global_step(), trainer.current_epoch()), (6, 2));
    // The default checkpoint also saves after each validation, and keeps the latest; it runs
    // after `EarlyStopping` in the same hook, so it holds the decision.
    let checkpoints = checkpoints_dir(dir.path());
    assert_eq!(file_names(&checkpoints), ["epoch=1-step=6.ckpt"]);
    let checkpoint = Checkpoint::load(&checkpoints.join("epoch=1-step=6.ckpt")).unwrap();
    let state = state_of(&checkpoint, "EarlyStopping");
    assert_eq!(
        (state["stopped_epoch"].as_u64(), state["wait_count"].as_u64()),
        (Some(1), Some(2)),
        "{state}"
    );
}

#[test]
fn a_validation_metric_missing_before_the_first_validation_is_no_error_for_model_checkpoint() {
    // Saving at the end of every training epoch, validating every other epoch: at the end of
    // epoch 0 `val_loss` cannot be there yet. Before, that failed the fit in epoch 0.
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new()
        .monitor("val_loss", Mode::Min)
        .save_top_k(10)
        .save_on_train_epoch_end(Some(true));
    let mut trainer = builder(dir.path())
        .max_epochs(4)
        .check_val_every_n_epoch(Some(2))
        .callback(callback)
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    // Epoch 0 saved nothing; epoch 2 saves with the `val_loss` of epoch 1's validation.
    assert_eq!(
        file_names(&checkpoints_dir(dir.path())),
        ["epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt", "epoch=3-step=16.ckpt"]
    );
}

#[test]
fn a_monitored_key_never_logged_fails_once_validation_ran_and_the_trained_model_comes_back() {
    // Before, the fit failed at the end of epoch 0 (or, with the warning alone, never), and a
    // failed fit returned no module.
    let dir = tempfile::tempdir().unwrap();
    let callback = ModelCheckpoint::new()
        .monitor("nope", Mode::Min)
        .save_on_train_epoch_end(Some(true));
    let mut trainer = builder(dir.path())
        .max_epochs(4)
        .check_val_every_n_epoch(Some(2))
        .callback(callback)
        .build()
        .unwrap();
    let model = Net::new();
    let initial = model.weights();
    let failed = trainer.fit(model, data()).unwrap_err();
    let message = failed.error.to_string();
    assert!(message.contains("`nope`"), "the error names the key: {message}");
    assert!(message.contains("val_loss"), "and lists what was logged: {message}");
    // It failed at the end of epoch 1, after the first validation, not in epoch 0.
    assert_eq!(trainer.global_step(), 8);
    assert_ne!(failed.model.weights(), initial, "the model comes back trained");
    assert!(file_names(&checkpoints_dir(dir.path())).is_empty());
}

#[test]
fn early_stopping_on_a_missing_key_fails_when_strict_and_never_under_fast_dev_run() {
    // Before, `EarlyStopping` had no `strict` (a missing key always failed the fit) and also ran
    // under `fast_dev_run`, failing the smoke test.
    let dir = tempfile::tempdir().unwrap();
    let error = builder(dir.path())
        .max_epochs(1)
        .callback(EarlyStopping::new("nope", Mode::Min))
        .build()
        .unwrap()
        .fit(Net::new(), data())
        .unwrap_err()
        .error;
    assert!(error.to_string().contains("`nope`"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(2)
        .callback(EarlyStopping::new("nope", Mode::Min).strict(false))
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(
        trainer.current_epoch(),
        2,
        "not strict: the check is skipped, training goes on"
    );

    // Under `fast_dev_run` checkpointing is off too, even with a `ModelCheckpoint` given.
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("ckpts");
    let mut trainer = builder(dir.path())
        .fast_dev_run(2)
        .callback(EarlyStopping::new("nope", Mode::Min))
        .callback(ModelCheckpoint::new().dirpath(&checkpoints))
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(trainer.global_step(), 2);
    assert!(
        common::files_under(dir.path()).is_empty(),
        "no files under fast_dev_run"
    );
}

#[test]
fn two_model_checkpoints_keep_their_own_files_and_states() {
    // Before, both saved their states under one key ("ModelCheckpoint"), and the second wrote
    // over (and then deleted) the first one's file of the same name.
    let dir = tempfile::tempdir().unwrap();
    let latest = ModelCheckpoint::new();
    let best = ModelCheckpoint::new().monitor("val_loss", Mode::Min);
    let model = Net::new();
    let losses = Arc::new(Mutex::new(Vec::new()));
    /// Records `val_loss` at each epoch end.
    struct ValLoss(Arc<Mutex<Vec<f64>>>);
    impl Callback<Net> for ValLoss {
        fn on_train_epoch_end(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
            self.0.lock().unwrap().push(cx.callback_metrics()["val_loss"]);
        }
    }
    builder(dir.path())
        .max_epochs(2)
        .seed(42)
        .callback(ValLoss(losses.clone()))
        .callback(latest)
        .callback(best)
        .build()
        .unwrap()
        .fit(model, data())
        .unwrap();
    let losses = losses.lock().unwrap().clone();
    assert!(losses[1] < losses[0], "validation loss improves: {losses:?}");

    let checkpoints = checkpoints_dir(dir.path());
    // Epoch 0: `epoch=0-step=4.ckpt` and `epoch=0-step=4-v1.ckpt`; epoch 1 replaces each.
    assert_eq!(
        file_names(&checkpoints),
        ["epoch=1-step=8-v1.ckpt", "epoch=1-step=8.ckpt"]
    );
    let last = Checkpoint::load(&checkpoints.join("epoch=1-step=8-v1.ckpt")).unwrap();
    let states = states_of(&last, "ModelCheckpoint");
    assert_eq!(
        states.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(),
        [
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}",
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}",
        ]
    );
    let best_path = |state: &serde_json::Value| state["best_model_path"].as_str().unwrap().to_string();
    assert!(
        best_path(states[0].1).ends_with("epoch=1-step=8-v1.ckpt"),
        "{}",
        states[0].1
    );
    assert!(
        best_path(states[1].1).ends_with("epoch=1-step=8.ckpt"),
        "{}",
        states[1].1
    );
    assert_eq!(states[0].1["monitor"], "val_loss");

    // The first callback's file was taken right after it saved, before the second one ran: it
    // holds the second one's state of epoch 0 (Lightning saves synchronously, in callback order).
    let first = Checkpoint::load(&checkpoints.join("epoch=1-step=8.ckpt")).unwrap();
    let monitored = states_of(&first, "ModelCheckpoint{'monitor': 'val_loss'");
    assert_eq!(monitored.len(), 1);
    assert!(
        best_path(monitored[0].1).ends_with("epoch=0-step=4-v1.ckpt"),
        "{}",
        monitored[0].1
    );
}

#[test]
fn two_model_checkpoints_with_save_last_keep_their_own_last_files() {
    // Before, the second one's `last.ckpt` overwrote the first one's.
    let dir = tempfile::tempdir().unwrap();
    builder(dir.path())
        .max_epochs(2)
        .callback(ModelCheckpoint::new().save_last(true).save_top_k(0))
        .callback(
            ModelCheckpoint::new()
                .monitor("val_loss", Mode::Min)
                .save_last(true)
                .save_top_k(0),
        )
        .build()
        .unwrap()
        .fit(Net::new(), data())
        .unwrap();
    let checkpoints = checkpoints_dir(dir.path());
    assert_eq!(file_names(&checkpoints), ["last-v1.ckpt", "last.ckpt"]);
    for name in ["last.ckpt", "last-v1.ckpt"] {
        let checkpoint = Checkpoint::load(&checkpoints.join(name)).unwrap();
        assert_eq!(checkpoint.global_step, 8, "{name}");
    }
    let last = Checkpoint::load(&checkpoints.join("last-v1.ckpt")).unwrap();
    let states = states_of(&last, "ModelCheckpoint");
    assert_eq!(states.len(), 2);
    let last_paths: Vec<&str> = states
        .iter()
        .map(|(_, state)| state["last_model_path"].as_str().unwrap())
        .collect();
    assert!(last_paths[0].ends_with("last-v1.ckpt"), "{last_paths:?}");
    assert!(last_paths[1].ends_with("last.ckpt"), "{last_paths:?}");
}

#[test]
fn a_second_run_into_the_same_dirpath_keeps_the_first_runs_files() {
    // Lightning's version counter: the second run's `epoch=0-step=4` is taken, so it writes
    // `-v1`, and it never deletes a file it did not write.
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    for root in ["first", "second"] {
        builder(&dir.path().join(root))
            .max_epochs(1)
            .callback(ModelCheckpoint::new().dirpath(&shared))
            .build()
            .unwrap()
            .fit(Net::new(), data())
            .unwrap();
    }
    assert_eq!(file_names(&shared), ["epoch=0-step=4-v1.ckpt", "epoch=0-step=4.ckpt"]);
}

/// Saves a checkpoint into its directory at `on_train_end`, `on_fit_end`, `on_test_end`, at
/// `on_validation_end` of `Trainer::validate` and at `on_predict_end`.
struct SaveAtEnds(PathBuf);

impl Callback<Net> for SaveAtEnds {
    fn on_train_end(&mut self, _module: &mut Net, cx: &mut HookContext<'_>) {
        cx.save_checkpoint(self.0.join("train_end.ckpt"));
    }
    fn on_fit_end(&mut self, _module: &mut Net, cx: &mut HookContext<'_>) {
        cx.save_checkpoint(self.0.join("fit_end.ckpt"));
    }
    fn on_test_end(&mut self, _module: &mut Net, cx: &mut HookContext<'_>) {
        cx.save_checkpoint(self.0.join("test_end.ckpt"));
    }
    fn on_validation_end(&mut self, _module: &mut Net, cx: &mut HookContext<'_>) {
        if cx.function == TrainerFn::Validating {
            cx.save_checkpoint(self.0.join("validate_end.ckpt"));
        }
    }
    fn on_predict_end(&mut self, _module: &mut Net, cx: &mut HookContext<'_>) {
        cx.save_checkpoint(self.0.join("predict_end.ckpt"));
    }
}

#[test]
fn save_checkpoint_works_from_the_end_hooks_of_every_entry_point() {
    // Before, a checkpoint asked for after the training loop (or outside fit) was never written.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let mut trainer = builder(dir.path())
        .max_epochs(2)
        .enable_checkpointing(false)
        .callback(SaveAtEnds(saved.clone()))
        .build()
        .unwrap();
    let mut model = trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(file_names(&saved), ["fit_end.ckpt", "train_end.ckpt"]);
    for name in ["train_end.ckpt", "fit_end.ckpt"] {
        let checkpoint = Checkpoint::load(&saved.join(name)).unwrap();
        assert_eq!((checkpoint.epoch, checkpoint.global_step), (2, 8), "{name}");
        assert!(checkpoint.has_optimizer_state(), "{name}: saved during fit");
    }

    trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    assert_eq!(file_names(&saved), ["fit_end.ckpt", "test_end.ckpt", "train_end.ckpt"]);
    trainer.validate(&mut model, Loaders::val(pair_loader(8, 4))).unwrap();
    trainer
        .predict(&mut model, Loaders::predict(pair_loader(8, 4)))
        .unwrap();
    for name in ["test_end.ckpt", "validate_end.ckpt", "predict_end.ckpt"] {
        let checkpoint = Checkpoint::load(&saved.join(name)).unwrap();
        assert!(
            !checkpoint.has_optimizer_state(),
            "{name}: outside fit there is no optimizer"
        );
        // The trainer's progress, as Lightning's `trainer.save_checkpoint` after a fit.
        assert_eq!((checkpoint.epoch, checkpoint.global_step), (2, 8), "{name}");
        let restored = checkpoint.restore_module(Net::new()).unwrap();
        assert_eq!(
            restored.weights(),
            model.weights(),
            "{name} holds the evaluated weights"
        );
    }
}

#[test]
fn test_keeps_what_test_step_set_on_the_module_and_the_module_still_trains() {
    // Before, `test` took `&M` and ran on a copy: the count stayed 0.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(1).build().unwrap();
    let mut model = Net::new();
    let metrics = trainer.test(&mut model, Loaders::test(pair_loader(16, 4))).unwrap();
    assert!(metrics[0].get("test_loss").is_some_and(f64::is_finite));
    assert_eq!(model.test_batches, 4);

    let before = model.weights();
    let mut trained = trainer.fit(model, data()).unwrap();
    assert_ne!(trained.weights(), before, "the tested module trains");
    assert_eq!(trainer.global_step(), 4);

    // The same with a module that comes out of `fit`: tested, it keeps the count (4 more), and
    // trains again.
    trainer.test(&mut trained, Loaders::test(pair_loader(16, 4))).unwrap();
    assert_eq!(trained.test_batches, 8);
    let before = trained.weights();
    let dir = tempfile::tempdir().unwrap();
    let again = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(trained, data())
        .unwrap();
    assert_ne!(again.weights(), before, "the tested module trains again");
}

/// Asks for a checkpoint at `on_train_batch_end` of epoch 1, batch 1.
struct SaveBeforePanic(PathBuf);

impl Callback<Net> for SaveBeforePanic {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if cx.current_epoch == 1 && batch_idx == 1 {
            cx.save_checkpoint(&self.0);
        }
    }
}

/// Asks for a checkpoint at `on_train_batch_end` of epoch 1, batch 1, then panics there.
struct PanicInEpoch1(PathBuf);

impl Callback<Net> for PanicInEpoch1 {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if cx.current_epoch == 1 && batch_idx == 1 {
            cx.save_checkpoint(&self.0);
            panic!("boom in epoch {}", cx.current_epoch);
        }
    }
}

/// Records the errors `on_exception` receives: the panic message of an `Error::Panic`, or the
/// error's message with a marker.
struct Exceptions(Arc<Mutex<Vec<String>>>);

impl Callback<Net> for Exceptions {
    fn on_exception(&mut self, _module: &mut Net, error: &Error, _cx: &mut HookContext<'_>) {
        let entry = match error {
            Error::Panic { message } => format!("panic: {message}"),
            other => format!("not a panic: {other}"),
        };
        self.0.lock().unwrap().push(entry);
    }
}

#[test]
fn a_panic_in_fit_reaches_on_exception_and_the_checkpoints_asked_for_are_written() {
    // Before, a panic went straight through `fit`: no `on_exception`, and the checkpoints asked
    // for in the hook that panicked (written once the hook returned) were lost.
    let dir = tempfile::tempdir().unwrap();
    let requested = dir.path().join("before_panic.ckpt");
    let pending = dir.path().join("in_panicking_hook.ckpt");
    let exceptions = Arc::new(Mutex::new(Vec::new()));
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .callback(SaveBeforePanic(requested.clone()))
        .callback(PanicInEpoch1(pending.clone()))
        .callback(Exceptions(exceptions.clone()))
        .build()
        .unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| trainer.fit(Net::new(), data()).is_ok()));
    let payload = outcome.expect_err("the panic goes on through fit");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("boom in epoch 1")
    );
    assert_eq!(*exceptions.lock().unwrap(), ["panic: boom in epoch 1"]);

    // The default checkpoint of epoch 0; the one asked for by the callback before the panicking
    // one, in the same hook call; and the one the panicking callback asked for just before it
    // panicked (still pending when the panic began).
    assert_eq!(file_names(&checkpoints_dir(dir.path())), ["epoch=0-step=4.ckpt"]);
    let epoch0 = Checkpoint::load(&checkpoints_dir(dir.path()).join("epoch=0-step=4.ckpt")).unwrap();
    assert_eq!((epoch0.epoch, epoch0.global_step), (0, 4));
    for path in [&requested, &pending] {
        let checkpoint = Checkpoint::load(path).unwrap();
        assert_eq!((checkpoint.epoch, checkpoint.global_step), (1, 6), "{}", path.display());
        assert!(checkpoint.has_optimizer_state());
    }
}

/// Asks for a checkpoint at `on_test_batch_end` of batch 1, then panics there.
struct PanicInTest(PathBuf);

impl Callback<Net> for PanicInTest {
    fn on_test_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: &(),
        _batch: &Pair,
        batch_idx: usize,
        _dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if batch_idx == 1 {
            cx.save_checkpoint(&self.0);
            panic!("boom in test batch {batch_idx}");
        }
    }
}

#[test]
fn a_panic_in_test_reaches_on_exception_and_the_checkpoint_asked_for_is_written() {
    // As in fit: before, the panic went straight through, without `on_exception`, and the
    // checkpoint asked for in the hook was lost.
    let dir = tempfile::tempdir().unwrap();
    let pending = dir.path().join("in_test.ckpt");
    let exceptions = Arc::new(Mutex::new(Vec::new()));
    let mut trainer = builder(dir.path())
        .callback(PanicInTest(pending.clone()))
        .callback(Exceptions(exceptions.clone()))
        .build()
        .unwrap();
    let mut model = Net::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        trainer.test(&mut model, Loaders::test(pair_loader(16, 4))).is_ok()
    }));
    let payload = outcome.expect_err("the panic goes on through test");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("boom in test batch 1")
    );
    assert_eq!(*exceptions.lock().unwrap(), ["panic: boom in test batch 1"]);
    let checkpoint = Checkpoint::load(&pending).unwrap();
    assert!(!checkpoint.has_optimizer_state());
    let restored = checkpoint.restore_module(Net::new()).unwrap();
    assert_eq!(restored.weights(), model.weights());
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_fit_with_its_path() {
    // Before, an error writing a checkpoint in the background was lost (or surfaced as a panic of
    // the writer thread).
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"a file, not a directory").unwrap();
    let target = blocker.join("checkpoints");
    let root = dir.path().to_path_buf();
    let dirpath = target.clone();
    let (sender, receiver) = std::sync::mpsc::channel();
    let fitting = std::thread::spawn(move || {
        let mut trainer = builder(&root)
            .max_epochs(2)
            .callback(ModelCheckpoint::new().dirpath(dirpath))
            .build()
            .unwrap();
        let result = trainer
            .fit(Net::new(), data())
            .map(|_| ())
            .map_err(|e| e.error.to_string());
        sender.send(result).unwrap();
    });
    let result = receiver
        .recv_timeout(Duration::from_secs(120))
        .expect("fit returns: it neither hangs nor panics");
    fitting.join().expect("no panic");
    let message = result.unwrap_err();
    assert!(
        message.contains(&*target.to_string_lossy()),
        "the error names the directory: {message}"
    );
}

/// Fails with its error at `on_validation_start`.
struct FailAtValidationStart;

#[derive(Debug, thiserror::Error)]
#[error("A refuses to validate")]
struct Refused;

impl Callback<Net> for FailAtValidationStart {
    fn on_validation_start(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
        cx.fail(Error::user(Refused));
    }
}

#[test]
fn no_hook_runs_after_one_that_failed() {
    // Before, the error was looked at once every callback and the module had run the hook: the
    // bystander saw `on_validation_start`, and the validation went on.
    let dir = tempfile::tempdir().unwrap();
    let bystander = Seen::default();
    let mut trainer = builder(dir.path())
        .max_epochs(2)
        .callback(FailAtValidationStart)
        .callback(bystander.clone())
        .build()
        .unwrap();
    let model = Net::new();
    let runs = model.val_runs.clone();
    let initial = model.weights();
    let failed = trainer.fit(model, data()).unwrap_err();
    let error = failed.error;
    assert_eq!(error.to_string(), "A refuses to validate");
    assert!(matches!(error, Error::User(_)), "{error:?}");
    assert_eq!(*runs.lock().unwrap(), 0, "nor the module's `on_validation_epoch_end`");
    // Epoch 0's four batches, then the validation A failed at the start of: nothing more but
    // `on_exception`, with A's error.
    let hooks = bystander.hooks();
    let batch = ["on_train_batch_start", "on_train_batch_end"];
    let expected: Vec<&str> = ["setup", "on_fit_start", "on_train_start", "on_train_epoch_start"]
        .into_iter()
        .chain(batch.repeat(4))
        .chain(["on_exception: A refuses to validate"])
        .collect();
    assert_eq!(hooks, expected);
    // The module comes back with epoch 0's training, and trains on from there.
    let trained = failed.model.weights();
    assert_ne!(trained, initial);
    let dir = tempfile::tempdir().unwrap();
    let again = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(failed.model, data())
        .unwrap();
    assert_ne!(again.weights(), trained);
}

#[test]
fn without_validation_data_there_is_no_sanity_check() {
    // Before, the sanity-check hooks ran (over no batches) whenever the module had a
    // `validation_step`.
    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::default();
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(2)
        .callback(seen.clone())
        .build()
        .unwrap();
    let model = Net::new();
    let runs = model.val_runs.clone();
    trainer.fit(model, Loaders::fit(pair_loader(16, 4), None)).unwrap();
    let hooks = seen.hooks();
    assert_eq!(
        hooks[..3],
        ["setup", "on_fit_start", "on_train_start"],
        "no sanity check between fit start and train start: {hooks:?}"
    );
    for hook in ["on_sanity_check_start", "on_sanity_check_end", "on_validation_start"] {
        assert!(!hooks.iter().any(|h| h == hook), "`{hook}` ran: {hooks:?}");
    }
    assert_eq!(*runs.lock().unwrap(), 0);
    assert_eq!(trainer.global_step(), 4);
}

/// Whether the stale temporary file still exists when training starts.
struct StaleAtTrainStart(PathBuf, Arc<Mutex<Option<bool>>>);

impl Callback<Net> for StaleAtTrainStart {
    fn on_train_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        *self.1.lock().unwrap() = Some(self.0.exists());
    }
}

#[test]
fn temporary_files_a_killed_run_left_are_removed_with_the_first_checkpoint() {
    // Before, they stayed in the checkpoint directory for good.
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("ckpts");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let host = burn_lightning::checkpoint::run_dir::host_name();
    // Its writer is a process of this host that ran and is gone (`kill -9` mid-write).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let stale = checkpoints.join(format!(".epoch=0-step=4.ckpt.tmp-abc123-{gone_pid}-{host}"));
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    // Another run sharing the directory, still writing: its file stays.
    let mut writing = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let live = format!(".last.ckpt.tmp-Qx7-{}-{host}", writing.id());
    std::fs::write(checkpoints.join(&live), b"a checkpoint being written").unwrap();
    std::fs::write(checkpoints.join("notes.txt"), b"mine").unwrap();
    let seen = Arc::new(Mutex::new(None));
    let ((), infos) = common::events_of(tracing::Level::INFO, || {
        builder(dir.path())
            .max_epochs(1)
            .callback(StaleAtTrainStart(stale.clone(), seen.clone()))
            .callback(ModelCheckpoint::new().dirpath(&checkpoints))
            .build()
            .unwrap()
            .fit(Net::new(), data())
            .map(|_| ())
            .unwrap();
    });
    // The removal is logged, naming the file; nothing is said of the live writer's.
    let removals: Vec<&String> = infos.iter().filter(|m| m.contains("temporary file")).collect();
    assert_eq!(
        removals,
        [&format!(
            "removed `{}`, the temporary file of an interrupted write (process {gone_pid} on this host no longer runs)",
            stale.display()
        )],
        "{infos:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        Some(true),
        "still there before the first checkpoint"
    );
    writing.kill().unwrap();
    writing.wait().unwrap();
    // Only orphaned temporary files go; a live writer's and the user's own file stay.
    assert_eq!(
        file_names(&checkpoints),
        [live.as_str(), "epoch=0-step=4.ckpt", "notes.txt"]
    );
    for name in file_names(&checkpoints).iter().filter(|n| n.ends_with(".ckpt")) {
        let checkpoint = Checkpoint::load(&checkpoints.join(name)).unwrap();
        assert_eq!(checkpoint.global_step, 4, "{name}");
    }
}

/// What a user's hook fails with.
#[derive(Debug, thiserror::Error)]
#[error("batch {0} has no targets")]
struct NoTargets(usize);

/// A regressor whose `training_step` returns `Err` at one batch, with `?`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Fallible {
    layer: Linear,
    #[module(skip)]
    fail_at: usize,
    #[module(skip)]
    steps: Arc<Mutex<Vec<usize>>>,
}

fn check_targets(batch_idx: usize, fail_at: usize) -> Result<(), NoTargets> {
    if batch_idx == fail_at {
        Err(NoTargets(batch_idx))
    } else {
        Ok(())
    }
}

#[lightning_module]
impl Fallible {
    #[hook]
    fn training_step(&self, batch: Pair, batch_idx: usize) -> Result<Tensor<1>, NoTargets> {
        self.steps.lock().unwrap().push(batch_idx);
        check_targets(batch_idx, self.fail_at)?;
        Ok((self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean())
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.05)
    }
}

/// Records the message of every error `on_exception` receives, for any module.
struct ErrorMessages(Arc<Mutex<Vec<String>>>);

impl<M: LightningModule> Callback<M> for ErrorMessages {
    fn on_exception(&mut self, _module: &mut M, error: &Error, _cx: &mut HookContext<'_>) {
        self.0.lock().unwrap().push(error.to_string());
    }
}

#[test]
fn a_hook_returning_err_ends_the_fit_with_that_error_as_its_source() {
    // Before, hooks could not return errors: a user had to `panic!` or defer one with `cx.fail`.
    let dir = tempfile::tempdir().unwrap();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let model = Fallible {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
        fail_at: 2,
        steps: steps.clone(),
    };
    let exceptions = Arc::new(Mutex::new(Vec::new()));
    let failed = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(3)
        .callback(ErrorMessages(exceptions.clone()))
        .build()
        .unwrap()
        .fit(model, Loaders::fit(pair_loader(16, 4), None))
        .unwrap_err();
    assert_eq!(*steps.lock().unwrap(), [0, 1, 2], "nothing runs after the failing step");
    match &failed.error {
        Error::User(source) => assert!(
            matches!(source.downcast_ref::<NoTargets>(), Some(NoTargets(2))),
            "the user's error is the source: {source:?}"
        ),
        other => panic!("expected the hook's error, got {other:?}"),
    }
    assert_eq!(*exceptions.lock().unwrap(), ["batch 2 has no targets"]);
}
