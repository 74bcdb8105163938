//! What a hook receives as its last parameter: the trainer's state, and, depending on the hook,
//! the right to log. The three context types encode Lightning's per-hook logging rules in the
//! type system: [`HookContext`] cannot log, [`EpochContext`] logs epoch values only,
//! [`StepContext`] logs per step and/or per epoch.

use crate::Error;
use crate::core::checkpoint_data::LoopProgress;
use crate::core::distributed::{Collectives, SyncDist};
use crate::core::logging::{EpochLogOptions, LogOptions, LogValue, Logged, LoggedKind, MetricStore, MetricValue};
use crate::core::output::Output;
use crate::core::state::{Loop, TrainerState};
use crate::hooks::diagnostics::IntoEpochLogOptions;
use crate::hooks::{Hook, LightningModule};
use crate::optim::precision::{CastFloats, Precision, PrecisionState};
use crate::optim::{LearningRate, LrSchedulerConfig, Optimizer, OptimizerHandle, ParamGroupConfig, Scheduler};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// What runs inside every dispatched hook after each callback and after the module: the
/// trainer writes the checkpoints the hook asked for there, so a checkpoint requested by a
/// callback is taken before the next callback or the module runs, as Lightning's synchronous
/// `save_checkpoint` is. `()` leaves requests for the next hook boundary.
pub(crate) trait AfterHook<M: LightningModule> {
    fn after_hook(
        &mut self,
        module: &mut M,
        callbacks: &mut [Box<dyn crate::Callback<M>>],
        core: &mut Core,
    ) -> Result<(), Error>;
}

impl<M: LightningModule> AfterHook<M> for () {
    #[inline]
    fn after_hook(&mut self, _: &mut M, _: &mut [Box<dyn crate::Callback<M>>], _: &mut Core) -> Result<(), Error> {
        Ok(())
    }
}

/// The trainer's side of every context: state, logged metrics, requests made by hooks.
pub struct Core {
    pub(crate) state: TrainerState,
    pub(crate) metrics: MetricStore,
    /// Items in the current batch, used to weight epoch means.
    pub(crate) batch_size: usize,
    /// Checkpoints callbacks asked for; written by the trainer once the hook returns.
    pub(crate) checkpoint_requests: Vec<PathBuf>,
    /// Checkpoint files callbacks no longer keep; removed once the requested ones are written.
    pub(crate) checkpoint_removals: Vec<PathBuf>,
    /// Checkpoints asked for with the weights only (Lightning's `save_weights_only`): no
    /// optimizer or callback states.
    pub(crate) weights_only_requests: Vec<PathBuf>,
    /// `(target, link)`: links to make once the requested checkpoints are written
    /// (`save_last="link"`).
    pub(crate) checkpoint_links: Vec<(PathBuf, PathBuf)>,
    /// Checkpoints this run asked for and has not removed (some may still be being written).
    pub(crate) checkpoints_written: BTreeSet<PathBuf>,
    /// Checkpoints asked for since the loggers last heard of them (`after_save_checkpoint`).
    pub(crate) checkpoints_to_announce: Vec<PathBuf>,
    /// Directories this run cleaned of stale temporary files.
    pub(crate) cleaned_dirs: BTreeSet<PathBuf>,
    /// The `on_save_checkpoint` hooks are running (still set after one panicked or failed).
    pub(crate) saving_checkpoint: bool,
    /// The run failed inside `on_save_checkpoint`: the checkpoints written after the failure
    /// (`OnExceptionCheckpoint`'s) are saved without those hooks, instead of calling the hook
    /// that failed again.
    pub(crate) skip_on_save_checkpoint: bool,
    /// The first misuse detected inside a hook; the trainer returns it once the hook returns.
    pub(crate) deferred_error: Option<Error>,
    /// Whether the loggers receive the step values of the current training batch (Lightning's
    /// `should_update_logs`).
    pub(crate) logs_this_step: bool,
    /// Whether the run has a logger to send values to.
    pub(crate) has_logger: bool,
    /// The learning rate of every optimizer, as the next step uses it.
    pub(crate) learning_rates: Vec<LearningRate>,
    /// Values callbacks sent straight to the loggers; the trainer sends them once the hook
    /// returns, at the current step.
    pub(crate) logger_records: Vec<BTreeMap<String, f64>>,
    /// Where printed lines go: stdout, or above the progress bars while they are drawn.
    pub(crate) output: Output,
    /// `detect_anomaly`: a loss or gradient that is not finite ends the run.
    pub(crate) detect_anomaly: bool,
    /// Whether the warning about a loss that is not finite was given (once per run).
    pub(crate) warned_non_finite: bool,
    /// Where the first loss that was not finite was seen (a warning at the end of `fit`).
    pub(crate) first_non_finite_loss: Option<String>,
    /// Where the fit loop is, for the checkpoints it saves (integers the loop updates).
    pub(crate) loop_progress: LoopProgress,
    /// The `precision` flag and, under `16-mixed`, the loss scaler.
    pub(crate) precision: PrecisionState,
    /// With several devices: the other ranks' values logged with `sync_dist`, waiting for rank
    /// zero's.
    pub(crate) sync_dist: SyncDist,
    /// Several processes (`mpirun`/`srun`): the collectives; `None` in one process.
    pub(crate) process_group: Option<std::sync::Arc<dyn Collectives>>,
    /// Changes of the optimizers hooks asked for; made by the trainer once the hook returns.
    pub(crate) optimizer_requests: Vec<OptimizerRequest>,
    /// What callbacks changed of the fit loop (`StochasticWeightAveraging`'s BatchNorm epoch).
    pub(crate) fit_control: FitControl,
    /// Several processes, inside a training batch: the checkpoints taken before the batch's end
    /// take what the training epoch accumulated (metric objects and `cx.log` values) from every
    /// rank, gathered at the batch's end (`Run::gather_checkpointed_metrics`), where every rank
    /// takes part.
    pub(crate) gather_metrics_at_batch_end: bool,
    /// The checkpoints waiting for those (their writer job waits on the receiver; a sender
    /// dropped unsent makes it save this process's share only).
    pub(crate) metric_gathers: Vec<std::sync::mpsc::Sender<std::sync::Arc<GatheredStates>>>,
}

/// What every rank accumulated of the training epoch in progress, gathered at the end of a
/// batch for the checkpoints taken in it (see [`Core::metric_gathers`]).
#[derive(Debug)]
pub(crate) struct GatheredStates {
    /// The metric objects' states (`crate::metrics::gathered_across`).
    pub(crate) metrics: BTreeMap<String, crate::JsonValue>,
    /// Each rank's `cx.log` accumulators, in rank order.
    pub(crate) epoch_logs: Vec<Vec<crate::core::logging::SavedEpochLog>>,
}

/// A change of an optimizer a hook asked for (see [`Core::optimizer_requests`]).
pub(crate) enum OptimizerRequest {
    AddGroup {
        optimizer: usize,
        group: ParamGroupConfig,
    },
    SetGroupLr {
        optimizer: usize,
        group: usize,
        lr: f64,
    },
    ReplaceScheduler {
        optimizer: usize,
        scheduler: LrSchedulerConfig,
    },
}

impl OptimizerRequest {
    /// The optimizer it changes.
    pub(crate) fn optimizer(&self) -> usize {
        match self {
            Self::AddGroup { optimizer, .. }
            | Self::SetGroupLr { optimizer, .. }
            | Self::ReplaceScheduler { optimizer, .. } => *optimizer,
        }
    }

    /// Makes the change on `optimizer`, the one it names.
    pub(crate) fn apply(self, optimizer: &mut Optimizer) -> Result<(), Error> {
        match self {
            Self::AddGroup { group, .. } => optimizer.add_param_group(group).map(drop),
            Self::SetGroupLr { group, lr, .. } => optimizer.set_group_lr(group, lr),
            Self::ReplaceScheduler { scheduler, .. } => optimizer.replace_scheduler(scheduler),
        }
    }
}

/// What callbacks changed of the fit loop, for one fit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FitControl {
    /// Epochs added to `max_epochs` (Lightning's `fit_loop.max_epochs += 1`).
    pub extra_epochs: usize,
    /// The current epoch runs `training_step` without backward and optimizer steps (SWA's
    /// BatchNorm statistics pass; Lightning's `_skip_backward` with accumulation past the epoch).
    pub forward_only: bool,
}

impl Core {
    pub(crate) fn new(state: TrainerState) -> Self {
        Self {
            state,
            metrics: MetricStore::default(),
            batch_size: 1,
            checkpoint_requests: Vec::new(),
            checkpoint_removals: Vec::new(),
            weights_only_requests: Vec::new(),
            checkpoint_links: Vec::new(),
            checkpoints_written: BTreeSet::new(),
            checkpoints_to_announce: Vec::new(),
            cleaned_dirs: BTreeSet::new(),
            saving_checkpoint: false,
            skip_on_save_checkpoint: false,
            deferred_error: None,
            logs_this_step: false,
            has_logger: false,
            learning_rates: Vec::new(),
            logger_records: Vec::new(),
            output: Output::default(),
            detect_anomaly: false,
            warned_non_finite: false,
            first_non_finite_loss: None,
            loop_progress: Default::default(),
            precision: Default::default(),
            sync_dist: Default::default(),
            process_group: None,
            optimizer_requests: Vec::new(),
            fit_control: FitControl::default(),
            gather_metrics_at_batch_end: false,
            metric_gathers: Vec::new(),
        }
    }

    pub(crate) fn defer_error(&mut self, error: Error) {
        self.deferred_error.get_or_insert(error);
    }

    /// Logs into the metric store; a misuse ends the run once the hook returns.
    fn log(&mut self, hook: Hook, name: &str, logged: Logged, options: &LogOptions, batch_size: usize) {
        let value = match logged.0 {
            LoggedKind::Value(value) => value,
            LoggedKind::Object(object) => return self.log_object(hook, name, object, options),
        };
        // Data-parallel: a replica's value counts only when reduced across ranks, with rank
        // zero's (see `crate::strategies::ddp`).
        let process_rank = self.process_group.as_ref().map_or(0, |group| group.rank());
        if self.state.global_rank != process_rank {
            if options.sync_dist {
                self.sync_dist.keep(hook, name, value);
            }
            return;
        }
        let loop_kind = Loop::of(self.state.stage);
        let value = if options.sync_dist {
            let value = self.sync_dist.reduce(hook, name, value, options.reduce);
            // Several processes: training values are reduced across them too (read from the
            // device, as Lightning's `sync_dist` all-reduces). Every rank evaluates the whole
            // dataloader, so evaluation values are already everyone's (a sum is not doubled).
            match &self.process_group {
                Some(group) if loop_kind == Loop::Train => match group.reduce_scalar(value.to_f64(), options.reduce) {
                    Ok(reduced) => MetricValue::Scalar(reduced),
                    Err(e) => return self.defer_error(e),
                },
                _ => value,
            }
        } else {
            value
        };
        if let Err(e) = self.metrics.log(hook, loop_kind, name, value, options, batch_size) {
            self.defer_error(e);
        }
    }

    /// Logs a metric object (`crate::metrics`). Its state is shared by every replica's copy of
    /// the module, so a replica's call adds nothing; `sync_dist` changes nothing either: the
    /// states merge by their own reductions (torchmetrics syncs itself in Lightning too).
    fn log_object(
        &mut self,
        hook: Hook,
        name: &str,
        object: Box<dyn crate::core::logging::LoggedMetric>,
        options: &LogOptions,
    ) {
        let process_rank = self.process_group.as_ref().map_or(0, |group| group.rank());
        if self.state.global_rank != process_rank {
            return;
        }
        let loop_kind = Loop::of(self.state.stage);
        if let Err(e) = self.metrics.log_object(hook, loop_kind, name, object, options) {
            self.defer_error(e);
        }
    }

    /// Whether a hook asked for checkpoints to be written or removed.
    #[inline]
    pub(crate) fn has_checkpoint_requests(&self) -> bool {
        !self.checkpoint_requests.is_empty()
            || !self.checkpoint_removals.is_empty()
            || !self.weights_only_requests.is_empty()
            || !self.checkpoint_links.is_empty()
    }

    /// Whether a hook of this run already failed (and nothing more should run).
    pub(crate) fn failed(&self) -> bool {
        self.deferred_error.is_some()
    }

    pub(crate) fn take_error(&mut self) -> Result<(), Error> {
        // A metric object's epoch value is computed between hooks: its error waits here.
        let error = self.deferred_error.take().or_else(|| self.metrics.take_error());
        error.map_or(Ok(()), Err)
    }
}

macro_rules! common_context_methods {
    ($ty:ident) => {
        impl<'a> $ty<'a> {
            /// The hook being run.
            pub fn hook(&self) -> Hook {
                self.hook
            }

            /// Asks the trainer to stop fitting (it honours `min_epochs` and `min_steps` first).
            pub fn stop(&mut self) {
                self.core.state.should_stop = true;
            }

            /// The metrics logged so far, reduced: step values as logged, epoch values as
            /// reduced so far (reading them synchronizes with the device).
            pub fn callback_metrics(&self) -> BTreeMap<String, f64> {
                self.core.metrics.callback_metrics()
            }

            /// What was logged with `prog_bar(true)`, under the names the progress bar shows
            /// (`name_step`/`name_epoch` when logged both ways; Lightning's
            /// `trainer.progress_bar_metrics`). Reading them synchronizes with the device.
            pub fn progress_bar_metrics(&self) -> BTreeMap<String, f64> {
                self.core.metrics.progress_bar_metrics()
            }

            /// Prints a line to stdout without breaking the progress bars (Lightning's
            /// `self.print`): above them while they are drawn, else as a plain line.
            pub fn print(&self, line: impl AsRef<str>) {
                self.core.output.println(line.as_ref());
            }

            /// The run directory, when the trainer writes one.
            pub fn log_dir(&self) -> Option<&Path> {
                self.core.state.log_dir.as_deref()
            }

            /// Asks the trainer to write a checkpoint to `path` once this hook returns (from
            /// any hook of any entry point; outside `fit` it holds no optimizer state).
            pub fn save_checkpoint(&mut self, path: impl Into<PathBuf>) {
                let path = path.into();
                self.core.checkpoints_written.insert(path.clone());
                self.core.checkpoints_to_announce.push(path.clone());
                self.core.checkpoint_requests.push(path);
            }

            /// Asks the trainer to write a checkpoint with the module's weights, hyperparameters
            /// and counters only, without optimizer or callback states (Lightning's
            /// `save_checkpoint(path, weights_only=True)`), once this hook returns.
            pub fn save_checkpoint_weights_only(&mut self, path: impl Into<PathBuf>) {
                let path = path.into();
                self.core.checkpoints_written.insert(path.clone());
                self.core.checkpoints_to_announce.push(path.clone());
                self.core.weights_only_requests.push(path);
            }

            /// Makes `link` a link to the checkpoint `target` once the requested checkpoints
            /// are written (a copy where links cannot be made).
            #[allow(dead_code)] // Not every context's callbacks link.
            pub(crate) fn link_checkpoint(&mut self, target: PathBuf, link: PathBuf) {
                self.core.checkpoints_written.insert(link.clone());
                self.core.checkpoints_to_announce.push(link.clone());
                self.core.checkpoint_links.push((target, link));
            }

            /// Asks the trainer to delete the checkpoint at `path` once the requested ones
            /// are written.
            pub fn remove_checkpoint(&mut self, path: impl Into<PathBuf>) {
                let path = path.into();
                self.core.checkpoints_written.remove(&path);
                self.core.checkpoint_removals.push(path);
            }

            /// Whether a file exists at `path`, or this run asked for a checkpoint there that
            /// may still be being written: a name already taken.
            pub fn checkpoint_exists(&self, path: &Path) -> bool {
                self.core.checkpoints_written.contains(path) || path.exists()
            }

            /// Ends the run with `error` once this hook returns. Hooks of a module can also
            /// return `Result`; callbacks report their errors here.
            pub fn fail(&mut self, error: Error) {
                self.core.defer_error(error);
            }

            /// The learning rate of every optimizer (Lightning's `trainer.optimizers` and
            /// `lr_scheduler_configs`, as `LearningRateMonitor` reads them), as the next
            /// optimizer step uses it.
            pub fn learning_rates(&self) -> &[LearningRate] {
                &self.core.learning_rates
            }

            /// Adds a param group to optimizer `optimizer` (its position in what
            /// `configure_optimizers` returned) once this hook returns: torch's
            /// `optimizer.add_param_group`, what fine-tuning callbacks call when they unfreeze a
            /// sub-module. Parameters the optimizer already updates are left out with a warning,
            /// as Lightning's `BaseFinetuning` does. Only during `fit`; a mistake ends the run.
            pub fn add_param_group(&mut self, optimizer: usize, group: ParamGroupConfig) {
                self.core
                    .optimizer_requests
                    .push(crate::hooks::context::OptimizerRequest::AddGroup { optimizer, group });
            }

            /// Sets the learning rate of param group `group` of optimizer `optimizer` once this
            /// hook returns (torch's `optimizer.param_groups[group]["lr"] = lr`), for a group no
            /// scheduler drives (one added during the fit). Only during `fit`.
            pub fn set_param_group_lr(&mut self, optimizer: usize, group: usize, lr: f64) {
                self.core
                    .optimizer_requests
                    .push(crate::hooks::context::OptimizerRequest::SetGroupLr { optimizer, group, lr });
            }

            /// Replaces the scheduler of optimizer `optimizer` by `scheduler`, built from every
            /// group's current rate, once this hook returns (what `StochasticWeightAveraging`
            /// does with `SWALR`). Only during `fit`.
            pub fn replace_lr_scheduler(&mut self, optimizer: usize, scheduler: LrSchedulerConfig) {
                self.core
                    .optimizer_requests
                    .push(crate::hooks::context::OptimizerRequest::ReplaceScheduler { optimizer, scheduler });
            }

            /// Adds `epochs` to this fit's `max_epochs` (SWA's BatchNorm epoch).
            #[allow(dead_code)] // Not every context's callbacks extend the fit.
            pub(crate) fn extend_fit(&mut self, epochs: usize) {
                self.core.fit_control.extra_epochs += epochs;
            }

            /// Whether the current epoch runs `training_step` only (no backward, no optimizer
            /// step): SWA's BatchNorm statistics pass.
            #[allow(dead_code)] // Not every context's callbacks set it.
            pub(crate) fn set_forward_only(&mut self, forward_only: bool) {
                self.core.fit_control.forward_only = forward_only;
            }

            /// Whether the run has a logger (`logger(false)` and `fast_dev_run` have none).
            pub fn has_logger(&self) -> bool {
                self.core.has_logger
            }

            /// Sends `metrics` to every logger as they are, at the current step, once this
            /// hook returns, and puts them in `callback_metrics` (what Lightning's callbacks
            /// do with `logger.log_metrics(metrics, step=...)`). `cx.log` is what a module
            /// usually wants instead: it reduces and names values by Lightning's rules.
            pub fn send_to_loggers(&mut self, metrics: BTreeMap<String, f64>) {
                if metrics.is_empty() || !self.core.has_logger {
                    return;
                }
                self.core.metrics.record_sent(&metrics);
                self.core.logger_records.push(metrics);
            }
        }

        impl Deref for $ty<'_> {
            type Target = TrainerState;
            fn deref(&self) -> &TrainerState {
                &self.core.state
            }
        }
    };
}

/// Context of hooks that may not log (`setup`, `on_fit_start`, `on_validation_end`, ...):
/// trainer state only. Derefs to [`TrainerState`].
pub struct HookContext<'a> {
    core: &'a mut Core,
    hook: Hook,
}

impl<'a> HookContext<'a> {
    pub(crate) fn new(core: &'a mut Core, hook: Hook) -> Self {
        Self { core, hook }
    }

    /// Sends the lines printed in this run (by [`print`](Self::print)) to `output`.
    pub(crate) fn set_output(&mut self, output: Output) {
        self.core.output = output;
    }
}

/// Context of epoch-level hooks (`on_train_epoch_end`, `on_validation_epoch_end`, ...): logs
/// values reduced once per epoch. Derefs to [`TrainerState`].
pub struct EpochContext<'a> {
    core: &'a mut Core,
    hook: Hook,
}

impl<'a> EpochContext<'a> {
    pub(crate) fn new(core: &'a mut Core, hook: Hook) -> Self {
        Self { core, hook }
    }

    /// Logs an epoch-level value (Lightning's `self.log(name, value)` in an epoch hook).
    pub fn log(&mut self, name: &str, value: impl LogValue) {
        self.log_with(name, value, EpochLogOptions::default());
    }

    /// Logs with options (reduction, progress bar, logger): [`EpochLogOptions`], which has no
    /// `on_step` (passing step hooks' `LogOptions` here is a compile error that says so).
    pub fn log_with(&mut self, name: &str, value: impl LogValue, options: impl IntoEpochLogOptions) {
        // One value per epoch: its weight in the epoch mean is 1.
        let options = options.into_epoch_log_options().into_log_options();
        self.core.log(self.hook, name, value.into_logged(), &options, 1);
    }

    /// Logs every `(name, value)` pair.
    pub fn log_dict<K: AsRef<str>, V: LogValue>(&mut self, values: impl IntoIterator<Item = (K, V)>) {
        for (name, value) in values {
            self.log(name.as_ref(), value);
        }
    }

    /// Logs every `(name, value)` pair with the same options (Lightning's
    /// `self.log_dict(values, prog_bar=True, ...)` in an epoch hook).
    pub fn log_dict_with<K: AsRef<str>, V: LogValue>(
        &mut self,
        values: impl IntoIterator<Item = (K, V)>,
        options: impl IntoEpochLogOptions,
    ) {
        let options = options.into_epoch_log_options();
        for (name, value) in values {
            self.log_with(name.as_ref(), value, options.clone());
        }
    }
}

/// The optimizer and callbacks a manual `training_step` drives, type-erased so that one
/// [`StepContext`] type serves every module.
pub(crate) struct ManualParts<'a> {
    /// The first optimizer.
    pub(crate) optimizer: &'a mut Optimizer,
    /// The optimizers after the first (several optimizers).
    pub(crate) more: &'a mut [Optimizer],
    pub(crate) callbacks: &'a mut dyn Any,
    /// The optimizer `toggle_optimizer` chose: `manual_backward` keeps only its gradients.
    pub(crate) toggled: Option<usize>,
}

impl ManualParts<'_> {
    /// The optimizer at `index` in what `configure_optimizers` returned.
    pub(crate) fn optimizer_at(&mut self, index: usize) -> Option<&mut Optimizer> {
        optimizer_in(self.optimizer, self.more, index)
    }

    pub(crate) fn count(&self) -> usize {
        1 + self.more.len()
    }
}

/// Context of step-level hooks (`training_step`, `validation_step`, batch start/end, the
/// optimization hooks): logs per step and/or per epoch. Derefs to [`TrainerState`].
pub struct StepContext<'a> {
    pub(crate) core: &'a mut Core,
    hook: Hook,
    pub(crate) manual: Option<ManualParts<'a>>,
    /// The optimizer, readable in an automatic `training_step`.
    optimizer: Option<&'a Optimizer>,
}

impl<'a> StepContext<'a> {
    pub(crate) fn new(core: &'a mut Core, hook: Hook) -> Self {
        Self {
            core,
            hook,
            manual: None,
            optimizer: None,
        }
    }

    /// Lets the hook read `optimizer` (automatic optimization's `training_step`).
    pub(crate) fn reading(mut self, optimizer: &'a Optimizer) -> Self {
        self.optimizer = Some(optimizer);
        self
    }

    pub(crate) fn manual(core: &'a mut Core, hook: Hook, manual: ManualParts<'a>) -> Self {
        Self {
            core,
            hook,
            manual: Some(manual),
            optimizer: None,
        }
    }

    /// Logs a value with this hook's defaults: per step in training hooks, per epoch in
    /// validation and test hooks (Lightning's defaults). Tensors are not read until needed.
    pub fn log(&mut self, name: &str, value: impl LogValue) {
        self.log_with(name, value, LogOptions::default());
    }

    /// Logs with options: `on_step`, `on_epoch`, reduction, batch size, progress bar.
    pub fn log_with(&mut self, name: &str, value: impl LogValue, options: LogOptions) {
        let batch_size = options.batch_size.unwrap_or(self.core.batch_size);
        self.core
            .log(self.hook, name, value.into_logged(), &options, batch_size);
    }

    /// Logs every `(name, value)` pair with this hook's defaults.
    pub fn log_dict<K: AsRef<str>, V: LogValue>(&mut self, values: impl IntoIterator<Item = (K, V)>) {
        for (name, value) in values {
            self.log(name.as_ref(), value);
        }
    }

    /// Logs every `(name, value)` pair with the same options (Lightning's
    /// `self.log_dict(values, on_step=False, on_epoch=True, prog_bar=True)`).
    pub fn log_dict_with<K: AsRef<str>, V: LogValue>(
        &mut self,
        values: impl IntoIterator<Item = (K, V)>,
        options: LogOptions,
    ) {
        for (name, value) in values {
            self.log_with(name.as_ref(), value, options.clone());
        }
    }

    /// Whether the step values logged in this training batch reach the loggers (every
    /// `log_every_n_steps` optimizer steps, and when a stop was asked for: Lightning's
    /// `should_update_logs`). Check it before computing a value that is only worth logging.
    pub fn logs_this_step(&self) -> bool {
        self.core.logs_this_step
    }

    /// Items in the current batch (what epoch means are weighted by).
    pub fn batch_size(&self) -> usize {
        self.core.batch_size
    }

    /// The optimizer (its learning rate, steps and scheduler), inside `training_step` under
    /// automatic and manual optimization (Lightning's `self.optimizers()`); `None` elsewhere
    /// (the optimization hooks get it as an argument). With several optimizers, the first:
    /// [`optimizer_at`](Self::optimizer_at) reads the others.
    pub fn optimizer(&self) -> Option<&Optimizer> {
        match &self.manual {
            Some(manual) => Some(&*manual.optimizer),
            None => self.optimizer,
        }
    }

    /// Manual optimization: the (first) optimizer, to change, inside `training_step`; `None`
    /// elsewhere.
    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.manual.as_mut().map(|m| &mut *m.optimizer)
    }

    /// Manual optimization: the scheduler `configure_optimizers` set (of the first optimizer),
    /// to step by hand (Lightning's `self.lr_schedulers()`; the trainer steps no scheduler under
    /// manual optimization). A plateau scheduler steps with `step_on(value)`.
    pub fn lr_scheduler(&mut self) -> Option<&mut Scheduler> {
        self.optimizer_mut().and_then(Optimizer::scheduler_mut)
    }

    /// Manual optimization: the optimizer a handle of `self.optimizers()` names, to read or
    /// change; `None` outside a manual `training_step`, or for a handle of another module.
    pub fn optimizer_at(&mut self, handle: OptimizerHandle) -> Option<&mut Optimizer> {
        self.manual.as_mut().and_then(|m| m.optimizer_at(handle.index))
    }

    /// Manual optimization: the scheduler of the optimizer `handle` names, to step by hand
    /// (Lightning's `sch_g, sch_d = self.lr_schedulers()`).
    pub fn lr_scheduler_of(&mut self, handle: OptimizerHandle) -> Option<&mut Scheduler> {
        self.optimizer_at(handle).and_then(Optimizer::scheduler_mut)
    }

    /// Manual optimization: every optimizer's scheduler, in the order of `configure_optimizers`
    /// (optimizers without one are skipped), to step by hand (Lightning's `self.lr_schedulers()`).
    pub fn lr_schedulers(&mut self) -> impl Iterator<Item = &mut Scheduler> {
        self.manual
            .as_mut()
            .into_iter()
            .flat_map(|m| std::iter::once(&mut *m.optimizer).chain(m.more.iter_mut()))
            .filter_map(Optimizer::scheduler_mut)
    }

    /// Manual optimization: from now until [`untoggle_optimizer`](Self::untoggle_optimizer) or
    /// the end of `training_step`, `manual_backward` returns only the gradients of the
    /// parameters `handle`'s optimizer updates (Lightning's `toggle_optimizer`). burn's autodiff
    /// still computes the others (the loss flows through them), but they are dropped before the
    /// backward hooks see them and cannot reach another optimizer's step.
    pub fn toggle_optimizer(&mut self, handle: OptimizerHandle) {
        match self.manual.as_mut() {
            Some(manual) if handle.index < manual.count() => manual.toggled = Some(handle.index),
            Some(manual) => {
                let count = manual.count();
                self.core
                    .defer_error(no_such_optimizer("toggle_optimizer", handle, count));
            }
            None => self.core.defer_error(Error::Hook {
                hook: "training_step",
                message: "`toggle_optimizer` can only be called inside a manual `training_step`".into(),
            }),
        }
    }

    /// Manual optimization: `manual_backward` returns the gradients of every parameter again
    /// (Lightning's `untoggle_optimizer`).
    pub fn untoggle_optimizer(&mut self, handle: OptimizerHandle) {
        if let Some(manual) = self.manual.as_mut()
            && manual.toggled == Some(handle.index)
        {
            manual.toggled = None;
        }
    }
}

/// The optimizer at `index`, of the first one and those after it (borrows only these fields).
pub(crate) fn optimizer_in<'a>(
    first: &'a mut Optimizer,
    more: &'a mut [Optimizer],
    index: usize,
) -> Option<&'a mut Optimizer> {
    match index {
        0 => Some(first),
        i => more.get_mut(i - 1),
    }
}

/// A handle that names no optimizer of this run.
pub(crate) fn no_such_optimizer(what: &str, handle: OptimizerHandle, count: usize) -> Error {
    Error::Hook {
        hook: "training_step",
        message: format!(
            "`{what}` got the handle of optimizer {}, but `configure_optimizers` returned {count}; use the handles of `self.optimizers()`",
            handle.index
        ),
    }
}

common_context_methods!(HookContext);
common_context_methods!(EpochContext);
common_context_methods!(StepContext);

/// Precision, as a step reads it (see [`crate::optim::precision`]).
impl StepContext<'_> {
    /// The run's precision (the `precision` flag).
    pub fn precision(&self) -> Precision {
        self.core.precision.precision
    }

    /// Casts the float tensors of `batch` to the dtype the module computes in, in this hook:
    /// the precision's dtype under `*-true`; the half dtype in `training_step` under `*-mixed`
    /// (`f32` elsewhere, where the module is the `f32` one); nothing under `32-true`. Lightning's
    /// `convert_input`, which the trainer cannot do for a batch type it does not know.
    pub fn cast_input<T: CastFloats>(&self, batch: T) -> T {
        match self.core.precision.compute {
            None => batch,
            Some(dtype) => batch.cast_floats(dtype),
        }
    }

    /// The loss scale of `16-mixed` (torch's `GradScaler.get_scale()`); `None` under the other
    /// precisions.
    pub fn loss_scale(&self) -> Option<f64> {
        self.core.precision.loss_scale()
    }
}
