//! Resuming a fit from a checkpoint (`Trainer::fit_from`): at an epoch boundary and in the middle
//! of an epoch the resumed fit ends with the weights of an uninterrupted one, bit for bit (the
//! optimizer's and scheduler's states, the counters and the shuffled data order are restored);
//! what `"last"`/`"best"` name; errors for what cannot be resumed; evaluation from a checkpoint.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::prelude::*;
use common::{Pair, shuffled_pair_loader, values};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A linear regressor trained with Adam and a step scheduler: deterministic (no dropout), so
/// that only the restored state decides its final weights.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    /// How many times `on_load_checkpoint` ran.
    #[module(skip)]
    loads: Arc<Mutex<usize>>,
}

impl Net {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            loads: Arc::default(),
        }
    }

    fn weights(&self) -> Vec<f32> {
        let mut all = values(self.layer.weight.val());
        all.extend(values(self.layer.bias.as_ref().expect("a bias").val()));
        all
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
    fn on_load_checkpoint(&mut self, _checkpoint: &Checkpoint) {
        *self.loads.lock().unwrap() += 1;
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().init(), 0.02).with_scheduler(
            LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 3).with_gamma(0.5).init())
                .interval(Interval::Step),
        )
    }
}

const EPOCHS: usize = 3;
/// 4 training batches per epoch, shuffled each epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(shuffled_pair_loader(16, 4, 11), Some(shuffled_pair_loader(8, 4, 3)))
}

fn trainer(root: &Path, checkpoint: ModelCheckpoint) -> Trainer<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .seed(7)
        .max_epochs(EPOCHS)
        .callback(checkpoint)
        .build()
        .unwrap()
}

/// Every checkpoint `dir` holds whose name ends with `step=<step>.ckpt`.
fn checkpoint_at_step(dir: &Path, step: usize) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("step={step}.ckpt")))
        .unwrap_or_else(|| panic!("no checkpoint of step {step} in {}", dir.display()))
}

/// An uninterrupted fit that saves a checkpoint after every optimizer step: its final weights
/// and its checkpoints directory.
fn uninterrupted(root: &Path) -> (Vec<f32>, PathBuf) {
    let mut trainer = trainer(root, ModelCheckpoint::new().every_n_train_steps(1).save_top_k(-1));
    let model = trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(trainer.global_step(), 12);
    (model.weights(), root.join("lightning_logs/version_0/checkpoints"))
}

/// Resumes from `checkpoint` in a fresh trainer and returns the final weights.
fn resumed(root: &Path, checkpoint: &Path) -> (Vec<f32>, Trainer<Net>, Net) {
    let mut trainer = trainer(root, ModelCheckpoint::new());
    let model = trainer.fit_from(Net::new(), data(), checkpoint).unwrap();
    (model.weights(), trainer, model)
}

#[test]
fn a_fit_resumed_at_an_epoch_boundary_ends_with_the_weights_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _) = uninterrupted(&dir.path().join("full"));

    // Two epochs, saving at each epoch's end, then a new trainer resumes from `last`.
    let first = dir.path().join("first");
    let mut trainer = Trainer::builder()
        .default_root_dir(&first)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .seed(7)
        .max_epochs(2)
        .callback(ModelCheckpoint::new().save_last(true))
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    let last = trainer
        .checkpoint_callback()
        .unwrap()
        .last_model_path()
        .unwrap()
        .to_path_buf();
    let saved = Checkpoint::load(&last).unwrap();
    assert_eq!((saved.epoch, saved.global_step), (1, 8));

    let (weights, trainer, model) = resumed(&dir.path().join("second"), &last);
    assert_eq!(weights, expected, "resumed and uninterrupted weights differ");
    assert_eq!((trainer.current_epoch(), trainer.global_step()), (EPOCHS, 12));
    assert_eq!(*model.loads.lock().unwrap(), 1, "on_load_checkpoint ran once");
}

#[test]
fn a_fit_resumed_inside_an_epoch_continues_with_the_same_data_order() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, checkpoints) = uninterrupted(&dir.path().join("full"));
    // Inside the first epoch, inside the second, and after the last batch of the second.
    for step in [1, 6, 8] {
        let path = checkpoint_at_step(&checkpoints, step);
        let (weights, trainer, _) = resumed(&dir.path().join(format!("from_{step}")), &path);
        assert_eq!(weights, expected, "resumed from step {step}");
        assert_eq!(trainer.global_step(), 12, "resumed from step {step}");
    }
}

#[test]
fn last_names_the_newest_checkpoint_and_best_the_monitored_best() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(
        dir.path(),
        ModelCheckpoint::new().monitor("val_loss", Mode::Min).save_last(true),
    );
    let model = trainer.fit(Net::new(), data()).unwrap();
    let best = trainer
        .checkpoint_callback()
        .unwrap()
        .best_model_path()
        .unwrap()
        .to_path_buf();
    // Resuming a finished fit trains no more: the weights are the checkpoint's.
    let again = trainer.fit_from(Net::new(), data(), "last").unwrap();
    assert_eq!(again.weights(), model.weights());
    let mut evaluated = Net::new();
    trainer.validate_from(&mut evaluated, data(), CkptPath::Best).unwrap();
    let best_weights = Checkpoint::load(&best)
        .unwrap()
        .restore_module(Net::new())
        .unwrap()
        .weights();
    assert_eq!(evaluated.weights(), best_weights);
    assert!(trainer.callback_metrics().contains_key("val_loss"));
}

#[test]
fn what_cannot_be_resumed_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), ModelCheckpoint::new());
    let missing = trainer
        .fit_from(Net::new(), data(), dir.path().join("nothing.ckpt"))
        .unwrap_err()
        .into_error()
        .to_string();
    assert!(
        missing.contains("nothing.ckpt") && missing.contains("does not exist"),
        "{missing}"
    );

    let best = trainer
        .fit_from(Net::new(), data(), "best")
        .unwrap_err()
        .into_error()
        .to_string();
    assert!(best.contains("ModelCheckpoint") && best.contains("monitor"), "{best}");

    // A checkpoint of a module with other shapes.
    let other = dir.path().join("other.ckpt");
    let wide = Net {
        layer: LinearConfig::new(32, 5).init(&Device::default()),
        loads: Arc::default(),
    };
    Checkpoint::of_module(&wide).unwrap().save(&other).unwrap();
    let shapes = trainer
        .fit_from(Net::new(), data(), &other)
        .unwrap_err()
        .into_error()
        .to_string();
    assert!(
        shapes.contains("cannot resume") && shapes.contains("layer.weight"),
        "{shapes}"
    );
}
