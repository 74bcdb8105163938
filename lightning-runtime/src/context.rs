//! What a hook receives as its last parameter: the trainer's state, and, depending on the hook,
//! the right to log. The three context types encode Lightning's per-hook logging rules in the
//! type system: [`HookContext`] cannot log, [`EpochContext`] logs epoch values only,
//! [`StepContext`] logs per step and/or per epoch.

use crate::hooks::{Callbacks, Hook, LightningModule, ManualOptimization, dispatch};
use crate::logging::{EpochLogOptions, LogOptions, LogValue, LoopKind, MetricStore, MetricValue};
use crate::optim::{Gradients, Optimizer};
use crate::{Device, Error, Tensor};
use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Which entry point is running (Lightning's `trainer.state.fn`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrainerFn {
    Fitting,
    Validating,
    Testing,
    Predicting,
}

/// Which loop is running (Lightning's `trainer.state.stage`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunningStage {
    Training,
    SanityChecking,
    Validating,
    Testing,
    Predicting,
}

/// Lightning's `trainer.state.status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrainerStatus {
    Initializing,
    Running,
    Finished,
    Interrupted,
}

/// The trainer's state, readable from every hook through its context (`cx.current_epoch`, ...).
#[derive(Clone, Debug)]
pub struct TrainerState {
    pub status: TrainerStatus,
    /// The running entry point.
    pub function: TrainerFn,
    /// The running loop.
    pub stage: RunningStage,
    /// Epochs completed so far in this fit (0 during the first epoch).
    pub current_epoch: usize,
    /// Optimizer steps taken so far.
    pub global_step: usize,
    /// Index of the batch in its loop.
    pub batch_idx: usize,
    /// Number of batches the current training epoch runs, once known.
    pub num_training_batches: Option<usize>,
    /// `max_epochs` as resolved by the trainer (`None`: bounded by `max_steps` only).
    pub max_epochs: Option<usize>,
    /// `max_steps` (`None`: no limit).
    pub max_steps: Option<usize>,
    /// Whether something asked the trainer to stop (early stopping, `cx.stop()`).
    pub should_stop: bool,
    /// The device the module runs on.
    pub device: Device,
    /// The run directory (`<default_root_dir>/lightning_logs/version_N`), when one is written.
    pub log_dir: Option<PathBuf>,
}

impl TrainerState {
    /// True during the sanity-check validation before training.
    pub fn sanity_checking(&self) -> bool {
        self.stage == RunningStage::SanityChecking
    }

    /// True while training (not validating inside fit).
    pub fn training(&self) -> bool {
        self.stage == RunningStage::Training
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
    /// The first misuse detected inside a hook; the trainer returns it once the hook returns.
    pub(crate) deferred_error: Option<Error>,
}

impl Core {
    pub(crate) fn new(state: TrainerState) -> Self {
        Self {
            state,
            metrics: MetricStore::default(),
            batch_size: 1,
            checkpoint_requests: Vec::new(),
            checkpoint_removals: Vec::new(),
            deferred_error: None,
        }
    }

    pub(crate) fn defer_error(&mut self, error: Error) {
        self.deferred_error.get_or_insert(error);
    }

    /// Logs into the metric store; a misuse ends the run once the hook returns.
    fn log(&mut self, hook: Hook, name: &str, value: MetricValue, options: &LogOptions, batch_size: usize) {
        let loop_kind = LoopKind::of(self.state.stage);
        if let Err(e) = self.metrics.log(hook, loop_kind, name, value, options, batch_size) {
            self.defer_error(e);
        }
    }

    pub(crate) fn take_error(&mut self) -> Result<(), Error> {
        self.deferred_error.take().map_or(Ok(()), Err)
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

            /// The run directory, when the trainer writes one.
            pub fn log_dir(&self) -> Option<&Path> {
                self.core.state.log_dir.as_deref()
            }

            /// Asks the trainer to write a checkpoint to `path` once this hook returns.
            pub fn save_checkpoint(&mut self, path: impl Into<PathBuf>) {
                self.core.checkpoint_requests.push(path.into());
            }

            /// Asks the trainer to delete the checkpoint at `path` once the requested ones
            /// are written.
            pub fn remove_checkpoint(&mut self, path: impl Into<PathBuf>) {
                self.core.checkpoint_removals.push(path.into());
            }

            /// Ends the run with `error` once this hook returns (hooks cannot return errors).
            pub fn fail(&mut self, error: Error) {
                self.core.defer_error(error);
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

    /// Logs with options (reduction, progress bar).
    pub fn log_with(&mut self, name: &str, value: impl LogValue, options: EpochLogOptions) {
        // One value per epoch: its weight in the epoch mean is 1.
        self.core
            .log(self.hook, name, value.into_metric(), &options.into_log_options(), 1);
    }

    /// Logs every `(name, value)` pair.
    pub fn log_dict<K: AsRef<str>, V: LogValue>(&mut self, values: impl IntoIterator<Item = (K, V)>) {
        for (name, value) in values {
            self.log(name.as_ref(), value);
        }
    }
}

/// The optimizer and callbacks a manual `training_step` drives, type-erased so that one
/// [`StepContext`] type serves every module.
pub(crate) struct ManualParts<'a> {
    pub(crate) optimizer: &'a mut Optimizer,
    pub(crate) callbacks: &'a mut dyn Any,
}

/// Context of step-level hooks (`training_step`, `validation_step`, batch start/end, the
/// optimization hooks): logs per step and/or per epoch. Derefs to [`TrainerState`].
pub struct StepContext<'a> {
    core: &'a mut Core,
    hook: Hook,
    manual: Option<ManualParts<'a>>,
}

impl<'a> StepContext<'a> {
    pub(crate) fn new(core: &'a mut Core, hook: Hook) -> Self {
        Self {
            core,
            hook,
            manual: None,
        }
    }

    pub(crate) fn manual(core: &'a mut Core, hook: Hook, manual: ManualParts<'a>) -> Self {
        Self {
            core,
            hook,
            manual: Some(manual),
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
            .log(self.hook, name, value.into_metric(), &options, batch_size);
    }

    /// Logs every `(name, value)` pair with this hook's defaults.
    pub fn log_dict<K: AsRef<str>, V: LogValue>(&mut self, values: impl IntoIterator<Item = (K, V)>) {
        for (name, value) in values {
            self.log(name.as_ref(), value);
        }
    }

    /// Items in the current batch (what epoch means are weighted by).
    pub fn batch_size(&self) -> usize {
        self.core.batch_size
    }

    /// Manual optimization: back-propagates `loss` with the backward hooks
    /// (`on_before_backward`, `backward`, `on_after_backward`) and returns the gradients.
    pub fn manual_backward<M: ManualOptimization>(&mut self, module: &mut M, loss: Tensor<1>) -> Gradients {
        let Some(manual) = self.manual.as_mut() else {
            self.core.defer_error(outside_training_step("manual_backward"));
            return Gradients::empty();
        };
        let callbacks = callbacks_of::<M>(manual.callbacks);
        dispatch::on_before_backward(module, callbacks, self.core, &loss);
        let grads = dispatch::backward(module, self.core, loss);
        dispatch::on_after_backward(module, callbacks, self.core, &grads);
        grads
    }

    /// Manual optimization: runs `on_before_optimizer_step` and updates the module's
    /// parameters with `grads`; counts one step of `global_step`.
    pub fn optimizer_step<M: ManualOptimization>(&mut self, module: &mut M, grads: Gradients) {
        let Some(manual) = self.manual.as_mut() else {
            self.core.defer_error(outside_training_step("optimizer_step"));
            return;
        };
        let callbacks = callbacks_of::<M>(manual.callbacks);
        dispatch::on_before_optimizer_step(module, callbacks, self.core, manual.optimizer, &grads);
        manual.optimizer.apply(module, grads);
        self.core.state.global_step += 1;
    }

    /// Manual optimization: the optimizer (its learning rate and scheduler), inside
    /// `training_step`; `None` elsewhere.
    pub fn optimizer(&mut self) -> Option<&mut Optimizer> {
        self.manual.as_mut().map(|m| &mut *m.optimizer)
    }
}

fn callbacks_of<M: LightningModule>(callbacks: &mut dyn Any) -> &mut [Box<dyn crate::Callback<M>>] {
    // The trainer stores exactly `Callbacks<M>` for the module type it runs.
    callbacks
        .downcast_mut::<Callbacks<M>>()
        .map(|c| c.as_mut_slice())
        .unwrap_or_default()
}

fn outside_training_step(what: &str) -> Error {
    Error::Hook {
        hook: "training_step",
        message: format!("`{what}` can only be called inside `training_step`"),
    }
}

common_context_methods!(HookContext);
common_context_methods!(EpochContext);
common_context_methods!(StepContext);
