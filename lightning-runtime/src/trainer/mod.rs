//! The [`Trainer`]: Lightning's flags, and the entry points `fit`, `validate`, `test` and
//! `predict`. The loops themselves are in [`fit`](self::fit) and [`evaluate`](self::evaluate).

mod batches;
mod checkpoint_writer;
mod evaluate;
mod fit;
mod restore;
mod run;

use crate::callbacks::{EarlyStopping, ModelCheckpoint};
use crate::config::TrainerConfig;
use crate::data::DataModule;
use crate::hooks::{
    Callback, Callbacks, ConfigureOptimizers, LightningModule, PredictStep, TestStep, TrainingStep, ValidationStep,
};
use crate::loggers::Logger;
use crate::logging::Metrics;
use crate::optim::{GradientAccumulationScheduler, GradientClip};
use crate::resume::CkptPath;
use crate::state::Loop;
use crate::{Device, Error};
use std::path::{Path, PathBuf};

/// How many batches of a loop to run (Lightning's `limit_*_batches`): all, a count, or a
/// fraction of the dataloader. Built from `usize`/`i32` (a count) or `f64` (a fraction).
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub enum Limit {
    #[default]
    All,
    /// At most this many batches; 0 turns the loop off.
    Batches(usize),
    /// This fraction of the batches, in (0, 1]; 0.0 turns the loop off, and a whole number
    /// above 1 (`10.0`) is a count, as in Lightning.
    Fraction(f64),
    #[doc(hidden)]
    Negative(i64),
}

impl From<usize> for Limit {
    fn from(n: usize) -> Self {
        Limit::Batches(n)
    }
}

impl From<i32> for Limit {
    fn from(n: i32) -> Self {
        usize::try_from(n).map_or(Limit::Negative(n.into()), Limit::Batches)
    }
}

impl From<f64> for Limit {
    fn from(f: f64) -> Self {
        Limit::Fraction(f)
    }
}

impl Limit {
    /// Lightning's reading: a fraction of 0.0 turns the loop off and a whole float above 1 is a
    /// count of batches; other fractions must be in (0, 1].
    pub(crate) fn validate(self, flag: &'static str) -> Result<Self, Error> {
        match self {
            Limit::Fraction(0.0) => Ok(Limit::Batches(0)),
            Limit::Fraction(f) if f > 1.0 && f.is_finite() && f.fract() == 0.0 => Ok(Limit::Batches(f as usize)),
            Limit::Fraction(f) if !(f > 0.0 && f <= 1.0) => Err(Error::config(
                flag,
                format!(
                    "the fraction {f} is outside [0, 1]; use a fraction in [0, 1] (0 turns the loop off), or a whole number of batches"
                ),
            )),
            Limit::Negative(n) => Err(Error::config(
                flag,
                format!(
                    "{n} batches is negative; use a number of batches, 0 to turn the loop off, or a fraction in (0, 1]"
                ),
            )),
            ok => Ok(ok),
        }
    }

    /// Whether the loop runs at all.
    fn is_off(self) -> bool {
        self == Limit::Batches(0)
    }
}

/// When to validate inside an epoch (Lightning's `val_check_interval`): a fraction of the epoch,
/// or every N training batches.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ValCheckInterval {
    Fraction(f64),
    Batches(usize),
    #[doc(hidden)]
    Negative(i64),
}

impl Default for ValCheckInterval {
    fn default() -> Self {
        ValCheckInterval::Fraction(1.0)
    }
}

impl From<f64> for ValCheckInterval {
    fn from(f: f64) -> Self {
        ValCheckInterval::Fraction(f)
    }
}

impl From<usize> for ValCheckInterval {
    fn from(n: usize) -> Self {
        ValCheckInterval::Batches(n)
    }
}

impl From<i32> for ValCheckInterval {
    fn from(n: i32) -> Self {
        usize::try_from(n).map_or(ValCheckInterval::Negative(n.into()), ValCheckInterval::Batches)
    }
}

/// Lightning's `gradient_clip_algorithm`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ClipAlgorithm {
    #[default]
    Norm,
    Value,
}

/// The trainer's flags, as validated by [`TrainerBuilder::build`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub max_epochs: Option<usize>,
    pub min_epochs: usize,
    pub max_steps: Option<usize>,
    pub min_steps: usize,
    pub limit_train_batches: Limit,
    pub limit_val_batches: Limit,
    pub limit_test_batches: Limit,
    pub limit_predict_batches: Limit,
    pub val_check_interval: ValCheckInterval,
    pub check_val_every_n_epoch: Option<usize>,
    pub num_sanity_val_steps: usize,
    pub fast_dev_run: Option<usize>,
    pub default_root_dir: PathBuf,
    pub seed: Option<u64>,
    pub device: Device,
    /// Data-parallel training: the devices of ranks 1.. (rank zero's is `device`); empty on one
    /// device. See [`crate::strategy`].
    pub replica_devices: Vec<Device>,
    /// Data-parallel training across processes (`mpirun`/`srun`): this process's rank and the
    /// collectives; `None` in a single process. See [`crate::process_group`].
    pub process_group: Option<std::sync::Arc<crate::process_group::ProcessGroup>>,
    pub gradient_clip: Option<GradientClip>,
    /// Batches whose gradients are summed before each optimizer step, per epoch.
    pub accumulate_grad_batches: GradientAccumulationScheduler,
    /// Step values reach the loggers every this many training batches.
    pub log_every_n_steps: usize,
    /// Whether a TensorBoard logger is added when none is given.
    pub default_logger: bool,
    /// Whether a signal that stopped a run then exits the process.
    pub exit_on_signal: bool,
    /// Whether a loss or gradient that is not finite ends the run.
    pub detect_anomaly: bool,
    /// Whether `report.html` is written into the run directory.
    pub enable_report: bool,
    /// The profiler of every run, if any.
    pub profiler: Option<crate::Profiler>,
    /// Batches trained and validated on, the same every epoch (`Limit::Batches(0)`: off).
    pub overfit_batches: Limit,
    /// The dataloaders are requested again every this many epochs (0: never).
    pub reload_dataloaders_every_n_epochs: usize,
    /// Set only in the tuner's searches (`Tuner::lr_find`, `Tuner::scale_batch_size`).
    pub tuning: Option<crate::tuner::Tuning>,
    /// The precision training runs in (Lightning's `precision`).
    pub precision: crate::Precision,
    /// Good steps after which `16-mixed` doubles its loss scale (torch's 2000; shorter in tests).
    pub grad_scaler_growth_interval: usize,
}

/// Builds a [`Trainer`]; every flag has Lightning's default. The flags that are data live in a
/// [`TrainerConfig`] (set them one by one with the methods below, or all at once with
/// [`config`](Self::config)); loggers, callbacks and the device are set here only.
pub struct TrainerBuilder<M: LightningModule> {
    config: TrainerConfig,
    device: Option<Device>,
    loggers: Vec<Box<dyn Logger>>,
    callbacks: Callbacks<M>,
    grad_scaler_growth_interval: usize,
}

/// The builder's setter of every flag of [`trainer_flags!`](crate::config): one method per flag,
/// with the flag's doc.
macro_rules! builder_setters {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde($($serde:tt)*)])?
        $field:ident: $fty:ty = $default:expr;
        fn $setter:ident($arg:ident: $aty:ty) => $conv:expr;
    )*) => {$(
        $(#[doc = $doc])*
        #[must_use]
        pub fn $setter(mut self, $arg: $aty) -> Self {
            self.config.$field = $conv;
            self
        }
    )*};
}

impl<M: LightningModule> TrainerBuilder<M> {
    fn new() -> Self {
        Self {
            config: TrainerConfig::default(),
            device: None,
            loggers: Vec::new(),
            callbacks: Vec::new(),
            grad_scaler_growth_interval: crate::precision::GROWTH_INTERVAL,
        }
    }

    /// Optimizer steps without an inf/NaN gradient after which `16-mixed` doubles its loss scale
    /// (torch's `growth_interval`, 2000). For tests.
    #[doc(hidden)]
    #[must_use]
    pub fn grad_scaler_growth_interval(mut self, steps: usize) -> Self {
        self.grad_scaler_growth_interval = steps.max(1);
        self
    }

    crate::config::trainer_flags!(builder_setters);

    /// Replaces every data flag by those of `config` (loggers, callbacks and the device stay):
    /// a trainer from a YAML file or [`LightningCli`](crate::cli::LightningCli)'s options.
    #[must_use]
    pub fn config(mut self, config: TrainerConfig) -> Self {
        self.config = config;
        self
    }

    /// The data flags as set so far.
    pub fn trainer_config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The device to run on (default: burn's default device for the enabled backends).
    #[must_use]
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// Adds a logger (Lightning's `logger=[...]`): logged values go to every logger given, and
    /// the first one's directory is the run directory. Without one, a TensorBoard logger writes
    /// into `<default_root_dir>/lightning_logs/version_N`.
    #[must_use]
    pub fn logger(mut self, logger: impl Logger + 'static) -> Self {
        self.loggers.push(Box::new(logger));
        self
    }

    /// Adds a callback (run in the order added; checkpointing callbacks last).
    #[must_use]
    pub fn callback(mut self, callback: impl Callback<M> + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Checks the flags and builds the trainer. Errors name the flag and what to change.
    pub fn build(self) -> Result<Trainer<M>, Error> {
        let flags = self.config;
        let checked = flags.check()?;
        let mut devices = validate_device(self.device, &flags.accelerator, &flags.devices)?;
        // Under `mpirun`/`srun`: one process per device, each taking its local rank's.
        let process_group = crate::process_group::join(&flags.devices, flags.num_nodes, &flags.strategy)?;
        let process_group = process_group.map(|(group, index)| {
            let device = devices.swap_remove(index % devices.len());
            devices = vec![device];
            group
        });
        crate::strategy::check_strategy(&flags.strategy, devices.len())?;
        let device = devices.remove(0);
        let replica_devices = devices;
        let ranks = replica_devices.len() + 1;
        if ranks > 1 || process_group.is_some() {
            let ranks = process_group.as_ref().map_or(ranks, |group| group.world_size);
            if M::OPTIMIZATION == crate::Optimization::Manual {
                return Err(Error::config(
                    "devices",
                    format!(
                        "{ranks} devices train data-parallel, which is built for automatic optimization only; \
                         use one device (`devices(1)`) under manual optimization"
                    ),
                ));
            }
            if !checked.overfit_batches.is_off() {
                return Err(Error::config(
                    "overfit_batches",
                    format!(
                        "it is not built for data-parallel training ({ranks} devices); use one device (`devices(1)`) \
                         to overfit"
                    ),
                ));
            }
        }
        if flags.deterministic {
            crate::accelerator::check_deterministic(&device)?;
        }
        let gradient_clip = match flags.gradient_clip_val {
            None | Some(0.0) => None,
            Some(v) => Some(match flags.gradient_clip_algorithm {
                ClipAlgorithm::Norm => GradientClip::Norm(v),
                ClipAlgorithm::Value => GradientClip::Value(v),
            }),
        };
        if gradient_clip.is_some() && M::OPTIMIZATION == crate::Optimization::Manual {
            return Err(Error::config(
                "gradient_clip_val",
                "it does not apply under manual optimization; call `grads.clip(self, GradientClip::Norm(..))` in `training_step` instead",
            ));
        }
        if flags.accumulate_grad_batches.accumulates() && M::OPTIMIZATION == crate::Optimization::Manual {
            return Err(Error::config(
                "accumulate_grad_batches",
                "it does not apply under manual optimization; sum the gradients yourself (`grads.accumulate(self, more)`) and call `optimizer_step` every N batches",
            ));
        }
        let precision = checked.precision;
        precision.check(&device)?;
        if precision.is_mixed() && M::OPTIMIZATION == crate::Optimization::Manual {
            return Err(Error::config(
                "precision",
                format!(
                    "`{precision}` is not available under manual optimization yet; use `{}` (or `32-true`)",
                    if precision == crate::Precision::F16Mixed {
                        "16-true"
                    } else {
                        "bf16-true"
                    }
                ),
            ));
        }
        // Lightning: neither limit set means 1000 epochs.
        let max_epochs = match (flags.max_epochs, flags.max_steps) {
            (None, None) => Some(1000),
            (epochs, _) => epochs,
        };
        let mut callbacks = self.callbacks;
        // Several processes: only rank zero reports and writes (Lightning's `rank_zero_only`).
        let quiet_rank = process_group.as_ref().is_some_and(|group| group.rank != 0);
        if quiet_rank {
            callbacks.retain(|callback| {
                callback.role() != crate::CallbackRole::Checkpoint
                    && !matches!(&*callback.name(), "ProgressBar" | "EpochSummary" | "ModelSummary")
            });
        }
        // Options of the built-in callbacks that cannot run together fail here, before any work.
        for callback in callbacks.iter_mut() {
            let callback: &mut dyn std::any::Any = &mut **callback;
            if let Some(checkpoint) = callback.downcast_mut::<ModelCheckpoint>() {
                checkpoint.check()?;
            }
        }
        if !flags.enable_progress_bar && callbacks.iter().any(|c| c.name() == "ProgressBar") {
            return Err(Error::config(
                "enable_progress_bar",
                "it is false but a `ProgressBar` was given with `.callback(..)`; remove one of the two",
            ));
        }
        if flags.enable_progress_bar
            && !quiet_rank
            && !callbacks
                .iter()
                .any(|c| matches!(&*c.name(), "ProgressBar" | "EpochSummary"))
        {
            callbacks.push(Box::new(crate::progress::ProgressBar::new()));
        }
        if let Some(max_time) = &flags.max_time {
            let duration = max_time.duration()?;
            if !callbacks.iter().any(|c| c.name() == "Timer") {
                callbacks.push(Box::new(crate::timer::Timer::new(Some(duration))));
            }
        }
        if let Some(norm_type) = flags.track_grad_norm {
            callbacks.push(Box::new(crate::monitors::GradientNormMonitor::new(norm_type)));
        }
        if flags.enable_model_summary && !quiet_rank && !callbacks.iter().any(|c| c.name() == "ModelSummary") {
            callbacks.push(Box::new(crate::callbacks::ModelSummary::default()));
        }
        let fast_dev_run = flags.fast_dev_run;
        if flags.enable_checkpointing
            && !quiet_rank
            && fast_dev_run.is_none()
            && !callbacks.iter().any(|c| c.role() == crate::CallbackRole::Checkpoint)
        {
            callbacks.push(Box::new(ModelCheckpoint::default()));
        }
        run::merge_callbacks(&mut callbacks, Vec::new());
        let config = Config {
            max_epochs,
            min_epochs: flags.min_epochs.unwrap_or(0),
            max_steps: flags.max_steps,
            min_steps: flags.min_steps.unwrap_or(0),
            limit_train_batches: checked.limit_train_batches,
            limit_val_batches: checked.limit_val_batches,
            limit_test_batches: checked.limit_test_batches,
            limit_predict_batches: checked.limit_predict_batches,
            val_check_interval: flags.val_check_interval,
            check_val_every_n_epoch: flags.check_val_every_n_epoch,
            num_sanity_val_steps: flags.num_sanity_val_steps,
            fast_dev_run,
            default_root_dir: flags.default_root_dir.unwrap_or_else(|| PathBuf::from(".")),
            seed: flags.seed,
            device,
            replica_devices,
            process_group,
            gradient_clip,
            accumulate_grad_batches: flags.accumulate_grad_batches,
            log_every_n_steps: flags.log_every_n_steps,
            exit_on_signal: flags.exit_on_signal,
            detect_anomaly: flags.detect_anomaly,
            default_logger: flags.logger && !quiet_rank,
            enable_report: flags.enable_report && !quiet_rank,
            profiler: checked.profiler,
            overfit_batches: checked.overfit_batches,
            reload_dataloaders_every_n_epochs: flags.reload_dataloaders_every_n_epochs,
            tuning: None,
            precision,
            grad_scaler_growth_interval: self.grad_scaler_growth_interval,
        };
        let loggers = if flags.logger && !quiet_rank {
            self.loggers
        } else {
            Vec::new()
        };
        Ok(Trainer::from_parts(
            config.with_fast_dev_run().with_overfit_batches(),
            callbacks,
            loggers,
        ))
    }
}

/// `overfit_batches`: a count or a fraction as the `limit_*_batches` flags take (0: off); an
/// error with `fast_dev_run`, which Lightning lets override part of it.
pub(crate) fn validate_overfit_batches(overfit_batches: Limit, fast_dev_run: Option<usize>) -> Result<Limit, Error> {
    let overfit_batches = overfit_batches.validate("overfit_batches")?;
    if let Some(n) = fast_dev_run
        && !overfit_batches.is_off()
    {
        return Err(Error::config(
            "overfit_batches",
            format!(
                "it contradicts `fast_dev_run` ({n}): both choose the batches to run; keep `overfit_batches` to check \
                 the model can overfit, or `fast_dev_run` for a smoke test"
            ),
        ));
    }
    Ok(overfit_batches)
}

/// The devices of the run, rank zero's first: `device(..)`, else what `accelerator` and
/// `devices` name, else burn's default. `device(..)` with an accelerator or devices other than
/// `"auto"` is an error.
pub(crate) fn validate_device(
    device: Option<Device>,
    accelerator: &crate::Accelerator,
    devices: &crate::Devices,
) -> Result<Vec<Device>, Error> {
    let chosen = crate::accelerator::resolve_devices(accelerator, devices)?;
    match (device, chosen) {
        (Some(device), None) => Ok(vec![device]),
        (Some(device), Some(_)) => Err(Error::config(
            if *accelerator == crate::Accelerator::Auto {
                "devices"
            } else {
                "accelerator"
            },
            format!(
                "it names a device, and `device({device:?})` was given too; keep one of the two (`device(..)` wins only \
                 over \"auto\")"
            ),
        )),
        (None, Some(devices)) => Ok(devices),
        (None, None) => Ok(vec![Device::default()]),
    }
}

impl Config {
    /// `overfit_batches(n)`: n batches of training and validation (Lightning's rules; the
    /// batches are replayed, see `Run::loader`).
    fn with_overfit_batches(mut self) -> Self {
        if !self.overfit_batches.is_off() {
            self.limit_train_batches = self.overfit_batches;
            self.limit_val_batches = self.overfit_batches;
        }
        self
    }

    /// `fast_dev_run(n)`: n batches of each loop, one epoch, no sanity check (Lightning's rules).
    fn with_fast_dev_run(mut self) -> Self {
        if let Some(n) = self.fast_dev_run {
            self.limit_train_batches = Limit::Batches(n);
            self.limit_val_batches = Limit::Batches(n);
            self.limit_test_batches = Limit::Batches(n);
            self.limit_predict_batches = Limit::Batches(n);
            self.max_steps = Some(n);
            self.max_epochs = Some(1);
            self.num_sanity_val_steps = 0;
            self.val_check_interval = ValCheckInterval::Fraction(1.0);
            self.check_val_every_n_epoch = Some(1);
        }
        self
    }
}

/// Runs a [`LightningModule`]: `fit`, `validate`, `test`, `predict`, with Lightning's hook order,
/// flags and logging.
///
/// ```ignore
/// let mut trainer = Trainer::builder().max_epochs(5).build()?;
/// let model = trainer.fit(model, &mut datamodule)?;
/// let metrics = trainer.test(&model, &mut datamodule)?;
/// ```
pub struct Trainer<M: LightningModule> {
    config: Config,
    callbacks: Callbacks<M>,
    loggers: Vec<Box<dyn Logger>>,
    callback_metrics: Metrics,
    logged_metrics: Metrics,
    progress_bar_metrics: Metrics,
    progress: Progress,
    /// What was sent to the loggers, for `report.html`.
    report: crate::report::Recorder,
    /// The optimizer of the last fit, with its state, for [`save_checkpoint`](Self::save_checkpoint).
    optimizer: Option<crate::optim::Optimizer>,
    /// The optimizers after the first, when `configure_optimizers` returned several.
    more_optimizers: Vec<crate::optim::Optimizer>,
}

/// What one `fit` hands to the next on the same trainer, as Lightning's loops keep their
/// progress: a second `fit` goes on from there (and past `max_epochs` trains no more).
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    pub current_epoch: usize,
    pub global_step: usize,
    /// Training batches run so far, across epochs (Lightning's `total_batch_idx + 1`).
    pub total_batches: usize,
    /// Training batches that stepped the optimizer (Lightning's `_batches_that_stepped`): the
    /// step loggers receive.
    pub batches_that_stepped: usize,
    pub log_dir: Option<PathBuf>,
}

/// A `fit` that failed, with the module as it was when it failed: a typo found at epoch 50 does
/// not throw away 50 epochs of training. `?` turns it into its [`Error`].
pub struct FitError<M> {
    /// The module, with the weights of the last optimizer step.
    pub model: M,
    pub error: Error,
}

impl<M> FitError<M> {
    /// The error, without the module.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<M> std::fmt::Debug for FitError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<M> std::fmt::Display for FitError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<M> std::error::Error for FitError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<M> From<FitError<M>> for Error {
    fn from(e: FitError<M>) -> Self {
        e.error
    }
}

impl<M: LightningModule> Trainer<M> {
    /// A trainer for a tuner's search: `config` as given, only `callbacks`, no loggers.
    pub(crate) fn for_tuning(config: Config, callbacks: Callbacks<M>) -> Self {
        Self::from_parts(config, callbacks, Vec::new())
    }

    /// A trainer that has run nothing yet.
    fn from_parts(config: Config, callbacks: Callbacks<M>, loggers: Vec<Box<dyn Logger>>) -> Self {
        Self {
            config,
            callbacks,
            loggers,
            callback_metrics: Metrics::default(),
            logged_metrics: Metrics::default(),
            progress_bar_metrics: Metrics::default(),
            progress: Progress::default(),
            report: Default::default(),
            optimizer: None,
            more_optimizers: Vec::new(),
        }
    }

    /// The validated flags.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }
}

impl<M: LightningModule> Trainer<M> {
    /// A builder with Lightning's defaults.
    pub fn builder() -> TrainerBuilder<M> {
        TrainerBuilder::new()
    }

    /// Trains `model` on the data of `data` (a [`DataModule`], [`Loaders`](crate::Loaders), or
    /// `()` when the module's own dataloader hooks provide it) and returns the trained module.
    /// On failure the module comes back inside the [`FitError`]. A second `fit` on the same
    /// trainer goes on from the first one's epoch and step, in the same run directory.
    pub fn fit<D>(&mut self, model: M, data: D) -> Result<M, FitError<M>>
    where
        M: TrainingStep + ConfigureOptimizers,
        D: DataModule<M::Batch>,
    {
        let result = fit::fit(self, model, data, None);
        if let Err(FitError {
            error: Error::Interrupted { signal, .. },
            ..
        }) = &result
        {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Lightning's `trainer.fit(model, datamodule, ckpt_path=...)`: resumes the fit saved in a
    /// checkpoint, a path or [`CkptPath::Last`] / [`CkptPath::Best`] (`"last"` / `"best"`).
    ///
    /// Restores, in Lightning's order: the module's `on_load_checkpoint` and its weights, the
    /// datamodule's state (`load_state_dict`), the callbacks' `on_load_checkpoint` and states
    /// (by state key), then, after `configure_optimizers`, the optimizer's and scheduler's
    /// states, `current_epoch`, `global_step` and the logging step. The sanity check is
    /// skipped. A checkpoint saved inside an epoch (`every_n_train_steps`) continues at the
    /// next batch with the same data order, which Lightning does not do (it restarts the
    /// epoch's data): the completed epochs' shuffles are drawn again and the batches already
    /// seen are loaded and skipped. What ran after the saved batch's `on_train_batch_end` (a
    /// validation due then, its step's logging) is not run again. The device's random
    /// generator cannot be read back from burn, so it is not restored: dropout masks after a
    /// resume differ from an uninterrupted run's.
    ///
    /// A missing file, weights of another module, or `Best` without a monitored
    /// `ModelCheckpoint` are errors naming what is wrong.
    pub fn fit_from<D>(&mut self, model: M, data: D, ckpt_path: impl Into<CkptPath>) -> Result<M, FitError<M>>
    where
        M: TrainingStep + ConfigureOptimizers,
        D: DataModule<M::Batch>,
    {
        let checkpoint = match self.load_checkpoint(&ckpt_path.into()) {
            Ok(checkpoint) => checkpoint,
            Err(error) => return Err(FitError { model, error }),
        };
        let result = fit::fit(self, model, data, Some(&checkpoint));
        if let Err(FitError {
            error: Error::Interrupted { signal, .. },
            ..
        }) = &result
        {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Lightning's `trainer.save_checkpoint(path)`, from outside a hook (after `fit`): writes a
    /// checkpoint of `model`, the last fit's optimizer and scheduler states, the trainer's
    /// counters and the callbacks' states, after the `on_save_checkpoint` hooks, atomically.
    /// [`fit_from`](Self::fit_from) resumes it at the start of the next epoch. The datamodule's
    /// state is not in it (the trainer does not hold the datamodule after `fit`).
    pub fn save_checkpoint(&mut self, model: &mut M, path: impl AsRef<Path>) -> Result<(), Error> {
        restore::save_checkpoint(self, model, path.as_ref())
    }

    /// The checkpoint `ckpt_path` names, read.
    fn load_checkpoint(&self, ckpt_path: &CkptPath) -> Result<crate::checkpoint::Checkpoint, Error> {
        let path = ckpt_path.resolve(
            &self.checkpoint_callbacks(),
            self.progress.log_dir.as_deref(),
            &self.config.default_root_dir,
        )?;
        crate::checkpoint::Checkpoint::load(&path)
    }

    /// Loads the weights of the checkpoint `ckpt_path` names into `model` (after its
    /// `on_load_checkpoint`), as Lightning's `validate`/`test`/`predict` with `ckpt_path` do.
    fn load_weights(&self, model: &mut M, ckpt_path: CkptPath) -> Result<(), Error> {
        let checkpoint = self.load_checkpoint(&ckpt_path)?;
        *model = checkpoint.load_into(model.clone())?;
        Ok(())
    }

    /// [`validate`](Self::validate) with the weights of a checkpoint (Lightning's
    /// `trainer.validate(model, ckpt_path=...)`); they stay in `model`.
    pub fn validate_from<D>(&mut self, model: &mut M, data: D, ckpt_path: impl Into<CkptPath>) -> Result<Metrics, Error>
    where
        M: ValidationStep,
        D: DataModule<M::Batch>,
    {
        self.load_weights(model, ckpt_path.into())?;
        self.validate(model, data)
    }

    /// [`test`](Self::test) with the weights of a checkpoint (Lightning's
    /// `trainer.test(model, ckpt_path=...)`); they stay in `model`.
    pub fn test_from<D>(&mut self, model: &mut M, data: D, ckpt_path: impl Into<CkptPath>) -> Result<Metrics, Error>
    where
        M: TestStep,
        D: DataModule<M::Batch>,
    {
        self.load_weights(model, ckpt_path.into())?;
        self.test(model, data)
    }

    /// [`predict`](Self::predict) with the weights of a checkpoint (Lightning's
    /// `trainer.predict(model, ckpt_path=...)`); they stay in `model`.
    pub fn predict_from<D>(
        &mut self,
        model: &mut M,
        data: D,
        ckpt_path: impl Into<CkptPath>,
    ) -> Result<Vec<M::Prediction>, Error>
    where
        M: PredictStep,
        D: DataModule<M::Batch>,
    {
        self.load_weights(model, ckpt_path.into())?;
        self.predict(model, data)
    }

    /// After a run a signal stopped, and cleaned up after: exits as the signal would have
    /// (status 130 or 143), unless `exit_on_signal(false)`.
    fn exit_after_signal(&self, signal: i32) {
        if self.config.exit_on_signal {
            let status = crate::signals::exit_status(signal);
            eprintln!(
                "{}: stopped after saving what was pending; exiting with {status}",
                crate::signals::name(signal)
            );
            std::process::exit(status);
        }
    }

    /// Runs the validation loop once on `model` and returns its epoch metrics. What hooks set
    /// on `&mut self` stays in `model`, as in Lightning.
    pub fn validate<D>(&mut self, model: &mut M, data: D) -> Result<Metrics, Error>
    where
        M: ValidationStep,
        D: DataModule<M::Batch>,
    {
        let result = evaluate::evaluate(self, model, data, Loop::Validation);
        if let Err(Error::Interrupted { signal, .. }) = &result {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Runs the test loop once on `model` and returns its epoch metrics. What hooks set on
    /// `&mut self` (outputs collected in `on_test_epoch_end`, say) stays in `model`.
    pub fn test<D>(&mut self, model: &mut M, data: D) -> Result<Metrics, Error>
    where
        M: TestStep,
        D: DataModule<M::Batch>,
    {
        let result = evaluate::evaluate(self, model, data, Loop::Test);
        if let Err(Error::Interrupted { signal, .. }) = &result {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Runs `predict_step` over the prediction data and returns the predictions, in order.
    pub fn predict<D>(&mut self, model: &mut M, data: D) -> Result<Vec<M::Prediction>, Error>
    where
        M: PredictStep,
        D: DataModule<M::Batch>,
    {
        let result = evaluate::predict(self, model, data);
        if let Err(Error::Interrupted { signal, .. }) = &result {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// The metrics of the last run (Lightning's `trainer.callback_metrics`).
    pub fn callback_metrics(&self) -> &Metrics {
        &self.callback_metrics
    }

    /// Everything the last run sent to the loggers (Lightning's `trainer.logged_metrics`).
    pub fn logged_metrics(&self) -> &Metrics {
        &self.logged_metrics
    }

    /// What the last run logged with `prog_bar(true)` (Lightning's
    /// `trainer.progress_bar_metrics`).
    pub fn progress_bar_metrics(&self) -> &Metrics {
        &self.progress_bar_metrics
    }

    /// The loggers, the first one's directory being the run directory.
    pub fn loggers(&self) -> &[Box<dyn Logger>] {
        &self.loggers
    }

    /// The run directory of this trainer's fits (`<default_root_dir>/lightning_logs/version_N`).
    pub fn log_dir(&self) -> Option<&Path> {
        self.progress.log_dir.as_deref()
    }

    /// Epochs completed by this trainer's fits.
    pub fn current_epoch(&self) -> usize {
        self.progress.current_epoch
    }

    /// Optimizer steps taken by this trainer's fits.
    pub fn global_step(&self) -> usize {
        self.progress.global_step
    }

    /// The callbacks, in the order they run.
    pub fn callbacks(&self) -> &[Box<dyn Callback<M>>] {
        &self.callbacks
    }

    /// The first callback of type `C`, to read its state after `fit`.
    pub fn callback<C: Callback<M>>(&self) -> Option<&C> {
        self.callbacks_of::<C>().next()
    }

    /// Every callback of type `C`, in the order they run.
    pub fn callbacks_of<C: Callback<M>>(&self) -> impl Iterator<Item = &C> {
        self.callbacks.iter().filter_map(|callback| {
            let callback: &dyn std::any::Any = &**callback;
            callback.downcast_ref::<C>()
        })
    }

    /// The first [`ModelCheckpoint`] (Lightning's `trainer.checkpoint_callback`): after `fit`,
    /// its `best_model_path()`, `best_model_score()`, `last_model_path()`, ...
    pub fn checkpoint_callback(&self) -> Option<&ModelCheckpoint> {
        self.callback()
    }

    /// Every [`ModelCheckpoint`] (Lightning's `trainer.checkpoint_callbacks`).
    pub fn checkpoint_callbacks(&self) -> Vec<&ModelCheckpoint> {
        self.callbacks_of().collect()
    }

    /// The first [`EarlyStopping`] (Lightning's `trainer.early_stopping_callback`): after
    /// `fit`, its `stopped_epoch()`, `stop_reason()`, `wait_count()`, `best_score()`.
    pub fn early_stopping_callback(&self) -> Option<&EarlyStopping> {
        self.callback()
    }

    /// Every [`EarlyStopping`] (Lightning's `trainer.early_stopping_callbacks`).
    pub fn early_stopping_callbacks(&self) -> Vec<&EarlyStopping> {
        self.callbacks_of().collect()
    }
}
