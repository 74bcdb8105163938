//! Restoring a fit from a checkpoint, in Lightning's order (`_CheckpointConnector`): the module's
//! `on_load_checkpoint` and its weights, the datamodule's state, the callbacks'
//! `on_load_checkpoint` and states (before `configure_optimizers`); then the optimizer's and
//! scheduler's states and the loops' progress (after it).

use super::run::Run;
use crate::Error;
use crate::checkpoint::Checkpoint;
use crate::context::HookContext;
use crate::data::DataModule;
use crate::hooks::{Hook, LightningModule, dispatch};

/// The module's `on_load_checkpoint` and weights, the datamodule's and the callbacks' states.
pub(crate) fn restore_modules_and_callbacks<M, D>(run: &mut Run<'_, M, D>, checkpoint: &Checkpoint) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch>,
{
    dispatch::on_load_checkpoint(&mut run.module, &mut [], &mut run.core, &mut (), checkpoint)?;
    // The saved parameter ids come with the weights, so the optimizer's state (keyed by them)
    // applies to this module.
    run.module = checkpoint.restore_module(run.module.clone()).map_err(|e| match e {
        Error::Checkpoint(why) => Error::Checkpoint(format!("cannot resume: {why} (a checkpoint of another module?)")),
        other => other,
    })?;
    let name = run.data.name();
    if let Some(state) = checkpoint.datamodule.get(name.as_ref()) {
        let _span = run.data.is_datamodule().then(|| {
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "load_state_dict", by = "datamodule", datamodule = %name).entered()
        });
        run.data.load_state_dict(state.clone())?;
    }
    // Lightning: every callback's `on_load_checkpoint`, then every callback's `load_state_dict`.
    for callback in run.callbacks.iter_mut() {
        let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "on_load_checkpoint", by = "callback", callback = %callback.name()).entered();
        let mut cx = HookContext::new(&mut run.core, Hook::OnLoadCheckpoint);
        callback.on_load_checkpoint(&mut run.module, checkpoint, &mut cx);
        run.core.take_error()?;
    }
    for callback in run.callbacks.iter_mut() {
        let key = callback.state_key();
        if let Some(state) = checkpoint.callbacks.get(key.as_ref()) {
            let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "load_state_dict", by = "callback", callback = %callback.name()).entered();
            callback.load_state_dict(state.clone())?;
        }
    }
    Ok(())
}

/// The optimizer's and scheduler's states and the loops' progress. Returns how many calls of the
/// training dataloader's `iter()` the completed epochs made (to replay them: burn's shuffling
/// loaders draw a new order at each call).
pub(crate) fn restore_training_state<M, D>(
    run: &mut Run<'_, M, D>,
    checkpoint: &Checkpoint,
    total_batches: &mut usize,
) -> Result<usize, Error>
where
    M: LightningModule,
    D: DataModule<M::Batch>,
{
    let loops = checkpoint.loops.clone().unwrap_or_default();
    let states = checkpoint.optimizer_states()?;
    let configured = usize::from(run.optimizer.is_some()) + run.more_optimizers.len();
    // A checkpoint without optimizer state (weights only) leaves the optimizers as configured.
    if checkpoint.has_optimizer_state() && states.len() != configured.max(1) {
        return Err(Error::Checkpoint(format!(
            "the checkpoint holds the states of {} optimizers, and `configure_optimizers` returns {configured}; \
             resume with the module that saved it, or load its weights alone (`LoadFromCheckpoint`) to start afresh",
            states.len()
        )));
    }
    let saved_state = |i: usize| states.get(i).copied().unwrap_or_default();
    if let Some(optimizer) = run.optimizer.as_mut() {
        optimizer.restore_state(saved_state(0), loops.optimizer_steps, loops.scheduler.as_ref())?;
    }
    for (i, optimizer) in run.more_optimizers.iter_mut().enumerate() {
        if let Some(progress) = loops.more_optimizers.get(i) {
            optimizer.restore_state(saved_state(i + 1), progress.steps, progress.scheduler.as_ref())?;
        }
    }
    run.core.precision.restore_scaler(loops.loss_scaler);
    run.sync_learning_rates();
    let state = &mut run.core.state;
    state.global_step = checkpoint.global_step;
    run.batches_that_stepped = loops.batches_that_stepped;
    *total_batches = loops.total_batches;
    // An epoch that ran to its end resumes at the next one; otherwise at the next batch of it.
    state.current_epoch = checkpoint.epoch + usize::from(loops.epoch_done);
    run.core.loop_progress.batches_done = if loops.epoch_done { 0 } else { loops.batches_done };
    Ok(checkpoint.epoch + usize::from(loops.epoch_done))
}

/// The loop progress for a checkpoint being saved during `fit`, with the optimizers' steps and
/// their schedulers' states.
pub(crate) fn loop_progress(
    core: &crate::context::Core,
    optimizer: Option<&crate::optim::Optimizer>,
    more_optimizers: &[crate::optim::Optimizer],
) -> Result<crate::resume::LoopProgress, Error> {
    let mut progress = core.loop_progress.clone();
    if let Some(optimizer) = optimizer {
        progress.optimizer_steps = optimizer.steps();
        progress.scheduler = optimizer.scheduler_state()?;
    }
    progress.more_optimizers = more_optimizers
        .iter()
        .map(|optimizer| {
            Ok(crate::resume::OptimizerProgress {
                steps: optimizer.steps(),
                scheduler: optimizer.scheduler_state()?,
            })
        })
        .collect::<Result<_, Error>>()?;
    progress.loss_scaler = core.precision.scaler_state();
    Ok(progress)
}

/// Snapshots of the optimizers' states (clones of tensor handles), in `configure_optimizers`'
/// order, for a checkpoint.
pub(crate) fn optimizer_snapshots(
    optimizer: Option<&crate::optim::Optimizer>,
    more_optimizers: &[crate::optim::Optimizer],
) -> Vec<burn::optim::ModuleOptimizer> {
    optimizer
        .into_iter()
        .chain(more_optimizers)
        .map(|optimizer| optimizer.module_optimizer().clone())
        .collect()
}

/// [`Trainer::save_checkpoint`](super::Trainer::save_checkpoint).
pub(crate) fn save_checkpoint<M: LightningModule>(
    trainer: &mut super::Trainer<M>,
    module: &mut M,
    path: &std::path::Path,
) -> Result<(), Error> {
    let hparams = serde_json::to_value(module.hparams())
        .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
    let progress = &trainer.progress;
    let mut checkpoint = Checkpoint::new(progress.current_epoch, progress.global_step, hparams);
    let device = module.devices().into_iter().next().unwrap_or_default();
    let mut state = crate::state::TrainerState::new(crate::state::TrainerFn::Fitting, device);
    state.current_epoch = progress.current_epoch;
    state.global_step = progress.global_step;
    state.log_dir = progress.log_dir.clone();
    let mut core = crate::context::Core::new(state);
    // Between fits: the next one starts a new epoch.
    core.loop_progress = crate::resume::LoopProgress {
        total_batches: progress.total_batches,
        batches_that_stepped: progress.batches_that_stepped,
        ..Default::default()
    };
    checkpoint.loops = Some(loop_progress(
        &core,
        trainer.optimizer.as_ref(),
        &trainer.more_optimizers,
    )?);
    for callback in trainer.callbacks.iter_mut() {
        if let Some(state) = callback.state_dict() {
            checkpoint.callbacks.insert(callback.state_key().into_owned(), state);
        }
    }
    dispatch::on_save_checkpoint(module, &mut trainer.callbacks, &mut core, &mut (), &mut checkpoint)?;
    let optimizers = optimizer_snapshots(trainer.optimizer.as_ref(), &trainer.more_optimizers);
    checkpoint.with_payload(module.clone(), optimizers)?.save(path)
}
