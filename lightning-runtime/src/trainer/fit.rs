//! `Trainer::fit`: Lightning's fit loop (section 1.1 of the spec), with automatic or manual
//! optimization chosen at compile time by the module's `OPTIMIZATION` constant.

use super::batches::Batches;
use super::evaluate::{EvalKind, run_evaluation};
use super::run::{LoaderKind, Run};
use super::{Trainer, ValCheckInterval};
use crate::Error;
use crate::context::{ManualParts, RunningStage, StepContext, TrainerFn};
use crate::data::{DataModule, Loader, Stage};
use crate::hooks::{
    BatchControl, ConfigureOptimizers, Hook, LightningModule, Optimization, StepOutput, TrainingStep, dispatch,
};
use crate::logging::LoopKind;
use crate::optim::{Interval, OptimizerClosure};
use std::any::Any;

pub(crate) fn fit<M, D>(trainer: &mut Trainer<M>, model: M, data: D) -> Result<M, Error>
where
    M: TrainingStep + ConfigureOptimizers,
    D: DataModule<M::Batch>,
{
    let mut run = Run::new(
        &trainer.config,
        &mut trainer.callbacks,
        model,
        data,
        TrainerFn::Fitting,
        Stage::Fit,
    );
    // The module trains on the autodiff device; parameters not yet initialized are initialized
    // there, from the seeded generator.
    run.module = run.module.fork(&run.train_device).train();
    let result = fit_loop(&mut run);
    // Checkpoints still being written are part of the fit.
    let written = run.finish_checkpoints();
    let result = result.and(written);
    if let Err(e) = &result {
        run.fail(e);
    }
    trainer.callback_metrics = run.core.metrics.callback_metrics().into();
    trainer.log_dir = run.core.state.log_dir.clone();
    result.map(|()| run.module)
}

fn fit_loop<M, D>(run: &mut Run<'_, M, D>) -> Result<(), Error>
where
    M: TrainingStep + ConfigureOptimizers,
    D: DataModule<M::Batch>,
{
    run.setup()?;
    let config = dispatch::configure_optimizers(&mut run.module, &mut run.core).ok_or(Error::Hook {
        hook: "configure_optimizers",
        message: "it returned no optimizer".into(),
    })?;
    run.optimizer = Some(config.build());
    run.create_log_dir()?;
    dispatch::on_fit_start(&mut run.module, run.callbacks, &mut run.core);
    run.check()?;

    let validates = M::OVERRIDDEN.contains(Hook::ValidationStep) && !run.cfg.limit_val_batches.is_off();
    let mut val_loader: Option<Loader<M::Batch>> = None;
    let mut val_loader_requested = false;

    if validates && run.cfg.num_sanity_val_steps > 0 {
        dispatch::on_sanity_check_start(&mut run.module, run.callbacks, &mut run.core);
        let device = run.eval_device.clone();
        val_loader = run.loader(LoaderKind::Val, &device);
        val_loader_requested = true;
        if let Some(loader) = &val_loader {
            let sanity_steps = Some(run.cfg.num_sanity_val_steps);
            run_evaluation(
                run,
                EvalKind::Validation,
                loader,
                run.cfg.limit_val_batches,
                sanity_steps,
                RunningStage::SanityChecking,
            )?;
        }
        dispatch::on_sanity_check_end(&mut run.module, run.callbacks, &mut run.core);
        // Lightning forgets what the sanity check logged.
        run.core.metrics.forget(LoopKind::Validation);
        run.check()?;
    }

    let train_device = run.train_device.clone();
    let train_loader = if run.cfg.limit_train_batches.is_off() {
        None
    } else {
        Some(run.required_loader(LoaderKind::Train, &train_device)?)
    };
    // What `on_train_start` logs is reduced with the first epoch.
    run.core.metrics.start_epoch(LoopKind::Train);
    dispatch::on_train_start(&mut run.module, run.callbacks, &mut run.core);
    run.check()?;

    loop {
        let state = &run.core.state;
        if run.cfg.max_epochs.is_some_and(|max| state.current_epoch >= max)
            || run.cfg.max_steps.is_some_and(|max| state.global_step >= max)
        {
            break;
        }
        let Some(train_loader) = &train_loader else { break };
        dispatch::on_train_epoch_start(&mut run.module, run.callbacks, &mut run.core);
        run.check()?;

        let validate_this_epoch = validates
            && run
                .cfg
                .check_val_every_n_epoch
                .is_none_or(|n| (run.core.state.current_epoch + 1).is_multiple_of(n));
        let mut batches = Batches::new(
            "train_dataloader",
            "limit_train_batches",
            train_loader,
            run.cfg.limit_train_batches,
        )?;
        let mut batch_idx = 0;
        let mut val_every: Option<usize> = None;
        while let Some(next) = batches.next_batch()? {
            run.core.state.batch_idx = batch_idx;
            run.core.batch_size = next.size;
            run.core.state.num_training_batches = batches.planned();
            if val_every.is_none() && validate_this_epoch {
                val_every = Some(val_check_batches(run, batches.planned())?);
            }
            let control = train_batch(run, next.batch, batch_idx, next.is_last)?;
            if control == BatchControl::StopEpoch {
                break;
            }
            batch_idx += 1;
            let steps_done = run.cfg.max_steps.is_some_and(|max| run.core.state.global_step >= max);
            let stop_requested = run.core.state.should_stop && can_stop(run);
            let val_check_batch = val_every.is_some_and(|every| {
                let iteration = if run.cfg.check_val_every_n_epoch.is_none() {
                    run.core.state.global_step
                } else {
                    batch_idx
                };
                iteration.is_multiple_of(every)
            });
            if validate_this_epoch && (val_check_batch || stop_requested) {
                if !val_loader_requested {
                    let device = run.eval_device.clone();
                    val_loader = run.loader(LoaderKind::Val, &device);
                    val_loader_requested = true;
                }
                if let Some(loader) = val_loader.clone() {
                    dispatch::on_validation_model_zero_grad(&mut run.module, &mut run.core);
                    run_evaluation(
                        run,
                        EvalKind::Validation,
                        &loader,
                        run.cfg.limit_val_batches,
                        None,
                        RunningStage::Validating,
                    )?;
                }
            }
            if steps_done || stop_requested {
                break;
            }
        }

        run.core.metrics.end_epoch(LoopKind::Train);
        dispatch::on_train_epoch_end(&mut run.module, run.callbacks, &mut run.core);
        run.save_requested_checkpoints()?;
        run.check()?;
        run.core.state.current_epoch += 1;
        run.core.metrics.start_epoch(LoopKind::Train);
        // A stop request waits for `min_epochs` and `min_steps`, then takes effect.
        if run.core.state.should_stop && can_stop(run) {
            break;
        }
    }

    run.finish_checkpoints()?;
    dispatch::on_train_end(&mut run.module, run.callbacks, &mut run.core);
    dispatch::on_fit_end(&mut run.module, run.callbacks, &mut run.core);
    run.check()?;
    run.teardown()
}

/// Whether `min_epochs` and `min_steps` allow stopping now. `current_epoch` counts the epochs
/// completed (the running one is not), as Lightning's `epoch_progress.current.processed`.
fn can_stop<M: LightningModule, D>(run: &Run<'_, M, D>) -> bool {
    run.core.state.current_epoch >= run.cfg.min_epochs && run.core.state.global_step >= run.cfg.min_steps
}

/// Training batches between validations, from `val_check_interval`.
fn val_check_batches<M: LightningModule, D>(run: &Run<'_, M, D>, planned: Option<usize>) -> Result<usize, Error> {
    match run.cfg.val_check_interval {
        ValCheckInterval::Fraction(f) => Ok(planned.map_or(usize::MAX, |n| ((n as f64 * f) as usize).max(1))),
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
    batch_idx: usize,
    is_last: bool,
) -> Result<BatchControl, Error>
where
    M: TrainingStep,
    D: DataModule<M::Batch>,
{
    let device = run.train_device.clone();
    let batch = run.transfer(batch, &device);
    let control = dispatch::on_train_batch_start(&mut run.module, run.callbacks, &mut run.core, &batch, batch_idx);
    run.check()?;
    if control == BatchControl::StopEpoch {
        return Ok(control);
    }
    let kept = run.batch_end_needs_batch(Hook::OnTrainBatchEnd).then(|| batch.clone());
    let output = match M::OPTIMIZATION {
        Optimization::Automatic => automatic_step(run, batch, batch_idx, is_last),
        Optimization::Manual => manual_step(run, batch, batch_idx),
    };
    run.check()?;
    if let Some(batch) = &kept {
        dispatch::on_train_batch_end(
            &mut run.module,
            run.callbacks,
            &mut run.core,
            output.as_ref(),
            batch,
            batch_idx,
        );
        run.save_requested_checkpoints()?;
        run.check()?;
    }
    Ok(control)
}

fn automatic_step<M, D>(
    run: &mut Run<'_, M, D>,
    batch: M::Batch,
    batch_idx: usize,
    is_last: bool,
) -> Option<StepOutput<M::TrainExtra>>
where
    M: TrainingStep,
    D: DataModule<M::Batch>,
{
    let mut output = None;
    let optimizer = run.optimizer.as_mut().expect("configured before the loop");
    let steps_before = optimizer.steps();
    let epoch = run.core.state.current_epoch;
    {
        let closure = OptimizerClosure {
            batch: Some(batch),
            batch_idx,
            core: &mut run.core,
            callbacks: run.callbacks.as_mut_slice(),
            clip: run.cfg.gradient_clip,
            output: &mut output,
            ran: false,
        };
        let _span =
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "optimizer_step", by = "module",
            overridden = M::OVERRIDDEN.contains(Hook::OptimizerStep))
            .entered();
        run.module.optimizer_step(epoch, batch_idx, optimizer, closure);
    }
    let stepped = optimizer.steps() - steps_before;
    run.core.state.global_step += stepped;
    // Lightning steps step-interval schedulers after every optimizer step and epoch-interval
    // ones on the last batch of the epoch, before `on_train_batch_end`.
    let interval = optimizer.scheduler_interval();
    let due = match interval {
        Some(Interval::Step) => stepped > 0,
        Some(Interval::Epoch) => is_last,
        None => false,
    };
    if due && let Some(scheduler) = optimizer.scheduler_mut() {
        dispatch::lr_scheduler_step(&mut run.module, &mut run.core, scheduler);
    }
    output
}

fn manual_step<M, D>(run: &mut Run<'_, M, D>, batch: M::Batch, batch_idx: usize) -> Option<StepOutput<M::TrainExtra>>
where
    M: TrainingStep,
    D: DataModule<M::Batch>,
{
    let optimizer = run.optimizer.as_mut().expect("configured before the loop");
    let callbacks: &mut dyn Any = run.callbacks;
    let mut cx = StepContext::manual(&mut run.core, Hook::TrainingStep, ManualParts { optimizer, callbacks });
    let _span =
        tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "training_step", by = "module").entered();
    run.module
        .training_step(batch, batch_idx, &mut cx)
        .map(|out| StepOutput {
            loss: out.loss.detach(),
            extra: out.extra,
        })
}
