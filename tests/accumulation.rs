//! `accumulate_grad_batches`: gradients summed over N batches, each loss divided by N, the
//! optimizer stepped on the N-th batch and on the last batch of the epoch, with Lightning's hook
//! order and counters, and the shorter last window averaged over its own batches.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::prelude::*;
use burn_lightning::{GradientAccumulationScheduler, Logger};
use common::{Pair, pair_loader, values};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A hook call: the hook, the batch index, `global_step` when it ran, and the loss it saw.
#[derive(Clone, Debug, PartialEq)]
struct Call {
    hook: &'static str,
    batch_idx: usize,
    global_step: usize,
    loss: Option<f32>,
}

/// A linear regressor with constant initial weights that records its optimization hooks.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Regressor {
    layer: Linear,
    #[module(skip)]
    calls: Arc<Mutex<Vec<Call>>>,
    /// Learning rate of every optimizer step.
    #[module(skip)]
    lrs: Arc<Mutex<Vec<f64>>>,
    #[module(skip)]
    step_scheduler: bool,
}

impl Regressor {
    fn new() -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
            calls: Arc::default(),
            lrs: Arc::default(),
            step_scheduler: false,
        }
    }

    fn note(&self, hook: &'static str, cx: &StepContext, loss: Option<&Tensor<1>>) {
        self.calls.lock().unwrap().push(Call {
            hook,
            batch_idx: cx.batch_idx,
            global_step: cx.global_step,
            loss: loss.map(|loss| values(loss.clone())[0]),
        });
    }

    fn weights(&self) -> Vec<f32> {
        common::linear_weights(&self.layer)
    }
}

#[lightning_module]
impl Regressor {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        self.note("training_step", cx, Some(&loss));
        loss
    }
    #[hook]
    fn optimizer_zero_grad(
        &mut self,
        _epoch: usize,
        _batch_idx: usize,
        _optimizer: &mut Optimizer,
        cx: &mut StepContext,
    ) {
        self.note("optimizer_zero_grad", cx, None);
    }
    #[hook]
    fn on_before_backward(&mut self, loss: &Tensor<1>, cx: &mut StepContext) {
        self.note("on_before_backward", cx, Some(loss));
    }
    #[hook]
    fn on_before_optimizer_step(&mut self, optimizer: &Optimizer, _grads: &Gradients, cx: &mut StepContext) {
        self.note("on_before_optimizer_step", cx, None);
        self.lrs.lock().unwrap().push(optimizer.lr());
    }
    #[hook]
    fn on_train_batch_end(
        &mut self,
        outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        cx: &mut StepContext,
    ) {
        self.note("on_train_batch_end", cx, outputs.map(|output| &output.loss));
        cx.log("train_loss", outputs.expect("a loss").loss.clone());
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let config = OptimizerConfig::new(SgdConfig::new().init(), 0.1);
        if self.step_scheduler {
            let halving = LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 1).with_gamma(0.5).init());
            return config.with_scheduler(halving.interval(Interval::Step));
        }
        config
    }
}

/// Records the steps at which step values reach the loggers.
#[derive(Clone, Default)]
struct StepRecorder {
    steps: Arc<Mutex<Vec<usize>>>,
    dir: PathBuf,
}

impl Logger for StepRecorder {
    fn name(&self) -> &str {
        "StepRecorder"
    }
    fn log_dir(&mut self) -> Result<PathBuf, Error> {
        Ok(self.dir.clone())
    }
    fn log_hyperparams(&mut self, _hparams: &JsonValue) -> Result<(), Error> {
        Ok(())
    }
    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        if metrics.contains_key("train_loss") {
            self.steps.lock().unwrap().push(step);
        }
        Ok(())
    }
}

fn builder(root: &Path) -> TrainerBuilder<Regressor> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
}

/// Fits one epoch of `items` pairs in batches of `batch_size`; returns the trained module and
/// the trainer's `global_step`.
fn fit_epoch(builder: TrainerBuilder<Regressor>, items: usize, batch_size: usize) -> (Regressor, usize) {
    let mut trainer = builder.max_epochs(1).build().unwrap();
    let model = trainer
        .fit(Regressor::new(), Loaders::fit(pair_loader(items, batch_size), None))
        .unwrap();
    (model, trainer.global_step())
}

fn assert_close(accumulated: &[f32], reference: &[f32]) {
    assert_eq!(accumulated.len(), reference.len());
    for (a, r) in accumulated.iter().zip(reference) {
        assert!((a - r).abs() <= 1e-5, "accumulated {a} vs one batch {r}");
    }
}

#[test]
fn four_accumulated_batches_of_16_give_the_weights_of_one_batch_of_64() {
    let dir = tempfile::tempdir().unwrap();
    let (one_batch, steps_one) = fit_epoch(builder(dir.path()), 64, 64);
    let (accumulated, steps_accumulated) = fit_epoch(builder(dir.path()).accumulate_grad_batches(4), 64, 16);
    assert_eq!((steps_one, steps_accumulated), (1, 1));
    assert_ne!(
        one_batch.weights(),
        Regressor::new().weights(),
        "the step must change the weights"
    );
    assert_close(&accumulated.weights(), &one_batch.weights());
}

#[test]
fn clipping_applies_to_the_accumulated_gradients() {
    // A limit well below the gradient norm: clipping each batch's gradients separately would
    // give a different update than clipping their sum.
    let dir = tempfile::tempdir().unwrap();
    let clipped = |b: TrainerBuilder<Regressor>| b.gradient_clip_val(0.01);
    let (one_batch, _) = fit_epoch(clipped(builder(dir.path())), 64, 64);
    let (accumulated, _) = fit_epoch(clipped(builder(dir.path())).accumulate_grad_batches(4), 64, 16);
    let (unclipped, _) = fit_epoch(builder(dir.path()), 64, 64);
    assert_ne!(one_batch.weights(), unclipped.weights(), "the limit must clip");
    assert_close(&accumulated.weights(), &one_batch.weights());
}

#[test]
fn the_last_shorter_window_steps_with_the_mean_of_its_own_batches() {
    // 6 batches of 16 with 4 accumulated: windows of 4 and 2 batches, as batches of 64 and 32.
    // Lightning divides the short window's losses by 4 (its issue #19987); here by 2.
    let dir = tempfile::tempdir().unwrap();
    let (large_batches, steps_large) = fit_epoch(builder(dir.path()), 96, 64);
    let (accumulated, steps_accumulated) = fit_epoch(builder(dir.path()).accumulate_grad_batches(4), 96, 16);
    assert_eq!((steps_large, steps_accumulated), (2, 2));
    assert_close(&accumulated.weights(), &large_batches.weights());
}

#[test]
fn an_epoch_shorter_than_the_window_still_accumulates_all_its_batches() {
    // Lightning's issue #21808: 3 batches with 8 accumulated are one step over all 3.
    let dir = tempfile::tempdir().unwrap();
    let (one_batch, _) = fit_epoch(builder(dir.path()), 48, 48);
    let (accumulated, steps) = fit_epoch(builder(dir.path()).accumulate_grad_batches(8), 48, 16);
    assert_eq!(steps, 1);
    assert_close(&accumulated.weights(), &one_batch.weights());
}

#[test]
fn optimizer_hooks_run_on_the_stepping_batch_and_backward_on_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let model = Regressor::new();
    let calls = model.calls.clone();
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .accumulate_grad_batches(2)
        .build()
        .unwrap();
    trainer.fit(model, Loaders::fit(pair_loader(20, 4), None)).unwrap();
    assert_eq!(trainer.global_step(), 3, "5 batches in windows of 2, 2 and 1");
    let calls = calls.lock().unwrap().clone();
    let at = |hook: &str| -> Vec<usize> { calls.iter().filter(|c| c.hook == hook).map(|c| c.batch_idx).collect() };
    assert_eq!(at("optimizer_zero_grad"), [0, 2, 4], "at the start of each window");
    assert_eq!(at("on_before_backward"), [0, 1, 2, 3, 4]);
    assert_eq!(at("on_before_optimizer_step"), [1, 3, 4], "at the end of each window");
    let steps_at_batch_end: Vec<usize> = calls
        .iter()
        .filter(|c| c.hook == "on_train_batch_end")
        .map(|c| c.global_step)
        .collect();
    assert_eq!(
        steps_at_batch_end,
        [0, 1, 1, 2, 3],
        "global_step counts optimizer steps"
    );

    // The loss is divided by the window's length before backward, and `on_train_batch_end`
    // gets that divided loss, as Lightning's `outputs["loss"]`.
    let losses = |hook: &str| -> Vec<f32> {
        calls
            .iter()
            .filter(|c| c.hook == hook)
            .map(|c| c.loss.unwrap())
            .collect()
    };
    let divisors = [2.0, 2.0, 2.0, 2.0, 1.0];
    for ((step, backward), divisor) in losses("training_step")
        .iter()
        .zip(losses("on_before_backward"))
        .zip(divisors)
    {
        assert!(
            (step / divisor - backward).abs() < 1e-6,
            "{step} / {divisor} vs {backward}"
        );
    }
    assert_eq!(losses("on_train_batch_end"), losses("on_before_backward"));
}

#[test]
fn step_schedulers_and_loggers_count_optimizer_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Regressor::new();
    model.step_scheduler = true;
    let lrs = model.lrs.clone();
    let logger = StepRecorder {
        dir: dir.path().join("logs"),
        ..StepRecorder::default()
    };
    let steps = logger.steps.clone();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .logger(logger)
        .log_every_n_steps(1)
        .max_epochs(1)
        .accumulate_grad_batches(2)
        .build()
        .unwrap();
    trainer.fit(model, Loaders::fit(pair_loader(24, 4), None)).unwrap();
    assert_eq!(
        *lrs.lock().unwrap(),
        [0.1, 0.05, 0.025],
        "halved after each of the 3 steps"
    );
    assert_eq!(*steps.lock().unwrap(), [0, 1, 2], "step values once per optimizer step");
}

#[test]
fn a_schedule_changes_the_accumulation_from_an_epoch_on() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = GradientAccumulationScheduler::new([(1, 2), (2, 4)]);
    assert_eq!([0, 1, 2, 9].map(|epoch| schedule.factor(epoch)), [1, 2, 4, 4]);
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .accumulate_grad_batches(schedule)
        .build()
        .unwrap();
    trainer
        .fit(Regressor::new(), Loaders::fit(pair_loader(16, 4), None))
        .unwrap();
    assert_eq!(trainer.global_step(), 4 + 2 + 1);
}

fn config_error(builder: TrainerBuilder<impl LightningModule>) -> (&'static str, String) {
    match builder.build().map(|_| ()) {
        Err(Error::Config { flag, message }) => (flag, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn accumulating_nothing_is_a_configuration_error_naming_the_flag() {
    let (flag, message) = config_error(Trainer::<Regressor>::builder().accumulate_grad_batches(0));
    assert_eq!(flag, "accumulate_grad_batches");
    assert!(message.contains("use 1"), "{message}");
    let (flag, _) = config_error(Trainer::<Regressor>::builder().accumulate_grad_batches(-2));
    assert_eq!(flag, "accumulate_grad_batches");
    let schedule = GradientAccumulationScheduler::new([(0, 2), (3, 0)]);
    let (flag, message) = config_error(Trainer::<Regressor>::builder().accumulate_grad_batches(schedule));
    assert_eq!(flag, "accumulate_grad_batches");
    assert!(message.contains("epoch 3"), "{message}");
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct ManualRegressor {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl ManualRegressor {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

#[test]
fn accumulation_under_manual_optimization_is_a_configuration_error() {
    let (flag, message) = config_error(Trainer::<ManualRegressor>::builder().accumulate_grad_batches(2));
    assert_eq!(flag, "accumulate_grad_batches");
    assert!(message.contains("manual optimization"), "{message}");
    // 1 is no accumulation, which manual optimization accepts.
    Trainer::<ManualRegressor>::builder()
        .accumulate_grad_batches(1)
        .build()
        .unwrap();
}
