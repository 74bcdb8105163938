//! Lightning's loops: fit (training, with validation inside it), evaluation (validate, test and
//! the sanity check) and predict; the batches they draw; the optimizer closure around each step;
//! and the run every entry point shares (setup, hook dispatch, loggers, checkpoint requests,
//! teardown).
//!
//! Uses every folder below the trainer (`core`, `optim`, `hooks`, `checkpoint`, `strategies`,
//! `profiler`, `loggers`, `callbacks`). A loop never names the `Trainer`: the trainer lends it
//! the validated flags (`Config`) and what it keeps between runs (`Session`), and reads the
//! results back from the session.

mod batches;
pub(crate) mod evaluate;
pub(crate) mod fit;
pub(crate) mod optimization;
pub(crate) mod run;
pub(crate) mod signals;

use crate::core::flags::{Limit, ValCheckInterval};
use crate::core::logging::Metrics;
use crate::hooks::{Callbacks, LightningModule};
use crate::loggers::Logger;
use crate::loggers::report::Recorder;
use crate::optim::{GradientAccumulationScheduler, GradientClip, Optimizer};
use crate::strategies::process_group::ProcessGroup;
use crate::{Device, Error};
use std::path::PathBuf;
use std::sync::Arc;

/// The trainer's flags, as validated by [`TrainerBuilder::build`](crate::TrainerBuilder::build): what the loops read.
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
    /// Whether `predict` keeps and returns the predictions (Lightning's `return_predictions`).
    pub return_predictions: bool,
    pub val_check_interval: ValCheckInterval,
    pub check_val_every_n_epoch: Option<usize>,
    pub num_sanity_val_steps: usize,
    pub fast_dev_run: Option<usize>,
    pub default_root_dir: PathBuf,
    pub seed: Option<u64>,
    pub device: Device,
    /// Data-parallel training: the devices of ranks 1.. (rank zero's is `device`); empty on one
    /// device. See [`crate::strategies::ddp`].
    pub replica_devices: Vec<Device>,
    /// Data-parallel training across processes (`mpirun`/`srun`): this process's rank and the
    /// collectives; `None` in a single process. See [`crate::strategies::process_group`].
    pub process_group: Option<std::sync::Arc<ProcessGroup>>,
    pub gradient_clip: Option<GradientClip>,
    /// Batches whose gradients are summed before each optimizer step, per epoch.
    pub accumulate_grad_batches: GradientAccumulationScheduler,
    /// Step values reach the loggers every this many training batches.
    pub log_every_n_steps: usize,
    /// Whether a TensorBoard logger is added when none is given.
    pub default_logger: bool,
    /// Whether a signal that stopped a run then exits the process.
    pub exit_on_signal: bool,
    /// How long a signalled run may take to reach a batch boundary before it is ended.
    pub signal_timeout: std::time::Duration,
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
    pub tuning: Option<Tuning>,
    /// The precision training runs in (Lightning's `precision`).
    pub precision: crate::Precision,
    /// Good steps after which `16-mixed` doubles its loss scale (torch's 2000; shorter in tests).
    pub grad_scaler_growth_interval: usize,
    /// What replaces `configure_optimizers`' optimizer or scheduler, if anything.
    pub optimizer_override: Option<OptimizerOverride>,
}

/// Replaces the optimizer, or the scheduler, `configure_optimizers` returns (LightningCli's
/// `--optimizer` and `--lr_scheduler`, as LightningCLI's `auto_configure_optimizers`): for a
/// module with one optimizer of every parameter. A module that returns several optimizers, or
/// an optimizer of some parameters (`for_params`), is refused with a message: which of them the
/// command line's would replace cannot be told.
#[derive(Clone)]
pub(crate) struct OptimizerOverride {
    /// Builds the optimizer that replaces the module's; `None` keeps the module's.
    pub optimizer: Option<Arc<dyn Fn() -> Result<crate::optim::OptimizerConfig, Error> + Send + Sync>>,
    /// Builds the scheduler that replaces the module's; `None` keeps the module's.
    pub scheduler: Option<Arc<dyn Fn() -> Result<crate::optim::LrSchedulerConfig, Error> + Send + Sync>>,
    /// What the user gave, for messages (`--optimizer Adam`).
    pub given: String,
}

impl std::fmt::Debug for OptimizerOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerOverride")
            .field("given", &self.given)
            .finish_non_exhaustive()
    }
}

impl OptimizerOverride {
    /// What `configure_optimizers` returned (`configs`), with the optimizer or scheduler
    /// replaced; an error naming `optimizer` where it cannot apply.
    pub(crate) fn apply(
        &self,
        configs: Vec<crate::optim::OptimizerConfig>,
    ) -> Result<Vec<crate::optim::OptimizerConfig>, Error> {
        let refuse = |why: String| {
            Error::config(
                "optimizer",
                format!(
                    "{given} cannot replace what `configure_optimizers` returns: {why}; choose the optimizers \
                     in `configure_optimizers` instead",
                    given = self.given
                ),
            )
        };
        let mut configs = configs.into_iter();
        let (Some(config), None) = (configs.next(), configs.next()) else {
            return Err(refuse(
                "it returns several optimizers, each with its own parameters".into(),
            ));
        };
        let config = match &self.optimizer {
            Some(build) => {
                if !config.updates_every_parameter() {
                    return Err(refuse(
                        "its optimizer updates some of the parameters (`for_params`) or has param groups, which \
                         the command line cannot name"
                            .into(),
                    ));
                }
                build()?
            }
            None => config,
        };
        Ok(vec![match &self.scheduler {
            Some(build) => config.with_scheduler(build()?),
            None => config,
        }])
    }
}

impl Config {
    /// Lightning's class of the strategy this trains with, as its profiler names it.
    pub(crate) fn strategy_name(&self) -> &'static str {
        if self.replica_devices.is_empty() && self.process_group.is_none() {
            "SingleDeviceStrategy"
        } else {
            "DDPStrategy"
        }
    }

    /// `overfit_batches(n)`: n batches of training and validation (Lightning's rules; the
    /// batches are replayed, see `Run::loader`).
    pub(crate) fn with_overfit_batches(mut self) -> Self {
        if !self.overfit_batches.is_off() {
            self.limit_train_batches = self.overfit_batches;
            self.limit_val_batches = self.overfit_batches;
        }
        self
    }

    /// `fast_dev_run(n)`: n batches of each loop, one epoch, no sanity check (Lightning's rules).
    pub(crate) fn with_fast_dev_run(mut self) -> Self {
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

/// What a trainer keeps from one run to the next, lent to each loop: the callbacks and loggers,
/// the metrics of the last run, the loops' progress, and the optimizers of the last fit.
pub(crate) struct Session<M: LightningModule> {
    pub callbacks: Callbacks<M>,
    pub loggers: Vec<Box<dyn Logger>>,
    /// Lightning's `trainer.callback_metrics` after the last run.
    pub callback_metrics: Metrics,
    /// Lightning's `trainer.logged_metrics` after the last run.
    pub logged_metrics: Metrics,
    /// Lightning's `trainer.progress_bar_metrics` after the last run.
    pub progress_bar_metrics: Metrics,
    pub progress: Progress,
    /// What was sent to the loggers, for `report.html`.
    pub report: Recorder,
    /// The optimizer of the last fit, with its state, for `Trainer::save_checkpoint`.
    pub optimizer: Option<Optimizer>,
    /// The optimizers after the first, when `configure_optimizers` returned several.
    pub more_optimizers: Vec<Optimizer>,
}

impl<M: LightningModule> Session<M> {
    /// A session that has run nothing yet.
    pub(crate) fn new(callbacks: Callbacks<M>, loggers: Vec<Box<dyn Logger>>) -> Self {
        Self {
            callbacks,
            loggers,
            callback_metrics: Metrics::default(),
            logged_metrics: Metrics::default(),
            progress_bar_metrics: Metrics::default(),
            progress: Progress::default(),
            report: Recorder::default(),
            optimizer: None,
            more_optimizers: Vec::new(),
        }
    }
}

/// What a tuner's search changes in the loops (see `Config::tuning`).
#[derive(Clone, Debug)]
pub(crate) struct Tuning {
    /// Replaces the module's learning-rate scheduler (the learning-rate finder's sweep).
    pub lr_sweep: Option<Arc<dyn SchedulerSwap>>,
    /// Whether the search makes a run directory (the lr finder does, for its plot).
    pub run_dir: bool,
}

/// A scheduler that replaces the one `configure_optimizers` gave (Lightning's
/// `_LRFinder._exchange_scheduler`).
pub(crate) trait SchedulerSwap: std::fmt::Debug + Send + Sync {
    fn exchange_scheduler(&self, optimizer: &mut Optimizer) -> Result<(), Error>;
}
