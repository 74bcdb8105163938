//! Lightning's `Tuner`: the learning-rate range test ([`Tuner::lr_find`]) and the batch-size
//! finder ([`Tuner::scale_batch_size`]).
//!
//! Both run short fits of their own, with a copy of the trainer's flags and none of its
//! callbacks or loggers (as Lightning swaps in its own for the search): the trainer, the model
//! and its weights are left as they were. Lightning saves and restores a checkpoint for this;
//! here the searches train clones of the module (burn's tensors are immutable values, so the
//! module the caller holds cannot change).
//!
//! Uses the trainer (a search is a short fit of a trainer of its own); the trainer never uses
//! the tuner.

use crate::checkpoint::LoadFromCheckpoint;
use crate::core::datamodule::{DataModule, Stage};
use crate::hooks::{Callback, ConfigureOptimizers, LightningModule, Optimization, TrainingStep};
use crate::loops::{SchedulerSwap, Tuning};
use crate::optim::{Interval, LrSchedulerConfig, Optimizer};
use crate::trainer::{Limit, Trainer};
use crate::{Error, JsonValue, StepContext, StepOutput};
use burn::optim::LearningRate as BurnLearningRate;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

/// The smoothing of the recorded loss (Lightning's `_LRCallback(beta=0.98)`).
const BETA: f64 = 0.98;

/// The file [`Tuner::lr_find`] draws its curve into, in the search's run directory.
pub const LR_FIND_PLOT: &str = "lr_find.svg";

/// Lightning's `Tuner`: finds a learning rate and a batch size for a trainer.
///
/// ```ignore
/// let mut trainer = Trainer::builder().max_epochs(10).seed(42).build()?;
/// let finder = Tuner::new(&mut trainer).lr_find(&model, &mut data, LrFind::new())?;
/// println!("suggested lr: {:?} (plot: {:?})", finder.suggestion(), finder.plot_path());
/// let model = finder.update_attr(model)?; // the `lr` hparam set to the suggestion
/// let model = trainer.fit(model, &mut data)?;
/// ```
pub struct Tuner<'t, M: LightningModule> {
    trainer: &'t mut Trainer<M>,
}

impl<'t, M: LightningModule> Tuner<'t, M> {
    /// A tuner for `trainer`'s flags (device, seed, gradient clipping, accumulation, limits).
    pub fn new(trainer: &'t mut Trainer<M>) -> Self {
        Self { trainer }
    }

    /// Lightning's learning-rate range test: trains a clone of `model` for up to
    /// `num_training` optimizer steps while the learning rate rises from `min_lr` to `max_lr`
    /// (exponentially or linearly, replacing the module's own scheduler), records the smoothed
    /// loss of every step, and stops early once it exceeds `early_stop_threshold` times the
    /// best so far. `model`, its weights and the trainer are left as they were; the curve is
    /// drawn with the suggestion marked into `lr_find.svg` in the search's run directory
    /// (a `version_N` of its own under `default_root_dir`, holding that and `hparams.yaml`).
    ///
    /// Read [`LrFinder::suggestion`], and apply it with [`LrFinder::update_attr`] (Lightning's
    /// `update_attr=True`) or by hand. Under `fast_dev_run` nothing runs and the finder is
    /// empty (Lightning skips it with a warning). Differences from Lightning: no validation
    /// runs during the search (it does not change what is recorded), `min_epochs`/`min_steps`
    /// do not delay the early stop, and manual optimization is refused.
    pub fn lr_find<D>(&mut self, model: &M, data: D, options: LrFind) -> Result<LrFinder, Error>
    where
        M: TrainingStep + ConfigureOptimizers,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        options.validate()?;
        let mut finder = LrFinder {
            mode: options.mode,
            num_training: options.num_training,
            lrs: Vec::new(),
            losses: Vec::new(),
            plot: None,
        };
        if self.trainer.config().fast_dev_run.is_some() {
            tracing::warn!(target: "burn_lightning", "skipping the learning rate finder since `fast_dev_run` is on");
            return Ok(finder);
        }
        if M::OPTIMIZATION == Optimization::Manual {
            return Err(Error::config(
                "lr_find",
                "the learning rate finder drives the scheduler of automatic optimization; this module uses manual \
                 optimization: sweep the learning rate yourself, or find it on an automatic version of the module",
            ));
        }
        let mut config = self.trainer.config().clone();
        config.max_steps = Some(options.num_training);
        config.min_epochs = 0;
        config.min_steps = 0;
        config.limit_val_batches = Limit::Batches(0);
        config.num_sanity_val_steps = 0;
        config.default_logger = false;
        config.enable_report = false;
        config.profiler = None;
        config.tuning = Some(Tuning {
            lr_sweep: Some(std::sync::Arc::new(LrSweep {
                min_lr: options.min_lr,
                max_lr: options.max_lr,
                num_training: options.num_training,
                mode: options.mode,
            })),
            run_dir: true,
        });
        let recorder = LrRecorder::new(options.early_stop_threshold);
        let mut search = Trainer::from_parts(config, vec![Box::new(recorder)], Vec::new());
        search.fit(model.clone(), data)?;
        let recorder = search.callback::<LrRecorder>().expect("the search's only callback");
        finder.lrs = recorder.lrs.clone();
        finder.losses = recorder.losses.clone();
        if finder.stopped_early() {
            tracing::info!(target: "burn_lightning",
                "the learning rate finder stopped after {} of {} steps: the loss diverged, or the data and \
                 `max_epochs` gave no more steps", finder.lrs.len(), options.num_training);
        }
        if let Some(dir) = search.log_dir() {
            let path = dir.join(LR_FIND_PLOT);
            crate::checkpoint::run_dir::write_atomic(&path, finder.plot_svg()?.as_bytes())?;
            finder.plot = Some(path);
        }
        Ok(finder)
    }

    /// Lightning's batch-size finder: runs `steps_per_trial` training steps (and as many
    /// validation batches) with the datamodule's batch size set to `init_val`, then doubles it
    /// after every trial that succeeds (`Power`), or doubles it until a trial fails and then
    /// bisects between the last success and the failure (`Binsearch`, then `margin` below it),
    /// for at most `max_trials` trials. The size found is set on `data` and returned; `model`
    /// and the trainer are left as they were. This follows Lightning's current code (with
    /// `max_val` and `margin`, and the last of `max_trials` trials' size kept rather than an
    /// untried double).
    ///
    /// A trial fails when it runs out of memory: a panic or an error whose message says so
    /// (CUDA's and wgpu's allocators report it this way). What cannot be detected: on the CPU
    /// (`flex`, `ndarray`), an allocation the system refuses aborts the process (Rust's
    /// allocation-failure handler), and Linux overcommits memory so that the out-of-memory
    /// killer ends the process instead; there, bound the search with `max_val`. The search
    /// also stops growing at `max_val` and when a batch holds the whole training set (as
    /// Lightning does). Any other error ends the search and is returned. Under `fast_dev_run`
    /// nothing runs and the current batch size is returned.
    pub fn scale_batch_size<D>(&mut self, model: &M, data: &mut D, options: ScaleBatchSize) -> Result<usize, Error>
    where
        M: TrainingStep + ConfigureOptimizers,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch> + BatchSizeTunable,
    {
        options.validate()?;
        if self.trainer.config().fast_dev_run.is_some() {
            tracing::warn!(target: "burn_lightning", "skipping the batch size finder since `fast_dev_run` is on");
            return Ok(data.batch_size());
        }
        let mut config = self.trainer.config().clone();
        config.max_steps = Some(options.steps_per_trial);
        config.min_epochs = 0;
        config.min_steps = 0;
        config.limit_train_batches = Limit::All;
        config.limit_val_batches = Limit::Batches(options.steps_per_trial);
        config.num_sanity_val_steps = 0;
        config.default_logger = false;
        config.enable_report = false;
        config.profiler = None;
        config.tuning = Some(Tuning {
            lr_sweep: None,
            run_dir: false,
        });
        let dataset_len = training_items::<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch, _>(data)?;
        let mut scaler = BatchScaler {
            data,
            dataset_len,
            max_val: options.max_val,
        };
        let mut trial = |data: &mut D| -> Result<Trial, Error> {
            let mut search = Trainer::from_parts(config.clone(), Vec::new(), Vec::new());
            let outcome = catch_unwind(AssertUnwindSafe(|| search.fit(model.clone(), &mut *data)));
            match outcome {
                Ok(Ok(_)) => Ok(Trial::Succeeded),
                Ok(Err(failed)) if is_oom(&failed.error.to_string()) => Ok(Trial::OutOfMemory),
                Ok(Err(failed)) => Err(failed.error),
                Err(panic) => {
                    if is_oom(&Error::panic(panic.as_ref()).to_string()) {
                        Ok(Trial::OutOfMemory)
                    } else {
                        resume_unwind(panic)
                    }
                }
            }
        };
        let original = scaler.data.batch_size();
        let new_size = match search_batch_size(&mut scaler, &mut trial, &options) {
            Ok(size) => size,
            Err(error) => {
                scaler.data.set_batch_size(original);
                return Err(error);
            }
        };
        tracing::info!(target: "burn_lightning",
            "finished the batch size finder, continuing with batch size {new_size}");
        Ok(new_size)
    }
}

/// Lightning's `_run_power_scaling` and `_run_binsearch_scaling`: the batch size found.
fn search_batch_size<D: BatchSizeTunable>(
    scaler: &mut BatchScaler<'_, D>,
    trial: &mut impl FnMut(&mut D) -> Result<Trial, Error>,
    options: &ScaleBatchSize,
) -> Result<usize, Error> {
    let mut new_size = scaler.adjust(Adjust::To(options.init_val), None).0;
    let reached_max_val = |size: usize| {
        let reached = size >= options.max_val;
        if reached {
            tracing::info!(target: "burn_lightning",
                "reached the maximum batch size limit of {}; stopping the search", options.max_val);
        }
        reached
    };
    match options.mode {
        BatchSizeMode::Power => {
            let mut any_success = false;
            for i in 0..options.max_trials {
                if reached_max_val(new_size) {
                    break;
                }
                match trial(scaler.data)? {
                    Trial::Succeeded => {
                        // The last trial's size is the answer: no untried size is returned.
                        if i + 1 >= options.max_trials {
                            break;
                        }
                        let (size, changed) = scaler.adjust(Adjust::Double, Some("succeeded"));
                        new_size = size;
                        if !changed {
                            break;
                        }
                        any_success = true;
                    }
                    Trial::OutOfMemory => {
                        new_size = scaler.adjust(Adjust::Halve, Some("failed")).0;
                        if any_success {
                            break;
                        }
                        if new_size == 0 {
                            return Err(oom_at_one());
                        }
                    }
                }
            }
        }
        BatchSizeMode::Binsearch => {
            let (mut low, mut high) = (1usize, None::<usize>);
            let mut count = 0;
            loop {
                if reached_max_val(new_size) {
                    break;
                }
                match trial(scaler.data)? {
                    Trial::Succeeded => {
                        count += 1;
                        if count >= options.max_trials {
                            break;
                        }
                        low = new_size;
                        let (size, changed) = match high {
                            Some(high) if high - low <= 1 => break,
                            Some(high) => scaler.adjust(Adjust::To((high + low) / 2), Some("succeeded")),
                            None => scaler.adjust(Adjust::Double, Some("succeeded")),
                        };
                        new_size = size;
                        if !changed {
                            break;
                        }
                    }
                    Trial::OutOfMemory => {
                        if new_size <= 1 {
                            return Err(oom_at_one());
                        }
                        let failed = new_size;
                        high = Some(failed);
                        new_size = scaler.adjust(Adjust::To((failed + low) / 2), Some("failed")).0;
                        if failed - low <= 1 {
                            break;
                        }
                    }
                }
            }
            // A safety margin below the largest size that fitted.
            let reduced = ((new_size as f64 * (1.0 - options.margin)) as usize).max(1);
            if reduced != new_size {
                tracing::info!(target: "burn_lightning",
                    "applying a margin of {:.1}%: batch size {new_size} reduced to {reduced}", options.margin * 100.0);
                new_size = reduced;
                scaler.data.set_batch_size(new_size);
            }
        }
    }
    Ok(new_size)
}

/// The error for a search whose smallest batch still runs out of memory.
fn oom_at_one() -> Error {
    Error::config(
        "init_val",
        "a batch of 1 runs out of memory: the model does not fit on this device; use a smaller model or another device",
    )
}

/// Whether a message is an out-of-memory report (Lightning's `is_oom_error`, with the
/// messages of burn's backends: cubecl's `OutOfMemory`, the allocators of CUDA, wgpu and torch).
fn is_oom(message: &str) -> bool {
    let message = message.to_lowercase();
    [
        "out of memory",
        "out-of-memory",
        "out of device memory",
        "outofmemory",
        "can't allocate memory",
    ]
    .iter()
    .any(|marker| message.contains(marker))
}

/// The number of training items, when the datamodule gives a training dataloader.
fn training_items<T, V, Te, P, D: DataModule<T, V, Te, P>>(data: &mut D) -> Result<Option<usize>, Error> {
    data.prepare_data()?;
    data.setup(Stage::Fit)?;
    let items = data.train_dataloader().map(|loader| loader.num_items());
    data.teardown(Stage::Fit);
    Ok(items)
}

enum Trial {
    Succeeded,
    OutOfMemory,
}

enum Adjust {
    To(usize),
    Double,
    Halve,
}

/// Lightning's `_adjust_batch_size`, on a [`BatchSizeTunable`] datamodule.
struct BatchScaler<'d, D> {
    data: &'d mut D,
    dataset_len: Option<usize>,
    max_val: usize,
}

impl<D: BatchSizeTunable> BatchScaler<'_, D> {
    /// Sets the next batch size; returns it and whether it changed. A batch size that already
    /// holds the whole training set is kept, as in Lightning; `max_val` caps it.
    fn adjust(&mut self, adjust: Adjust, outcome: Option<&str>) -> (usize, bool) {
        let batch_size = self.data.batch_size();
        if self.dataset_len.is_some_and(|len| batch_size >= len) {
            tracing::info!(target: "burn_lightning",
                "the batch size {batch_size} is greater or equal than the length of your dataset");
            return (batch_size, false);
        }
        let new_size = match adjust {
            Adjust::To(value) => value,
            Adjust::Double => batch_size * 2,
            Adjust::Halve => batch_size / 2,
        };
        let new_size = new_size.min(self.max_val);
        if let Some(outcome) = outcome {
            tracing::info!(target: "burn_lightning",
                "batch size {batch_size} {outcome}, trying batch size {new_size}");
        }
        self.data.set_batch_size(new_size);
        (new_size, new_size != batch_size)
    }
}

/// A datamodule whose batch size the batch-size finder can set (Lightning finds a
/// `batch_size` attribute on the datamodule; here the datamodule says how).
pub trait BatchSizeTunable {
    /// The batch size its training (and evaluation) dataloaders are built with.
    fn batch_size(&self) -> usize;
    /// Sets the batch size of the dataloaders it builds from now on.
    fn set_batch_size(&mut self, batch_size: usize);
}

impl<T: BatchSizeTunable + ?Sized> BatchSizeTunable for &mut T {
    fn batch_size(&self) -> usize {
        (**self).batch_size()
    }
    fn set_batch_size(&mut self, batch_size: usize) {
        (**self).set_batch_size(batch_size)
    }
}

/// How [`Tuner::scale_batch_size`] searches (Lightning's `mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum BatchSizeMode {
    /// Doubles the batch size until a trial runs out of memory; keeps the last that fitted.
    #[default]
    Power,
    /// Doubles until a trial runs out of memory, then bisects between the last success and
    /// the failure.
    Binsearch,
}

impl std::str::FromStr for BatchSizeMode {
    type Err = Error;

    /// Lightning's names: `"power"` or `"binsearch"`.
    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "power" => Ok(BatchSizeMode::Power),
            "binsearch" => Ok(BatchSizeMode::Binsearch),
            other => Err(Error::config(
                "mode",
                format!("`{other}` is not a batch size search; use `power` or `binsearch`"),
            )),
        }
    }
}

/// The settings of [`Tuner::scale_batch_size`], with Lightning's defaults: power mode, 3 steps
/// per trial, starting at 2, at most 25 trials, at most 8192, a 5% margin in binsearch mode.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ScaleBatchSize {
    mode: BatchSizeMode,
    steps_per_trial: usize,
    init_val: usize,
    max_trials: usize,
    max_val: usize,
    margin: f64,
}

impl Default for ScaleBatchSize {
    fn default() -> Self {
        Self {
            mode: BatchSizeMode::Power,
            steps_per_trial: 3,
            init_val: 2,
            max_trials: 25,
            max_val: 8192,
            margin: 0.05,
        }
    }
}

impl ScaleBatchSize {
    /// Lightning's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Power (default) or binary search.
    #[must_use]
    pub fn mode(mut self, mode: BatchSizeMode) -> Self {
        self.mode = mode;
        self
    }

    /// Training steps per trial (default 3; at least 1).
    #[must_use]
    pub fn steps_per_trial(mut self, steps: usize) -> Self {
        self.steps_per_trial = steps;
        self
    }

    /// The batch size of the first trial (default 2; at least 1).
    #[must_use]
    pub fn init_val(mut self, batch_size: usize) -> Self {
        self.init_val = batch_size;
        self
    }

    /// The most trials (default 25; at least 1).
    #[must_use]
    pub fn max_trials(mut self, trials: usize) -> Self {
        self.max_trials = trials;
        self
    }

    /// The largest batch size (default 8192, as Lightning): what bounds the search where
    /// running out of memory cannot be detected (the CPU backends). Reaching it ends the search
    /// with it, untried, as in Lightning.
    #[must_use]
    pub fn max_val(mut self, batch_size: usize) -> Self {
        self.max_val = batch_size;
        self
    }

    /// In binsearch mode, how much below the size found to settle, as a fraction (default
    /// 0.05: 5% smaller, at least 1), for a safety buffer; in [0, 1).
    #[must_use]
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let at_least_one = |flag: &'static str, value: usize| {
            if value == 0 {
                Err(Error::config(flag, "0 runs nothing; use 1 or more"))
            } else {
                Ok(())
            }
        };
        at_least_one("steps_per_trial", self.steps_per_trial)?;
        at_least_one("init_val", self.init_val)?;
        at_least_one("max_trials", self.max_trials)?;
        if self.max_val < self.init_val {
            return Err(Error::config(
                "max_val",
                format!(
                    "{} is below init_val ({}); raise it or lower init_val",
                    self.max_val, self.init_val
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.margin) {
            return Err(Error::config(
                "margin",
                format!(
                    "{} is not a fraction in [0, 1); use for example 0.05, or 0 for none",
                    self.margin
                ),
            ));
        }
        Ok(())
    }
}

/// How the learning rate rises during [`Tuner::lr_find`] (Lightning's `mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum LrFindMode {
    /// Geometrically, from `min_lr` to `max_lr` (the plot's x axis is logarithmic).
    #[default]
    Exponential,
    /// Linearly.
    Linear,
}

impl std::str::FromStr for LrFindMode {
    type Err = Error;

    /// Lightning's names: `"exponential"` or `"linear"`.
    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "exponential" => Ok(LrFindMode::Exponential),
            "linear" => Ok(LrFindMode::Linear),
            other => Err(Error::config(
                "mode",
                format!("`{other}` is not a learning rate sweep; use `exponential` or `linear`"),
            )),
        }
    }
}

/// The settings of [`Tuner::lr_find`], with Lightning's defaults: from 1e-8 to 1 in 100 steps,
/// exponentially, stopping when the smoothed loss exceeds 4 times the best.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct LrFind {
    min_lr: f64,
    max_lr: f64,
    num_training: usize,
    mode: LrFindMode,
    early_stop_threshold: Option<f64>,
}

impl Default for LrFind {
    fn default() -> Self {
        Self {
            min_lr: 1e-8,
            max_lr: 1.0,
            num_training: 100,
            mode: LrFindMode::Exponential,
            early_stop_threshold: Some(4.0),
        }
    }
}

impl LrFind {
    /// Lightning's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The learning rate of the first step (default 1e-8).
    #[must_use]
    pub fn min_lr(mut self, lr: f64) -> Self {
        self.min_lr = lr;
        self
    }

    /// The learning rate of the last step (default 1).
    #[must_use]
    pub fn max_lr(mut self, lr: f64) -> Self {
        self.max_lr = lr;
        self
    }

    /// How many learning rates (optimizer steps) to try (default 100).
    #[must_use]
    pub fn num_training(mut self, steps: usize) -> Self {
        self.num_training = steps;
        self
    }

    /// Exponential (default) or linear rise.
    #[must_use]
    pub fn mode(mut self, mode: LrFindMode) -> Self {
        self.mode = mode;
        self
    }

    /// Stops when the smoothed loss exceeds this many times the best so far (default 4);
    /// `None` never stops early.
    #[must_use]
    pub fn early_stop_threshold(mut self, threshold: Option<f64>) -> Self {
        self.early_stop_threshold = threshold;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let lowest = match self.mode {
            LrFindMode::Exponential => "above 0 (an exponential sweep multiplies it)",
            LrFindMode::Linear => "0 or more",
        };
        let positive = self.mode == LrFindMode::Exponential;
        if !self.min_lr.is_finite() || self.min_lr < 0.0 || (positive && self.min_lr == 0.0) {
            return Err(Error::config(
                "min_lr",
                format!("{} is not a learning rate; use a finite number {lowest}", self.min_lr),
            ));
        }
        if !self.max_lr.is_finite() {
            return Err(Error::config("max_lr", format!("{} is not finite", self.max_lr)));
        }
        if self.min_lr >= self.max_lr {
            return Err(Error::config(
                "min_lr",
                format!(
                    "{} is not below max_lr ({}); the sweep rises from min_lr to max_lr",
                    self.min_lr, self.max_lr
                ),
            ));
        }
        if self.num_training == 0 {
            return Err(Error::config(
                "num_training",
                "0 steps tries no learning rate; use 1 or more (Lightning's default is 100)",
            ));
        }
        if let Some(threshold) = self.early_stop_threshold
            && !(threshold.is_finite() && threshold > 0.0)
        {
            return Err(Error::config(
                "early_stop_threshold",
                format!("{threshold} is not a positive factor; use for example 4.0, or None to never stop early"),
            ));
        }
        Ok(())
    }
}

/// What [`Tuner::lr_find`] found (Lightning's `_LRFinder`): the learning rate and smoothed
/// loss of every step, the suggestion, and the plot.
#[derive(Clone, Debug, PartialEq)]
pub struct LrFinder {
    mode: LrFindMode,
    num_training: usize,
    lrs: Vec<f64>,
    losses: Vec<f64>,
    plot: Option<PathBuf>,
}

impl LrFinder {
    /// A finder holding `lrs` and their smoothed `losses` (Lightning's `results` dict), for
    /// computing a suggestion or a plot from a recorded curve. Lengths must match.
    pub fn from_results(mode: LrFindMode, lrs: Vec<f64>, losses: Vec<f64>) -> Result<Self, Error> {
        if lrs.len() != losses.len() {
            return Err(Error::config(
                "losses",
                format!(
                    "{} losses for {} learning rates; give one loss per learning rate",
                    losses.len(),
                    lrs.len()
                ),
            ));
        }
        Ok(Self {
            mode,
            num_training: lrs.len(),
            lrs,
            losses,
            plot: None,
        })
    }

    /// `(learning rate, smoothed loss)` of every step (Lightning's `results["lr"]`,
    /// `results["loss"]`). A step whose `training_step` returned no loss has a NaN loss.
    pub fn results(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.lrs.iter().copied().zip(self.losses.iter().copied())
    }

    /// The learning rates tried, in order.
    pub fn lrs(&self) -> &[f64] {
        &self.lrs
    }

    /// The smoothed losses, in order.
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// Whether the search stopped before `num_training` steps (the loss diverged, or the data
    /// and `max_epochs` gave fewer steps).
    pub fn stopped_early(&self) -> bool {
        self.lrs.len() < self.num_training
    }

    /// Where the plot was written (`lr_find.svg` in the search's run directory).
    pub fn plot_path(&self) -> Option<&Path> {
        self.plot.as_deref()
    }

    /// Lightning's suggestion: the learning rate where the smoothed loss falls fastest (the
    /// most negative gradient, torch's `gradient` with coordinates), skipping the first 10 and
    /// the last step, and the steps whose loss is not finite. `None` when fewer than 2 remain.
    ///
    /// Differs from Lightning's release on purpose: an exponential sweep's gradient is taken
    /// against `log10(lr)`, the coordinate its steps are even in, as Lightning's open fix
    /// (pull request 21171, for issue 21141) does. Lightning's release takes it against `lr`
    /// itself, which makes the smallest learning rates' steps tiny, so that noise in the flat
    /// start of the curve outweighs the real descent (on this crate's MNIST example it suggests
    /// 9e-6, which trains to 80%; against `log10(lr)` the suggestion trains to over 94%).
    /// A linear sweep's gradient is against `lr`, as in Lightning.
    pub fn suggestion(&self) -> Option<f64> {
        self.suggestion_with(10, 1)
    }

    /// [`suggestion`](Self::suggestion) skipping `skip_begin` steps at the start and `skip_end`
    /// at the end. (Lightning slices `[skip_begin:-skip_end]`, so its `skip_end=0` keeps
    /// nothing; here it keeps everything.)
    pub fn suggestion_with(&self, skip_begin: usize, skip_end: usize) -> Option<f64> {
        self.optimal_index(skip_begin, skip_end).map(|i| self.lrs[i])
    }

    fn optimal_index(&self, skip_begin: usize, skip_end: usize) -> Option<usize> {
        let end = self.losses.len().saturating_sub(skip_end);
        let kept: Vec<usize> = (skip_begin..end).filter(|&i| self.losses[i].is_finite()).collect();
        if kept.len() < 2 {
            tracing::error!(target: "burn_lightning",
                "failed to compute a learning rate suggestion: not enough points; increase the loop \
                 iteration limits or the size of your dataset/dataloader");
            return None;
        }
        // The coordinates the sweep is even in: log10(lr) for an exponential sweep.
        let xs: Vec<f64> = kept
            .iter()
            .map(|&i| match self.mode {
                LrFindMode::Exponential => self.lrs[i].log10(),
                LrFindMode::Linear => self.lrs[i],
            })
            .collect();
        let ys: Vec<f64> = kept.iter().map(|&i| self.losses[i]).collect();
        let gradients = gradient(&ys, &xs);
        // torch's argmin: the first of equal minima.
        let mut steepest = 0;
        for (i, &g) in gradients.iter().enumerate() {
            if g < gradients[steepest] {
                steepest = i;
            }
        }
        Some(kept[steepest])
    }

    /// Sets the module's learning-rate hyperparameter (`lr`, else `learning_rate`, as
    /// Lightning's `update_attr=True` looks for) to the suggestion: the module is rebuilt with
    /// [`LoadFromCheckpoint::from_hparams`] from its hyperparameters with that one changed, on
    /// its device, and keeps its weights. Without a suggestion the module is returned as it is.
    pub fn update_attr<M: LoadFromCheckpoint>(&self, model: M) -> Result<M, Error> {
        self.rebuild(model, None)
    }

    /// [`update_attr`](Self::update_attr) for the hyperparameter `attr_name` (Lightning's
    /// `attr_name`).
    pub fn update_attr_named<M: LoadFromCheckpoint>(&self, model: M, attr_name: &str) -> Result<M, Error> {
        self.rebuild(model, Some(attr_name))
    }

    fn rebuild<M: LoadFromCheckpoint>(&self, model: M, attr_name: Option<&str>) -> Result<M, Error> {
        let hparams = self.updated_hparams(&model.hparams(), attr_name)?;
        if self.suggestion().is_none() {
            return Ok(model);
        }
        let device = model.devices().into_iter().next().unwrap_or_default();
        let rebuilt = M::from_hparams(&hparams, &device);
        rebuilt
            .try_load_record(model.into_record())
            .map_err(|e| Error::Checkpoint(format!("cannot move the weights into the rebuilt module: {e}")))
    }

    /// `hparams` (a module's `<Name>Hparams`) with the learning rate `attr_name` set to the
    /// suggestion; `None` looks for `lr`, then `learning_rate`. Unchanged without a suggestion.
    /// What a command line uses to build the module it then trains.
    pub fn updated_hparams<H>(&self, hparams: &H, attr_name: Option<&str>) -> Result<H, Error>
    where
        H: serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut values = match serde_json::to_value(hparams) {
            Ok(JsonValue::Object(map)) => map,
            Ok(other) => return Err(Error::Checkpoint(format!("the hyperparameters are not a map: {other}"))),
            Err(e) => return Err(Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}"))),
        };
        let known = || values.keys().cloned().collect::<Vec<_>>().join(", ");
        let name = match attr_name {
            Some(name) if values.contains_key(name) => name.to_string(),
            Some(name) => {
                return Err(Error::config(
                    "attr_name",
                    format!("the module has no `#[hparam]` named `{name}` (it has: {})", known()),
                ));
            }
            None => match ["lr", "learning_rate"]
                .into_iter()
                .find(|name| values.contains_key(*name))
            {
                Some(name) => name.to_string(),
                None => {
                    return Err(Error::config(
                        "attr_name",
                        format!(
                            "the module's hyperparameters have neither `lr` nor `learning_rate` (it has: {}); \
                             name the learning rate's `#[hparam]` with `update_attr_named`",
                            known()
                        ),
                    ));
                }
            },
        };
        let Some(lr) = self.suggestion() else {
            return serde_json::from_value(JsonValue::Object(values))
                .map_err(|e| Error::Checkpoint(format!("cannot read the hyperparameters back: {e}")));
        };
        values.insert(name.clone(), JsonValue::from(lr));
        serde_json::from_value(JsonValue::Object(values)).map_err(|e| {
            Error::config(
                "attr_name",
                format!("`{name}` cannot hold the learning rate {lr}: {e}; name a floating-point hparam"),
            )
        })
    }

    /// The curve as an SVG chart: smoothed loss against learning rate (a logarithmic axis for
    /// an exponential sweep, as Lightning's `plot`), the suggestion marked with a red dot.
    pub fn plot_svg(&self) -> Result<String, Error> {
        use plotters::prelude::*;
        let finite: Vec<(f64, f64)> = self
            .results()
            .filter(|(lr, loss)| lr.is_finite() && loss.is_finite())
            .collect();
        let (lr_lo, lr_hi) = bounds(finite.iter().map(|p| p.0)).unwrap_or((1e-8, 1.0));
        let (loss_lo, loss_hi) = bounds(finite.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
        let pad = if loss_hi > loss_lo {
            (loss_hi - loss_lo) * 0.08
        } else {
            (loss_hi.abs() * 0.1).max(1e-3)
        };
        let y_range = (loss_lo - pad)..(loss_hi + pad);
        let suggested = self.optimal_index(10, 1).map(|i| (self.lrs[i], self.losses[i]));
        let fail = |e: &dyn std::fmt::Display| Error::Data(format!("cannot draw the learning rate plot: {e}"));
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| fail(&e))?;
            let grey = RGBColor(80, 80, 80);
            let blue = RGBColor(31, 119, 180);
            macro_rules! draw {
                ($chart:expr, $x_label:expr) => {{
                    let mut chart = $chart;
                    chart
                        .configure_mesh()
                        .x_desc("Learning rate")
                        .y_desc("Loss")
                        .x_label_formatter(&$x_label)
                        .label_style(("sans-serif", 13).into_font().color(&grey))
                        .axis_desc_style(("sans-serif", 13).into_font().color(&grey))
                        .bold_line_style(RGBColor(225, 225, 225))
                        .light_line_style(RGBColor(245, 245, 245))
                        .draw()
                        .map_err(|e| fail(&e))?;
                    for segment in self
                        .results()
                        .collect::<Vec<_>>()
                        .split(|(_, loss)| !loss.is_finite())
                    {
                        chart
                            .draw_series(LineSeries::new(segment.iter().copied(), blue.stroke_width(2)))
                            .map_err(|e| fail(&e))?;
                    }
                    if let Some(point) = suggested {
                        chart
                            .draw_series(std::iter::once(Circle::new(point, 6, RED.filled())))
                            .map_err(|e| fail(&e))?
                            .label(format!("suggested lr {:.3e}", point.0))
                            .legend(|(x, y)| Circle::new((x, y), 5, RED.filled()));
                        chart
                            .configure_series_labels()
                            .background_style(WHITE.mix(0.8))
                            .border_style(RGBColor(200, 200, 200))
                            .label_font(("sans-serif", 13))
                            .draw()
                            .map_err(|e| fail(&e))?;
                    }
                }};
            }
            let mut builder = ChartBuilder::on(&root);
            builder.margin(14).x_label_area_size(40).y_label_area_size(64);
            let sci = |v: &f64| format!("{v:.0e}");
            let plain = |v: &f64| format!("{v:.3}");
            match self.mode {
                LrFindMode::Exponential => draw!(
                    builder
                        .build_cartesian_2d((lr_lo..lr_hi.max(lr_lo * 10.0)).log_scale(), y_range)
                        .map_err(|e| fail(&e))?,
                    sci
                ),
                LrFindMode::Linear => draw!(
                    builder
                        .build_cartesian_2d(lr_lo..lr_hi.max(lr_lo + 1e-3), y_range)
                        .map_err(|e| fail(&e))?,
                    plain
                ),
            }
            root.present().map_err(|e| fail(&e))?;
        }
        Ok(svg)
    }
}

/// The smallest and largest of `values`; `None` when empty.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// torch's `gradient(ys, spacing=[xs])` (edge order 1): second-order central differences on
/// the unevenly spaced interior points, one-sided differences at both ends.
fn gradient(ys: &[f64], xs: &[f64]) -> Vec<f64> {
    let n = ys.len();
    let mut out = vec![0.0; n];
    if n < 2 {
        return out;
    }
    out[0] = (ys[1] - ys[0]) / (xs[1] - xs[0]);
    out[n - 1] = (ys[n - 1] - ys[n - 2]) / (xs[n - 1] - xs[n - 2]);
    for i in 1..n - 1 {
        let (dx1, dx2) = (xs[i] - xs[i - 1], xs[i + 1] - xs[i]);
        let a = -dx2 / (dx1 * (dx1 + dx2));
        let b = (dx2 - dx1) / (dx1 * dx2);
        let c = dx1 / (dx2 * (dx1 + dx2));
        out[i] = a * ys[i - 1] + b * ys[i] + c * ys[i + 1];
    }
    out
}

/// Lightning's `_LRFinder._exchange_scheduler`: the module's optimizer with a step-interval
/// scheduler rising from `min_lr` to `max_lr` over `num_training` steps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LrSweep {
    min_lr: f64,
    max_lr: f64,
    num_training: usize,
    mode: LrFindMode,
}

impl SchedulerSwap for LrSweep {
    /// Replaces `optimizer`'s scheduler (the module's, if any) with the sweep.
    fn exchange_scheduler(&self, optimizer: &mut Optimizer) -> Result<(), Error> {
        let sweep = *self;
        let scheduler = LrSchedulerConfig::new(move |_lr| Ok::<_, String>(SweepSchedule { sweep, calls: 0 }))
            .interval(Interval::Step)
            .name("lr_find");
        optimizer.exchange_scheduler(self.min_lr, scheduler)
    }
}

/// Lightning's `_ExponentialLR`/`_LinearLR` as a burn scheduler. Its first call gives `min_lr`
/// (torch's constructor step); call `k >= 1` gives the rate at `r = (k + 1) / num_training`,
/// so the last of `num_training` steps uses `max_lr`.
#[derive(Clone, Debug)]
struct SweepSchedule {
    sweep: LrSweep,
    calls: usize,
}

impl LrScheduler for SweepSchedule {
    fn step(&mut self) -> BurnLearningRate {
        let LrSweep {
            min_lr,
            max_lr,
            num_training,
            mode,
        } = self.sweep;
        let lr = if self.calls == 0 {
            min_lr
        } else {
            let r = (self.calls + 1) as f64 / num_training as f64;
            match mode {
                LrFindMode::Exponential => min_lr * (max_lr / min_lr).powf(r),
                LrFindMode::Linear => min_lr + r * (max_lr - min_lr),
            }
        };
        self.calls += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("calls", self.calls as f64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(calls) = record.scalar::<f64>("calls") {
            self.calls = calls as usize;
        }
    }
}

/// Lightning's `_LRCallback`: the learning rate of every optimizer step, and the loss smoothed
/// with bias correction; asks the trainer to stop once it diverges.
struct LrRecorder {
    early_stop_threshold: Option<f64>,
    lrs: Vec<f64>,
    losses: Vec<f64>,
    avg_loss: f64,
    best_loss: f64,
    lr_at_start: f64,
    step_at_start: usize,
}

impl LrRecorder {
    fn new(early_stop_threshold: Option<f64>) -> Self {
        Self {
            early_stop_threshold,
            lrs: Vec::new(),
            losses: Vec::new(),
            avg_loss: 0.0,
            best_loss: 0.0,
            lr_at_start: f64::NAN,
            step_at_start: 0,
        }
    }
}

impl<M: LightningModule> Callback<M> for LrRecorder {
    fn on_train_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        self.lr_at_start = cx.learning_rates().first().map_or(f64::NAN, |rate| rate.lr);
        self.step_at_start = cx.global_step;
    }

    fn on_train_batch_end(
        &mut self,
        _module: &mut M,
        outputs: Option<&StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        // Lightning records only the batches that step the optimizer (not those accumulating).
        if cx.global_step == self.step_at_start {
            return;
        }
        self.lrs.push(self.lr_at_start);
        let Some(outputs) = outputs else {
            // Not counted in the suggestion, as Lightning's NaN.
            self.losses.push(f64::NAN);
            return;
        };
        let loss = outputs.loss.clone().into_scalar::<f64>();
        let current_step = cx.global_step;
        self.avg_loss = BETA * self.avg_loss + (1.0 - BETA) * loss;
        let smoothed = self.avg_loss / (1.0 - BETA.powi(current_step as i32 + 1));
        if self
            .early_stop_threshold
            .is_some_and(|threshold| current_step > 1 && smoothed > threshold * self.best_loss)
        {
            cx.stop();
        }
        if smoothed < self.best_loss || current_step == 1 {
            self.best_loss = smoothed;
        }
        self.losses.push(smoothed);
    }
}
