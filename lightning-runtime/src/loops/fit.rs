//! `Trainer::fit`: Lightning's fit loop (section 1.1 of the spec), with automatic or manual
//! optimization chosen at compile time by the module's `OPTIMIZATION` constant.

use super::batches::Batches;
use super::evaluate::{Validating, run_evaluation};
use super::optimization::{AccumulationWindow, TrainingStepClosure};
use super::run::{Run, TrainBatches, hook};
use super::{Config, Session};
use crate::Error;
use crate::core::checkpoint_data::Checkpoint;
use crate::core::datamodule::{DataModule, Loader};
use crate::core::error::FitError;
use crate::core::flags::ValCheckInterval;
use crate::core::state::{Loop, RunningStage, TrainerFn};
use crate::hooks::closure::OptimizerClosure;
use crate::hooks::context::{ManualParts, StepContext};
use crate::hooks::{
    BatchControl, ConfigureOptimizers, Hook, LightningModule, Optimization, StepOutput, TrainingStep, dispatch,
};
use crate::optim::{Interval, Optimizer};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::time::Instant;

pub(crate) fn fit<M, D>(
    cfg: &Config,
    session: &mut Session<M>,
    model: M,
    data: D,
    resume: Option<(&Path, &Checkpoint)>,
) -> Result<M, FitError<M>>
where
    M: TrainingStep + ConfigureOptimizers,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let profiler = crate::profiler::Session::start(cfg.profiler, std::any::type_name::<M>(), cfg.strategy_name());
    let mut run = Run::new(
        cfg,
        &mut session.callbacks,
        &mut session.loggers,
        model,
        data,
        TrainerFn::Fitting,
        &session.progress,
    );
    run.report = std::mem::take(&mut session.report);
    let mut total_batches = session.progress.total_batches;
    // A panic in a step, a hook or the optimizer unwinds through here: the callbacks hear of it
    // (`on_exception`) and pending checkpoints are written before it goes on.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // The module trains on the autodiff device; parameters not yet initialized are
        // initialized there, from the seeded generator.
        // Under `*-true`, in the precision's dtype before the optimizer sees them.
        let module = run.module.clone().fork(&run.train_device).train();
        run.module = crate::optim::precision::convert_module(run.cfg.precision, module);
        fit_loop(&mut run, &mut total_batches, resume)
    }));
    let state = &run.core.state;
    session.progress.current_epoch = state.current_epoch;
    session.progress.global_step = state.global_step;
    session.progress.total_batches = total_batches;
    session.progress.batches_that_stepped = run.batches_that_stepped;
    session.progress.log_dir = state.log_dir.clone();
    session.logged_metrics = std::mem::take(&mut run.logged).into();
    let result = match outcome {
        Ok(result) => result,
        Err(panic) => {
            let error = Error::panic(panic.as_ref());
            run.fail(&error);
            session.progress.log_dir = run.core.state.log_dir.clone();
            let _ = run.finish_report(Err::<(), _>(error), 0);
            session.report = std::mem::take(&mut run.report);
            session.callback_metrics = run.core.metrics.callback_metrics().into();
            // The report of the failed run; the panic is what the caller hears of.
            let _ = crate::profiler::finish(profiler, "fit", run.core.state.log_dir.as_deref());
            resume_unwind(panic);
        }
    };
    // Checkpoints still being written are part of the fit.
    let result = result.and_then(|()| run.finish_checkpoints());
    if result.is_ok()
        && let Some(first) = &run.core.first_non_finite_loss
    {
        // Lightning ends such a fit without a word; the weights it returns are likely NaN.
        let warning = format!(
            "warning: fit ended, but its loss was not finite: first {first} (the first step whose loss was read, \
             on the steps that log); the weights may not be finite, and a checkpoint whose weights are not finite \
             never replaced the last one whose weights are. `detect_anomaly(true)` stops at the first such step"
        );
        tracing::warn!(target: "burn_lightning", "{warning}");
        run.core.output.println(&warning);
    }
    if let Err(e) = &result {
        run.fail(e);
        // A failure before anything was logged removes the run directory it made.
        session.progress.log_dir = run.core.state.log_dir.clone();
    }
    // Lightning's `profiler.describe()`, after the loggers are finalized.
    let result = result.and(crate::profiler::finish(
        profiler,
        "fit",
        run.core.state.log_dir.as_deref(),
    ));
    // What was logged is charted also when the fit failed.
    let result = run.finish_report(result, 0);
    session.report = std::mem::take(&mut run.report);
    session.callback_metrics = run.core.metrics.callback_metrics().into();
    session.progress_bar_metrics = run.core.metrics.progress_bar_metrics().into();
    // For `Trainer::save_checkpoint` after the fit.
    session.optimizer = run.optimizer.take();
    session.more_optimizers = std::mem::take(&mut run.more_optimizers);
    match result {
        Ok(()) => Ok(run.module),
        Err(error) => Err(FitError {
            model: run.module,
            error,
        }),
    }
}

fn fit_loop<M, D>(
    run: &mut Run<'_, M, D>,
    total_batches: &mut usize,
    resume: Option<(&Path, &Checkpoint)>,
) -> Result<(), Error>
where
    M: TrainingStep + ConfigureOptimizers,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    run.setup()?;
    if let Some((path, _)) = resume {
        // Lightning's `_CheckpointConnector.resume_start`; top-k never removes this file.
        run.core.output.println(&format!(
            "Restoring states from the checkpoint path at {}",
            path.display()
        ));
        run.core.state.ckpt_path = Some(path.to_path_buf());
    }
    if let Some((_, checkpoint)) = resume {
        crate::checkpoint::restore::restore_modules_and_callbacks(
            &mut run.module,
            &mut run.data,
            run.callbacks,
            &mut run.core,
            checkpoint,
        )?;
        // Weights saved in another precision come back in this run's.
        run.module = crate::optim::precision::cast_module(run.module.clone(), run.cfg.precision.param_dtype());
    }
    let configs = hook!(run.configure_optimizers()).ok_or(Error::Hook {
        hook: "configure_optimizers",
        message: "it returned no optimizer".into(),
    })?;
    // LightningCli's `--optimizer` / `--lr_scheduler`.
    let configs = match &run.cfg.optimizer_override {
        Some(replacement) => replacement.apply(configs)?,
        None => configs,
    };
    let mut optimizers = crate::optim::OptimizerConfig::build_all(configs)?.into_iter();
    run.optimizer = optimizers.next();
    run.more_optimizers = optimizers.collect();
    // The learning-rate finder replaces the module's scheduler with its sweep.
    if let Some(sweep) = run.cfg.tuning.as_ref().and_then(|tuning| tuning.lr_sweep.as_ref()) {
        if !run.more_optimizers.is_empty() {
            return Err(Error::config(
                "lr_find",
                "it works with a single optimizer (as Lightning's); this module's `configure_optimizers` returns several",
            ));
        }
        if let Some(optimizer) = run.optimizer.as_mut() {
            sweep.exchange_scheduler(optimizer)?;
        }
    }
    // The training dataloader's `iter()` calls of the epochs the checkpoint completed.
    let replayed_epochs = match resume {
        Some((path, checkpoint)) => {
            let restored = crate::checkpoint::restore::restore_training_state(
                run.optimizer.as_mut(),
                &mut run.more_optimizers,
                &mut run.core,
                checkpoint,
            )?;
            run.batches_that_stepped = restored.batches_that_stepped;
            *total_batches = restored.total_batches;
            run.core.output.println(&format!(
                "Restored all states from the checkpoint at {}",
                path.display()
            ));
            restored.completed_epochs
        }
        None => 0,
    };
    run.sync_learning_rates();
    run.create_log_dir()?;
    hook!(run.on_fit_start());

    // Lightning's `enable_validation`: a validation step, a validation dataloader, batches.
    let validates = M::OVERRIDDEN.contains(Hook::ValidationStep)
        && !run.cfg.limit_val_batches.is_off()
        && (M::OVERRIDDEN.contains(Hook::ValDataloader) || run.data.provides_val_dataloader());
    let state = &mut run.core.state;
    state.validation_enabled = validates;
    state.validates_at_epoch_end = !validates
        || (run.cfg.check_val_every_n_epoch == Some(1)
            && run.cfg.val_check_interval == ValCheckInterval::Fraction(1.0));
    let mut val_loader = ValLoader::default();

    // Lightning skips the sanity check when it restores a fit.
    // Lightning skips the sanity check when it restarts inside an epoch (it would disturb the
    // restored state), not after a checkpoint of an epoch's end.
    let restarting_mid_epoch = resume.is_some_and(|(_, checkpoint)| {
        checkpoint
            .loops
            .as_ref()
            .is_some_and(|loops| !loops.epoch_done && loops.batches_done > 0)
    });
    if validates && run.cfg.num_sanity_val_steps > 0 && !restarting_mid_epoch {
        run.core.state.stage = RunningStage::SanityChecking;
        hook!(run.on_sanity_check_start());
        let device = run.eval_device.clone();
        let loaders = run.val_loaders(&device)?;
        if !loaders.is_empty() {
            // `num_sanity_val_steps` batches of each dataloader.
            let sanity_steps = Some(run.cfg.num_sanity_val_steps);
            run_evaluation::<_, _, Validating>(
                run,
                Loop::Validation,
                &loaders,
                run.cfg.limit_val_batches,
                sanity_steps,
                RunningStage::SanityChecking,
            )?;
        }
        // Lightning counts the sanity check's request as the epoch's only when the epoch validates.
        val_loader.set(loaders, validates_epoch(run).then_some(run.core.state.current_epoch))?;
        run.core.state.stage = RunningStage::SanityChecking;
        hook!(run.on_sanity_check_end());
        // Lightning forgets what the sanity check logged.
        run.core.metrics.forget(Loop::Validation);
        run.core.state.stage = RunningStage::Training;
    }

    // Lightning's fit loop: its dataloader first, then nothing more when there is nothing to
    // train (`limit_train_batches(0)`, or a trainer that already reached its limits).
    let train_device = run.train_device.clone();
    let mut train_loader = if run.cfg.limit_train_batches.is_off() {
        None
    } else {
        Some(training_loaders(run, &train_device)?)
    };
    let mut train_loader_epoch = run.core.state.current_epoch;
    if let Some(train_loader) = &mut train_loader
        && !fit_done(run)
    {
        // burn's shuffling loaders draw a new order at every `iter()`: the calls of the epochs
        // the checkpoint completed are replayed (drawing the orders, loading nothing) so that
        // the resumed epoch sees the order it had.
        for _ in 0..replayed_epochs {
            drop(train_loader.main.iter());
            for (loader, _) in &train_loader.replicas {
                drop(loader.iter());
            }
        }
        if val_loader.loader.is_none() && validates_epoch(run) {
            let device = run.eval_device.clone();
            let loaders = run.val_loaders(&device)?;
            val_loader.set(loaders, Some(run.core.state.current_epoch))?;
        }
        // What `on_train_start` logs is reduced with the first epoch.
        run.core.metrics.start_epoch(Loop::Train);
        hook!(run.on_train_start());
        // The clock of a time-based `val_check_interval` starts with training (Lightning's
        // `_train_start_time`, after the sanity check).
        let mut last_validation = Instant::now();
        while !fit_done(run) {
            let _span =
                tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = "run_training_epoch").entered();
            // Lightning's `_should_reload_train_dl`, before `on_train_epoch_start`.
            let every = run.cfg.reload_dataloaders_every_n_epochs;
            if every > 0 && run.core.state.current_epoch - train_loader_epoch >= every {
                *train_loader = training_loaders(run, &train_device)?;
                train_loader_epoch = run.core.state.current_epoch;
            }
            train_epoch(run, train_loader, &mut val_loader, total_batches, &mut last_validation)?;
        }
        run.finish_checkpoints()?;
        hook!(run.on_train_end());
    }
    // Lightning's "`Trainer.fit` stopped: ..." line, below the progress bars (rank zero's).
    if run.cfg.process_group.as_ref().is_none_or(|group| group.rank == 0) {
        let stopped = stop_message(run, train_loader.is_some());
        run.core.output.println(&stopped);
    }
    hook!(run.on_fit_end());
    run.teardown()
}

/// Why the fit loop ended, as Lightning says it (`_FitLoop.done`): no training batches,
/// `max_steps` or `max_epochs` reached, or a stop asked for, with the early-stopping reason or
/// the time limit when one of those asked (Lightning logs those two from their callbacks).
fn stop_message<M: LightningModule, D>(run: &Run<'_, M, D>, trained: bool) -> String {
    let state = &run.core.state;
    let reason = if !trained {
        "No training batches.".to_string()
    } else if let Some(max) = run.cfg.max_steps.filter(|max| state.global_step >= *max) {
        format!("`max_steps={max}` reached.")
    } else if let Some(max) = run.cfg.max_epochs.filter(|max| state.current_epoch >= *max) {
        format!("`max_epochs={max}` reached.")
    } else {
        let callbacks = || run.callbacks.iter().map(|c| &**c as &dyn Any);
        let early = callbacks()
            .filter_map(|c| c.downcast_ref::<crate::callbacks::EarlyStopping>())
            .find_map(|c| c.stop_message());
        let timer = callbacks()
            .filter_map(|c| c.downcast_ref::<crate::callbacks::Timer>())
            .find(|t| t.time_remaining() == Some(std::time::Duration::ZERO));
        match (early, timer) {
            (Some(message), _) => format!(
                "early stopping: {}",
                message.trim_end_matches(" Signaling Trainer to stop.")
            ),
            (None, Some(timer)) => format!(
                "`max_time` reached (elapsed {:.1?}).",
                timer.time_elapsed(RunningStage::Training)
            ),
            (None, None) => "`trainer.should_stop` was set.".to_string(),
        }
    };
    format!("`Trainer.fit` stopped: {reason}")
}

/// The training dataloader of every rank: rank zero's, and the other ranks' with their
/// devices (none on one device; see [`crate::strategies::ddp`]).
struct TrainLoaders<B> {
    main: Loader<B>,
    replicas: Vec<(Loader<B>, crate::Device)>,
}

fn training_loaders<M, D>(run: &mut Run<'_, M, D>, device: &crate::Device) -> Result<TrainLoaders<M::Batch>, Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let mut loader = run.required_train_loader(device)?;
    // Several processes: this rank's shard, as the in-process ranks' below.
    if let Some(group) = &run.cfg.process_group {
        loader = crate::strategies::ddp::process_shard(&loader, group.rank, group.world_size)?;
    }
    if run.cfg.replica_devices.is_empty() {
        return Ok(TrainLoaders {
            main: loader,
            replicas: Vec::new(),
        });
    }
    // Each rank trains with autodiff on its device, as rank zero does.
    let devices: Vec<crate::Device> = std::iter::once(device.clone())
        .chain(
            run.cfg
                .replica_devices
                .iter()
                .map(|replica| replica.clone().without_autodiff().autodiff()),
        )
        .collect();
    let mut shards = crate::strategies::ddp::shard_loader(&loader, &devices)?.into_iter();
    let main = shards.next().expect("one shard per device");
    Ok(TrainLoaders {
        main,
        replicas: shards.zip(devices.into_iter().skip(1)).collect(),
    })
}

/// Lightning's `fit_loop.done`: `max_steps` or `max_epochs` reached, or a stop was asked for and
/// `min_epochs` and `min_steps` allow it.
fn fit_done<M: LightningModule, D>(run: &Run<'_, M, D>) -> bool {
    let state = &run.core.state;
    run.cfg.max_steps.is_some_and(|max| state.global_step >= max)
        || run
            .cfg
            .max_epochs
            .is_some_and(|max| state.current_epoch >= max + run.core.fit_control.extra_epochs)
        || (state.should_stop && can_stop(run))
}

/// Whether `min_epochs` and `min_steps` allow stopping now. `current_epoch` counts the epochs
/// completed (the running one is not), as Lightning's `epoch_progress.current.processed`.
fn can_stop<M: LightningModule, D>(run: &Run<'_, M, D>) -> bool {
    run.core.state.current_epoch >= run.cfg.min_epochs && run.core.state.global_step >= run.cfg.min_steps
}

/// Lightning's `_should_check_val_epoch`: validation runs in the current epoch.
fn validates_epoch<M: LightningModule, D>(run: &Run<'_, M, D>) -> bool {
    run.core.state.validation_enabled
        && run
            .cfg
            .check_val_every_n_epoch
            .is_none_or(|n| (run.core.state.current_epoch + 1).is_multiple_of(n))
}

/// One training epoch, with the validation runs that fall in it, and the epoch's end.
fn train_epoch<M, D>(
    run: &mut Run<'_, M, D>,
    train_loaders: &TrainLoaders<M::Batch>,
    val_loader: &mut ValLoader<M::ValBatch>,
    total_batches: &mut usize,
    last_validation: &mut Instant,
) -> Result<(), Error>
where
    M: TrainingStep,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let epoch_started = run.core.metrics.clock();
    run.sync_learning_rates();
    hook!(run.on_train_epoch_start());
    let validate_this_epoch = validates_epoch(run);
    let mut batches = Batches::new(Loop::Train, &train_loaders.main, run.cfg.limit_train_batches)?;
    // Data-parallel: the other ranks' batches, drawn in step with rank zero's.
    let mut replica_batches = train_loaders
        .replicas
        .iter()
        .map(|(loader, device)| Ok((Batches::new(Loop::Train, loader, run.cfg.limit_train_batches)?, device)))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut batch_idx = 0;
    let mut val_every: Option<usize> = None;
    let mut stopped_by_hook = false;
    // Accumulation (automatic optimization only; the builder refuses it under manual).
    let accumulate = run.cfg.accumulate_grad_batches.factor(run.core.state.current_epoch);
    let mut window = (accumulate > 1).then(AccumulationWindow::default);
    let mut reached_last_batch = false;
    // A mid-epoch resume continues after the batches the checkpoint completed; skipping them
    // loads them (a loader cannot seek).
    let resumed_batches = std::mem::take(&mut run.core.loop_progress.batches_done);
    // Several processes: a checkpoint taken inside a batch waits for what every rank
    // accumulated of the epoch, gathered at the batch's end.
    let gathers = run.cfg.process_group.is_some();
    while batch_idx < resumed_batches {
        let Some(next) = batches.next_batch()? else { break };
        for (replica, _) in &mut replica_batches {
            replica.next_batch()?;
        }
        reached_last_batch = next.is_last;
        batch_idx += 1;
    }
    while let Some(next) = batches.next_batch()? {
        run.core.gather_metrics_at_batch_end = gathers;
        // Equal shards give every rank as many batches; a rank that ran out sits the step out.
        let mut ranks = Vec::with_capacity(replica_batches.len());
        for (replica, device) in &mut replica_batches {
            if let Some(batch) = replica.next_batch()? {
                ranks.push((batch.batch, (*device).clone()));
            }
        }
        run.core.state.batch_idx = batch_idx;
        run.core.batch_size = next.size;
        run.core.state.num_training_batches = batches.planned();
        if val_every.is_none() && validate_this_epoch {
            val_every = Some(val_check_batches(run, batches.planned())?);
        }
        *total_batches += 1;
        run.core.loop_progress.total_batches = *total_batches;
        // Lightning's `should_update_logs`, as hooks see it during the batch.
        run.core.logs_this_step =
            (run.batches_that_stepped + 1).is_multiple_of(run.cfg.log_every_n_steps) || run.core.state.should_stop;
        let batch_started = run.core.metrics.clock();
        if let Some(window) = &mut window {
            window.begin(batch_idx, accumulate, batches.planned(), next.is_last);
        }
        let accumulating = window.as_ref().is_some_and(|window| !window.steps);
        reached_last_batch = next.is_last;
        let control = train_batch(run, next.batch, ranks, batch_idx, next.is_last, window.as_mut())?;
        if control == BatchControl::StopEpoch {
            stopped_by_hook = true;
            break;
        }
        // Lightning sends no step values while accumulating.
        if !accumulating {
            log_step_values(run, batch_started)?;
        }
        batch_idx += 1;
        // Lightning's `_should_check_val_fx`: every `val_check_batch` batches of the epoch, or of
        // the whole fit when `check_val_every_n_epoch` is None; and before stopping early.
        let stop_requested = run.core.state.should_stop && can_stop(run);
        let iteration = if run.cfg.check_val_every_n_epoch.is_none() {
            *total_batches
        } else {
            batch_idx
        };
        let val_check_batch = match val_check_time(run.cfg) {
            // Lightning 2.6's time-based validation: the first batch end past the interval.
            Some(interval) => last_validation.elapsed() >= interval,
            None => val_every.is_some_and(|every| iteration.is_multiple_of(every)),
        };
        if validate_this_epoch && (val_check_batch || stop_requested) {
            validate_in_fit(run, val_loader, accumulating)?;
            *last_validation = Instant::now();
        }
        // Plateau schedulers stepped by batch follow what that validation logged (Lightning's
        // `on_advance_end`).
        if !accumulating {
            step_scheduler(run, Interval::Step, true)?;
        }
        // Lightning's `_batches_that_stepped`, the loggers' step: counted after the batch's
        // validation (which logs at the batch's own step), for every batch but those that
        // accumulate (manual optimization counts every batch).
        if counts_as_stepped::<M>(accumulating) {
            run.batches_that_stepped += 1;
        }
        run.gather_checkpointed_metrics()?;
        // SLURM's SIGUSR1 (auto-requeue), at this batch boundary.
        if crate::loops::signals::take_requeue() {
            run.save_hpc_checkpoint_and_requeue()?;
        }
        let steps_done = run.cfg.max_steps.is_some_and(|max| run.core.state.global_step >= max);
        if steps_done || (run.core.state.should_stop && can_stop(run)) {
            break;
        }
    }
    // A batch that ended the epoch (`BatchControl::StopEpoch`) gathers here.
    run.gather_checkpointed_metrics()?;
    // An epoch ended by `BatchControl::StopEpoch` still advances epoch-interval schedulers.
    if stopped_by_hook && M::OPTIMIZATION == Optimization::Automatic {
        step_scheduler(run, Interval::Epoch, false)?;
    }

    run.core.metrics.end_epoch(Loop::Train);
    run.core.loop_progress.epoch_done = true;
    run.core.loop_progress.batches_that_stepped = run.batches_that_stepped;
    hook!(run.on_train_epoch_end());
    // Plateau schedulers stepped by epoch follow the epoch's values and its validation, when
    // the epoch ran to its last batch (Lightning's `fit_loop.on_advance_end`).
    if reached_last_batch {
        step_scheduler(run, Interval::Epoch, true)?;
    }
    // Lightning logs the epoch's values at the step of its last batch.
    let epoch_values = run.core.metrics.logger_epoch_metrics(Loop::Train, epoch_started);
    let step = run.batches_that_stepped.saturating_sub(1);
    run.log_metrics(epoch_values, step)?;
    run.loggers_epoch_end()?;
    run.core.state.current_epoch += 1;
    run.core.loop_progress.epoch_done = false;
    run.core.loop_progress.batches_done = 0;
    run.core.metrics.start_epoch(Loop::Train);
    Ok(())
}

/// The validation dataloaders of a fit, once asked for (empty: none), and the epoch they were
/// asked for in (Lightning's `_last_val_dl_reload_epoch`; `None` for "-inf").
struct ValLoader<B> {
    loader: Option<Vec<Loader<B>>>,
    requested_at: Option<usize>,
}

impl<B> Default for ValLoader<B> {
    fn default() -> Self {
        Self {
            loader: None,
            requested_at: None,
        }
    }
}

impl<B> ValLoader<B> {
    /// Keeps the dataloaders just asked for. Their number may not change once validation has
    /// dataloaders (`reload_dataloaders_every_n_epochs`): logged names, results and checkpoints
    /// monitoring `val_loss/dataloader_idx_1` count on it.
    fn set(&mut self, loaders: Vec<Loader<B>>, requested_at: Option<usize>) -> Result<(), Error> {
        if let Some(before) = self.loader.as_ref().map(Vec::len)
            && before > 0
            && before != loaders.len()
        {
            return Err(Error::config(
                "reload_dataloaders_every_n_epochs",
                format!(
                    "the validation stage had {before} dataloaders and now has {}; return the same number of \
                     validation dataloaders at every reload",
                    loaders.len()
                ),
            ));
        }
        self.loader = Some(loaders);
        self.requested_at = requested_at;
        Ok(())
    }

    /// Lightning's `_should_reload_val_dl`: not yet asked for, or asked for at least
    /// `reload_dataloaders_every_n_epochs` epochs ago.
    fn due(&self, every: usize, epoch: usize) -> bool {
        self.loader.is_none() || (every > 0 && self.requested_at.is_none_or(|at| epoch - at >= every))
    }
}

/// A validation run inside `fit`; its dataloader is asked for the first time it is needed, and
/// again every `reload_dataloaders_every_n_epochs`.
fn validate_in_fit<M, D>(
    run: &mut Run<'_, M, D>,
    val_loader: &mut ValLoader<M::ValBatch>,
    accumulating: bool,
) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let epoch = run.core.state.current_epoch;
    if val_loader.due(run.cfg.reload_dataloaders_every_n_epochs, epoch) {
        let device = run.eval_device.clone();
        let loaders = run.val_loaders(&device)?;
        val_loader.set(loaders, Some(epoch))?;
    }
    let loaders = val_loader.loader.clone().unwrap_or_default();
    if loaders.is_empty() {
        return Ok(());
    }
    // Lightning keeps the gradients of a window still accumulating.
    if !accumulating {
        hook!(run.on_validation_model_zero_grad());
    }
    run_evaluation::<_, _, Validating>(
        run,
        Loop::Validation,
        &loaders,
        run.cfg.limit_val_batches,
        None,
        RunningStage::Validating,
    )?;
    run.core.state.validation_has_run = true;
    Ok(())
}

/// Whether a training batch advances Lightning's `_batches_that_stepped` (the loggers' step and
/// what `log_every_n_steps` counts): every batch but one that accumulates gradients under
/// automatic optimization (`_should_accumulate`); under manual optimization every batch.
fn counts_as_stepped<M: LightningModule>(accumulating: bool) -> bool {
    M::OPTIMIZATION == Optimization::Manual || !accumulating
}

/// Sends the step values of the batch to the loggers every `log_every_n_steps` batches that
/// step the optimizer, and when a stop was asked for (Lightning's `should_update_logs`). Only
/// then are the logged tensors read.
fn log_step_values<M, D>(run: &mut Run<'_, M, D>, batch_started: u64) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let step = run.batches_that_stepped;
    if (step + 1).is_multiple_of(run.cfg.log_every_n_steps) || run.core.state.should_stop {
        let values = run.core.metrics.logger_step_metrics(Loop::Train, batch_started);
        run.log_step_metrics(values, step)?;
    }
    Ok(())
}

/// The time between validations of a time-based `val_check_interval`.
fn val_check_time(config: &Config) -> Option<std::time::Duration> {
    match &config.val_check_interval {
        ValCheckInterval::Time(time) => time.duration_of("val_check_interval").ok(),
        _ => None,
    }
}

/// Training batches between validations, from `val_check_interval`.
fn val_check_batches<M: LightningModule, D>(run: &Run<'_, M, D>, planned: Option<usize>) -> Result<usize, Error> {
    match run.cfg.val_check_interval {
        ValCheckInterval::Fraction(f) => Ok(planned.map_or(usize::MAX, |n| ((n as f64 * f) as usize).max(1))),
        // Time-based: no batch count (see `val_check_time`).
        ValCheckInterval::Time(_) => Ok(usize::MAX),
        ValCheckInterval::Batches(n) => {
            if run.cfg.check_val_every_n_epoch.is_some()
                && let Some(planned) = planned
                && n > planned
            {
                return Err(Error::config(
                    "val_check_interval",
                    format!(
                        "{n} batches is more than the {planned} training batches of an epoch; lower it, \
                         or set `check_val_every_n_epoch(None)` to count batches across epochs"
                    ),
                ));
            }
            Ok(n)
        }
        ValCheckInterval::Negative(n) => Err(Error::config("val_check_interval", format!("{n} is negative"))),
    }
}

/// One training batch: transfer hooks, `on_train_batch_start`, the optimization, schedulers,
/// `on_train_batch_end`.
fn train_batch<M, D>(
    run: &mut Run<'_, M, D>,
    batch: M::Batch,
    replica_batches: Vec<(M::Batch, crate::Device)>,
    batch_idx: usize,
    is_last: bool,
    window: Option<&mut AccumulationWindow>,
) -> Result<BatchControl, Error>
where
    M: TrainingStep,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let device = run.train_device.clone();
    let batch = run.transfer::<TrainBatches>(batch, &device, 0)?;
    // Data-parallel: each rank's batch through the transfer hooks, to its device.
    let replicas = if replica_batches.is_empty() {
        None
    } else {
        let mut batches = Vec::with_capacity(replica_batches.len());
        for (batch, device) in replica_batches {
            batches.push((run.transfer::<TrainBatches>(batch, &device, 0)?, device));
        }
        Some(crate::strategies::ddp::ReplicaBatches {
            batches,
            main_device: run.eval_device.clone(),
        })
    };
    let accumulating = window.as_deref().is_some_and(|window| !window.steps);
    if M::OPTIMIZATION == Optimization::Manual {
        // A manual `training_step` steps its schedulers itself: the rates a learning-rate
        // monitor reads at this batch's start are those its last steps left.
        run.sync_learning_rates();
    }
    let control = hook!(run.on_train_batch_start(&batch, batch_idx));
    if control == BatchControl::StopEpoch {
        return Ok(control);
    }
    let kept = run.batch_end_needs_batch(Hook::OnTrainBatchEnd).then(|| batch.clone());
    let output = {
        let _span =
            tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = "run_training_batch").entered();
        match M::OPTIMIZATION {
            Optimization::Automatic if run.core.fit_control.forward_only => forward_only_step(run, batch, batch_idx)?,
            Optimization::Automatic => automatic_step(run, batch, replicas, batch_idx, is_last, window)?,
            Optimization::Manual => manual_step(run, batch, batch_idx)?,
        }
    };
    // Where a checkpoint saved from `on_train_batch_end` resumes: after this batch.
    let progress = &mut run.core.loop_progress;
    progress.batches_done = batch_idx + 1;
    progress.batches_that_stepped = run.batches_that_stepped + usize::from(counts_as_stepped::<M>(accumulating));
    if let Some(batch) = &kept {
        hook!(run.on_train_batch_end(output.as_ref(), batch, batch_idx));
    }
    Ok(control)
}

fn automatic_step<M, D>(
    run: &mut Run<'_, M, D>,
    batch: M::Batch,
    replicas: Option<crate::strategies::ddp::ReplicaBatches<M::Batch>>,
    batch_idx: usize,
    is_last: bool,
    mut window: Option<&mut AccumulationWindow>,
) -> Result<Option<StepOutput<M::TrainExtra>>, Error>
where
    M: TrainingStep,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let mut output = None;
    let optimizer = run.optimizer.as_mut().expect("configured before the loop");
    let epoch = run.core.state.current_epoch;
    if let Some(window) = window.as_deref_mut()
        && !window.steps
    {
        // Accumulating: Lightning runs the closure without `optimizer_step`, and steps nothing.
        let mut body = TrainingStepClosure {
            batch: Some(batch),
            batch_idx,
            callbacks: run.callbacks.as_mut_slice(),
            clip: run.cfg.gradient_clip,
            output: &mut output,
            window: Some(window),
            replicas,
            process_group: run.cfg.process_group.clone(),
        };
        OptimizerClosure::new(&mut body, &mut run.core).run(&mut run.module, optimizer);
        let deferred = run.core.take_error();
        run.after_hook(deferred)?;
        return Ok(output);
    }
    let result = {
        let mut body = TrainingStepClosure {
            batch: Some(batch),
            batch_idx,
            callbacks: run.callbacks.as_mut_slice(),
            clip: run.cfg.gradient_clip,
            output: &mut output,
            window,
            replicas,
            process_group: run.cfg.process_group.clone(),
        };
        let closure = OptimizerClosure::new(&mut body, &mut run.core);
        let _span =
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "optimizer_step", by = "module",
            overridden = M::OVERRIDDEN.contains(Hook::OptimizerStep))
            .entered();
        run.module.optimizer_step(epoch, batch_idx, optimizer, closure)
    };
    // Lightning counts every `optimizer_step` call that completes, also when `training_step`
    // returned no loss; one that failed is not counted.
    let outcome = run.core.take_error().and(result);
    // `16-mixed` updates its loss scale. A step it skipped for inf/NaN gradients still counts,
    // as Lightning counts every `optimizer_step` call that completes.
    run.core.precision.finish_step();
    if outcome.is_ok() {
        run.core.state.global_step += 1;
    }
    run.after_hook(outcome)?;
    // Lightning steps step-interval schedulers after every optimizer step and epoch-interval
    // ones on the last batch of the epoch, before `on_train_batch_end`.
    step_scheduler(run, Interval::Step, false)?;
    if is_last {
        step_scheduler(run, Interval::Epoch, false)?;
    }
    Ok(output)
}

/// Lightning's `_update_learning_rates`: runs `lr_scheduler_step` when the optimizer's
/// scheduler steps every `interval`, is a plateau scheduler or not as asked (plateau schedulers
/// step after validation, the others right after the optimizer step), and its `frequency` is
/// due. A plateau scheduler gets its monitored metric, read only then; a missing one is an
/// error naming it when `strict`, else a warning and no step. Manual optimization steps its
/// schedulers itself.
fn step_scheduler<M, D>(run: &mut Run<'_, M, D>, interval: Interval, plateau: bool) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let Some(scheduler) = run.optimizer.as_ref().and_then(Optimizer::scheduler) else {
        return Ok(());
    };
    if M::OPTIMIZATION == Optimization::Manual
        || scheduler.interval() != interval
        || scheduler.reduces_on_plateau() != plateau
    {
        return Ok(());
    }
    let index = match interval {
        Interval::Step => run.core.state.batch_idx,
        Interval::Epoch => run.core.state.current_epoch,
    };
    if !(index + 1).is_multiple_of(scheduler.frequency()) {
        return Ok(());
    }
    let metric = match scheduler.monitor() {
        None => None,
        Some(monitor) => {
            let metrics = run.core.metrics.callback_metrics();
            match metrics.get(monitor) {
                Some(value) => Some(*value),
                None => {
                    let message = format!(
                        "the ReduceLrOnPlateau scheduler monitors `{monitor}`, which is not available; available \
                         metrics: {}. Log it, monitor one of these (`LrSchedulerConfig::reduce_on_plateau(.., name)`), \
                         or set `.strict(false)` to skip the step while it is missing",
                        metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                    if scheduler.strict() {
                        return Err(Error::Hook {
                            hook: "lr_scheduler_step",
                            message,
                        });
                    }
                    tracing::warn!(target: "burn_lightning", "{message}");
                    return Ok(());
                }
            }
        }
    };
    // Lightning (`_skip_next_scheduler_step`): no scheduler step after an optimizer step that
    // `16-mixed` skipped.
    if run.core.precision.skipped_last_step() {
        return Ok(());
    }
    if let Some(scheduler) = run.optimizer.as_mut().and_then(Optimizer::scheduler_mut) {
        let output = dispatch::lr_scheduler_step(
            &mut run.module,
            run.callbacks,
            &mut run.core,
            &mut (),
            scheduler,
            metric,
        );
        run.after_hook(output)?;
        run.sync_learning_rates();
    }
    Ok(())
}

/// `training_step` alone, without backward, optimizer step or schedulers: an epoch a callback
/// made forward-only (`StochasticWeightAveraging`'s BatchNorm statistics pass, as Lightning's
/// `_skip_backward` with accumulation past the epoch's end). `global_step` does not advance.
#[cold]
fn forward_only_step<M, D>(
    run: &mut Run<'_, M, D>,
    batch: M::Batch,
    batch_idx: usize,
) -> Result<Option<StepOutput<M::TrainExtra>>, Error>
where
    M: TrainingStep,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let output = {
        let mut cx = StepContext::new(&mut run.core, Hook::TrainingStep);
        if let Some(optimizer) = run.optimizer.as_ref() {
            cx = cx.reading(optimizer);
        }
        let _span =
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "training_step", by = "module")
                .entered();
        run.module.training_step(batch, batch_idx, &mut cx)
    };
    let deferred = run.core.take_error();
    let output = run.after_hook(deferred.and(output))?;
    Ok(output.map(|out| StepOutput {
        loss: out.loss.detach(),
        extra: out.extra,
    }))
}

fn manual_step<M, D>(
    run: &mut Run<'_, M, D>,
    batch: M::Batch,
    batch_idx: usize,
) -> Result<Option<StepOutput<M::TrainExtra>>, Error>
where
    M: TrainingStep,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let optimizer = run.optimizer.as_mut().expect("configured before the loop");
    let callbacks: &mut dyn Any = run.callbacks;
    let parts = ManualParts {
        optimizer,
        more: &mut run.more_optimizers,
        callbacks,
        toggled: None,
    };
    let output = {
        let mut cx = StepContext::manual(&mut run.core, Hook::TrainingStep, parts);
        let _span =
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "training_step", by = "module")
                .entered();
        run.module.training_step(batch, batch_idx, &mut cx)
    };
    let deferred = run.core.take_error();
    let output = run.after_hook(deferred.and(output))?;
    Ok(output.map(|out| StepOutput {
        loss: out.loss.detach(),
        extra: out.extra,
    }))
}
