//! Restoring a fit from a checkpoint, in Lightning's order (`_CheckpointConnector`): the module's
//! `on_load_checkpoint` and its weights, the datamodule's state, the callbacks'
//! `on_load_checkpoint` and states (before `configure_optimizers`); then the optimizer's and
//! scheduler's states and the loops' progress (after it).

use crate::Error;
use crate::core::checkpoint_data::{Checkpoint, LoopProgress, OptimizerProgress};
use crate::core::datamodule::DataModule;
use crate::core::state::{TrainerFn, TrainerState};
use crate::hooks::context::{Core, HookContext};
use crate::hooks::{Callback, Hook, LightningModule, dispatch};
use crate::optim::Optimizer;
use std::path::{Path, PathBuf};

/// The module's `on_load_checkpoint` and weights, the datamodule's and the callbacks' states.
pub(crate) fn restore_modules_and_callbacks<M, D>(
    module: &mut M,
    data: &mut D,
    callbacks: &mut [Box<dyn Callback<M>>],
    core: &mut Core,
    checkpoint: &Checkpoint,
) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    dispatch::on_load_checkpoint(module, &mut [], core, &mut (), checkpoint)?;
    // The saved parameter ids come with the weights, so the optimizer's state (keyed by them)
    // applies to this module.
    *module = checkpoint.restore_module(module.clone()).map_err(|e| match e {
        Error::Checkpoint(why) => Error::Checkpoint(format!("cannot resume: {why} (a checkpoint of another module?)")),
        other => other,
    })?;
    // Several processes: each rank goes on from its own share of the saved metric states.
    if let Some(group) = &core.process_group {
        let device = burn::module::Module::devices(&*module)
            .into_iter()
            .next()
            .unwrap_or_default()
            .without_autodiff();
        crate::metrics::restore_rank(
            &*module,
            &checkpoint.metrics,
            group.rank(),
            core.state.world_size,
            &device,
        )?;
    }
    // The restored metric objects the training loop logged are reset when the resumed epoch
    // ends, as they were in the fit that saved them.
    let resets = crate::metrics::training_resets(&*module, &checkpoint.metrics);
    core.metrics.reset_after_training_epoch(resets);
    let name = data.name();
    if let Some(state) = checkpoint.datamodule.get(name.as_ref()) {
        let _span = data.is_datamodule().then(|| {
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "load_state_dict", by = "datamodule", datamodule = %name).entered()
        });
        data.load_state_dict(state.clone())?;
    }
    // Lightning: every callback's `on_load_checkpoint`, then every callback's `load_state_dict`.
    for callback in callbacks.iter_mut() {
        let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "on_load_checkpoint", by = "callback", callback = %callback.name()).entered();
        let mut cx = HookContext::new(core, Hook::OnLoadCheckpoint);
        callback.on_load_checkpoint(module, checkpoint, &mut cx);
        core.take_error()?;
    }
    for callback in callbacks.iter_mut() {
        let key = callback.state_key();
        if let Some(state) = checkpoint.callbacks.get(key.as_ref()) {
            let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "load_state_dict", by = "callback", callback = %callback.name()).entered();
            callback.load_state_dict(state.clone())?;
        }
    }
    Ok(())
}

/// The counters a resumed fit goes on from, read from a checkpoint by
/// [`restore_training_state`].
pub(crate) struct RestoredCounters {
    /// Training batches that stepped the optimizer (the loggers' step).
    pub batches_that_stepped: usize,
    /// Training batches run so far, across epochs.
    pub total_batches: usize,
    /// How many calls of the training dataloader's `iter()` the completed epochs made (to replay
    /// them: burn's shuffling loaders draw a new order at each call).
    pub completed_epochs: usize,
}

/// The optimizers' and schedulers' states, the loss scaler and the loops' progress (into
/// `core`'s state and loop progress).
pub(crate) fn restore_training_state(
    optimizer: Option<&mut Optimizer>,
    more_optimizers: &mut [Optimizer],
    core: &mut Core,
    checkpoint: &Checkpoint,
) -> Result<RestoredCounters, Error> {
    let loops = checkpoint.loops.clone().unwrap_or_default();
    let states = checkpoint.optimizer_states()?;
    let configured = usize::from(optimizer.is_some()) + more_optimizers.len();
    // A checkpoint without optimizer state (weights only) leaves the optimizers as configured.
    if checkpoint.has_optimizer_state() && states.len() != configured.max(1) {
        return Err(Error::Checkpoint(format!(
            "the checkpoint holds the states of {} optimizers, and `configure_optimizers` returns {configured}; \
             resume with the module that saved it, or load its weights alone (`LoadFromCheckpoint`) to start afresh",
            states.len()
        )));
    }
    let saved_state = |i: usize| states.get(i).copied().unwrap_or_default();
    if let Some(optimizer) = optimizer {
        optimizer.restore_state(
            saved_state(0),
            loops.optimizer_steps,
            loops.scheduler.as_ref(),
            loops.param_groups.as_ref(),
        )?;
    }
    for (i, optimizer) in more_optimizers.iter_mut().enumerate() {
        if let Some(progress) = loops.more_optimizers.get(i) {
            optimizer.restore_state(
                saved_state(i + 1),
                progress.steps,
                progress.scheduler.as_ref(),
                progress.param_groups.as_ref(),
            )?;
        }
    }
    core.precision.restore_scaler(loops.loss_scaler);
    let state = &mut core.state;
    state.global_step = checkpoint.global_step;
    // An epoch that ran to its end resumes at the next one; otherwise at the next batch of it.
    state.current_epoch = checkpoint.epoch + usize::from(loops.epoch_done);
    core.loop_progress.batches_done = if loops.epoch_done { 0 } else { loops.batches_done };
    // The epoch in progress: what it logged comes back when it starts again.
    if !loops.epoch_done {
        // Several processes: each rank's own, when the checkpoint has every rank's.
        let own = core
            .process_group
            .as_ref()
            .filter(|_| checkpoint.epoch_logs_by_rank.len() == core.state.world_size)
            .map(|group| &checkpoint.epoch_logs_by_rank[group.rank()]);
        core.metrics.restore_epoch_logs(own.unwrap_or(&checkpoint.epoch_logs))?;
    }
    Ok(RestoredCounters {
        batches_that_stepped: loops.batches_that_stepped,
        total_batches: loops.total_batches,
        completed_epochs: checkpoint.epoch + usize::from(loops.epoch_done),
    })
}

/// The loop progress for a checkpoint being saved during `fit`, with the optimizers' steps and
/// their schedulers' states.
pub(crate) fn loop_progress(
    core: &Core,
    optimizer: Option<&Optimizer>,
    more_optimizers: &[Optimizer],
) -> Result<LoopProgress, Error> {
    let mut progress = core.loop_progress.clone();
    if let Some(optimizer) = optimizer {
        progress.optimizer_steps = optimizer.steps();
        progress.scheduler = optimizer.scheduler_state()?;
        progress.param_groups = optimizer.groups_state();
    }
    progress.more_optimizers = more_optimizers
        .iter()
        .map(|optimizer| {
            Ok(OptimizerProgress {
                steps: optimizer.steps(),
                scheduler: optimizer.scheduler_state()?,
                param_groups: optimizer.groups_state(),
            })
        })
        .collect::<Result<_, Error>>()?;
    progress.loss_scaler = core.precision.scaler_state();
    Ok(progress)
}

/// Snapshots of the optimizers' states (clones of tensor handles), in `configure_optimizers`'
/// order, for a checkpoint.
pub(crate) fn optimizer_snapshots(
    optimizer: Option<&Optimizer>,
    more_optimizers: &[Optimizer],
) -> Vec<burn::optim::ModuleOptimizer> {
    optimizer
        .into_iter()
        .chain(more_optimizers)
        .map(|optimizer| optimizer.module_optimizer().clone())
        .collect()
}

/// Where a trainer stands between fits, for a checkpoint saved from outside a hook.
pub(crate) struct Counters {
    pub current_epoch: usize,
    pub global_step: usize,
    pub total_batches: usize,
    pub batches_that_stepped: usize,
    pub log_dir: Option<PathBuf>,
}

/// Lightning's `trainer.save_checkpoint(path)` from outside a hook: `module`, the optimizers of
/// the last fit, the callbacks' states and the counters, after the `on_save_checkpoint` hooks.
pub(crate) fn save_checkpoint<M: LightningModule>(
    module: &mut M,
    callbacks: &mut [Box<dyn Callback<M>>],
    optimizer: Option<&Optimizer>,
    more_optimizers: &[Optimizer],
    counters: Counters,
    path: &Path,
) -> Result<(), Error> {
    let hparams = serde_json::to_value(module.hparams())
        .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
    let mut checkpoint = Checkpoint::new(counters.current_epoch, counters.global_step, hparams);
    let device = module.devices().into_iter().next().unwrap_or_default();
    let mut state = TrainerState::new(TrainerFn::Fitting, device);
    state.current_epoch = counters.current_epoch;
    state.global_step = counters.global_step;
    state.log_dir = counters.log_dir;
    let mut core = Core::new(state);
    // Between fits: the next one starts a new epoch.
    core.loop_progress = LoopProgress {
        total_batches: counters.total_batches,
        batches_that_stepped: counters.batches_that_stepped,
        ..Default::default()
    };
    checkpoint.loops = Some(loop_progress(&core, optimizer, more_optimizers)?);
    for callback in callbacks.iter_mut() {
        if let Some(state) = callback.state_dict() {
            checkpoint.callbacks.insert(callback.state_key().into_owned(), state);
        }
    }
    dispatch::on_save_checkpoint(module, callbacks, &mut core, &mut (), &mut checkpoint)?;
    checkpoint.metrics = crate::metrics::MetricsSnapshot::of(&*module, &Default::default()).to_json()?;
    let optimizers = optimizer_snapshots(optimizer, more_optimizers);
    checkpoint.with_payload(module.clone(), optimizers)?.save(path)
}
