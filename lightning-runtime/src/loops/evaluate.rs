//! The evaluation loops: validation (inside fit and on its own), test and predict (sections 1.3
//! to 1.5 of the spec). They run on the module's evaluation copy (`Module::valid`: no autodiff
//! graph, training flags off); what hooks set on the module reaches the caller's module.

use super::batches::Batches;
use super::run::{PredictBatches, Run, TestBatches, TransferStage, ValBatches, hook};
use super::{Config, Session};
use crate::callbacks::PredictionWriter;
use crate::core::datamodule::{DataModule, Loader};
use crate::core::logging::Metrics;
use crate::core::state::{Loop, RunningStage, TrainerFn};
use crate::hooks::context::{HookContext, StepContext};
use crate::hooks::{Callbacks, Hook, LightningModule, PredictStep};
use crate::{Device, Error};

/// Runs `body` on an evaluation copy of `model` for `function`, then hands the copy, with what
/// its hooks changed, back into `model` on `model`'s device (in training mode again when it was
/// on an autodiff device, as Lightning restores the mode it found).
fn on_eval_copy<M, D, T>(
    cfg: &Config,
    session: &mut Session<M>,
    model: &mut M,
    data: D,
    function: TrainerFn,
    body: impl FnOnce(&mut Run<'_, M, D>) -> Result<T, Error>,
) -> Result<T, Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let profiler = crate::profiler::Session::start(cfg.profiler, std::any::type_name::<M>(), cfg.strategy_name());
    let home: Device = model.devices().into_iter().next().unwrap_or_default();
    let eval_device = cfg.device.clone().without_autodiff();
    let module = crate::optim::precision::convert_module(cfg.precision, model.valid().fork(&eval_device));
    let mut run = Run::new(
        cfg,
        &mut session.callbacks,
        &mut session.loggers,
        module,
        data,
        function,
        &session.progress,
    );
    run.report = std::mem::take(&mut session.report);
    let records_before = run.report.records();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run.setup()
            .and_then(|()| body(&mut run))
            .and_then(|output| run.teardown().map(|()| output))
    }));
    let result = match outcome {
        Ok(result) => result,
        Err(panic) => {
            let error = Error::panic(panic.as_ref());
            run.fail(&error);
            let _ = crate::profiler::finish(profiler, function.stage().as_str(), run.core.state.log_dir.as_deref());
            let _ = run.finish_report(Err::<(), _>(error), records_before);
            session.report = std::mem::take(&mut run.report);
            std::panic::resume_unwind(panic);
        }
    };
    if let Err(e) = &result {
        run.fail(e);
    }
    // Lightning's `profiler.describe()`, also for a failed run.
    let described = crate::profiler::finish(profiler, function.stage().as_str(), run.core.state.log_dir.as_deref());
    let result = result.and_then(|output| described.map(|()| output));
    let result = run.finish_report(result, records_before);
    session.report = std::mem::take(&mut run.report);
    session.callback_metrics = run.core.metrics.callback_metrics().into();
    session.progress_bar_metrics = run.core.metrics.progress_bar_metrics().into();
    session.logged_metrics = std::mem::take(&mut run.logged).into();
    let evaluated = run.module.fork(&home);
    *model = if home.is_autodiff() {
        evaluated.train()
    } else {
        evaluated
    };
    result
}

/// `Trainer::validate` and `Trainer::test`: the results of each dataloader (none when the
/// loop is turned off, as Lightning returns `[]`).
pub(crate) fn evaluate<M, D>(
    cfg: &Config,
    session: &mut Session<M>,
    model: &mut M,
    data: D,
    kind: Loop,
) -> Result<Vec<Metrics>, Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let (function, limit, running) = match kind {
        Loop::Validation => (TrainerFn::Validating, cfg.limit_val_batches, RunningStage::Validating),
        _ => (TrainerFn::Testing, cfg.limit_test_batches, RunningStage::Testing),
    };
    on_eval_copy(cfg, session, model, data, function, |run| {
        if limit.is_off() {
            return Ok(Vec::new());
        }
        let device = run.eval_device.clone();
        if kind == Loop::Validation {
            let loaders = run.val_loaders(&device)?;
            let loaders = run.required(kind, loaders)?;
            run_evaluation::<_, _, Validating>(run, kind, &loaders, limit, None, running)
        } else {
            let loaders = run.test_loaders(&device)?;
            let loaders = run.required(kind, loaders)?;
            run_evaluation::<_, _, Testing>(run, kind, &loaders, limit, None, running)
        }
    })
}

/// One validation or test run over `loaders`, one after the other (Lightning's "sequential"
/// mode), at most `limit` batches and, if given, `cap` batches (the sanity check's) of each.
/// Inside fit the module is switched to evaluation and back to training around it. Returns the
/// epoch results of each dataloader (Lightning's `_logged_outputs`).
pub(crate) fn run_evaluation<M, D, S>(
    run: &mut Run<'_, M, D>,
    kind: Loop,
    loaders: &[Loader<S::Batch>],
    limit: super::Limit,
    cap: Option<usize>,
    running: RunningStage,
) -> Result<Vec<Metrics>, Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    S: EvaluationStage<M>,
{
    let _span =
        tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = run_phase(kind, running)).entered();
    let in_fit = run.core.state.function == TrainerFn::Fitting;
    let previous_stage = run.core.state.stage;
    let previous_idx = run.core.state.batch_idx;
    if in_fit {
        run.module = run.module.valid();
    }
    let device = run.eval_device.clone();
    run.core.state.stage = running;
    run.core.state.device = device.clone();
    let validation = kind == Loop::Validation;
    if validation {
        hook!(run.on_validation_model_eval());
    } else {
        hook!(run.on_test_model_eval());
    }
    run.core.metrics.start_epoch(kind);
    let started = run.core.metrics.clock();
    if validation {
        hook!(run.on_validation_start());
        hook!(run.on_validation_epoch_start());
    } else {
        hook!(run.on_test_start());
        hook!(run.on_test_epoch_start());
    }

    let several = loaders.len() > 1;
    run.core.state.num_dataloaders = loaders.len();
    for (dataloader_idx, loader) in loaders.iter().enumerate() {
        run.core.state.dataloader_idx = dataloader_idx;
        // Lightning's `_ResultCollection.dataloader_idx`: set with several dataloaders only.
        run.core.metrics.set_dataloader(several.then_some(dataloader_idx));
        // Limits, and the sanity check's cap, count the batches of each dataloader.
        let mut batches = Batches::new(kind, loader, limit)?.capped(cap);
        let mut batch_idx = 0;
        while let Some(next) = batches.next_batch()? {
            let _span =
                tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = batch_phase(kind)).entered();
            run.core.state.batch_idx = batch_idx;
            run.core.batch_size = next.size;
            let batch_started = run.core.metrics.clock();
            run.core.state.set_planned_batches(running, batches.planned());
            let batch = run.transfer::<S::Transfer>(next.batch, &device, dataloader_idx)?;
            S::run_batch(run, batch, batch_idx, dataloader_idx)?;
            if running != RunningStage::SanityChecking {
                log_eval_step_values(run, kind, dataloader_idx, batch_started)?;
            }
            batch_idx += 1;
        }
    }
    // What the epoch-end hooks log belongs to no dataloader (Lightning's `epoch_end_reached`).
    run.core.metrics.set_dataloader(None);
    run.core.state.dataloader_idx = 0;

    // Epoch values are reduced once the epoch's last batch is in, before the epoch-end hooks
    // (which may read them, and may log more).
    run.core.metrics.end_epoch(kind);
    // The loggers get the epoch values after the epoch-end hook and before the end hook, at
    // the current training step (Lightning's `update_eval_epoch_metrics`); not the sanity
    // check's.
    if validation {
        hook!(run.on_validation_epoch_end());
    } else {
        hook!(run.on_test_epoch_end());
    }
    // Each dataloader's results: what it logged, with what the epoch-end hooks logged.
    let results: Vec<Metrics> = if several {
        (0..loaders.len())
            .map(|idx| run.core.metrics.epoch_metrics_of(kind, Some(idx)))
            .collect()
    } else {
        vec![run.core.metrics.epoch_metrics(kind)]
    };
    if running != RunningStage::SanityChecking {
        let values = run.core.metrics.logger_epoch_metrics(kind, started);
        // Lightning's `update_eval_epoch_metrics`: in `logged_metrics` also without a logger.
        run.logged
            .extend(values.iter().map(|(name, value)| (name.clone(), *value)));
        let step = run.batches_that_stepped;
        run.log_metrics(values, step)?;
    }
    if validation {
        hook!(run.on_validation_end());
    } else {
        hook!(run.on_test_end());
    }
    // Lightning's `reset_results` at the end of an evaluation run: the metric objects it
    // logged start the next one empty.
    run.core.metrics.reset_objects(kind);

    if in_fit {
        // A clone of the handles, not of the weights: the evaluation copy is dropped here.
        run.module = run.module.clone().train();
        run.core.state.device = run.train_device.clone();
    }
    // Lightning calls `on_*_model_train` only when the module implements it.
    if validation && M::OVERRIDDEN.contains(Hook::OnValidationModelTrain) {
        hook!(run.on_validation_model_train());
    }
    if !validation && M::OVERRIDDEN.contains(Hook::OnTestModelTrain) {
        hook!(run.on_test_model_train());
    }
    // Lightning's results table (`verbose`), below the progress bars, on rank zero.
    let rank_zero = run.cfg.process_group.as_ref().is_none_or(|group| group.rank == 0);
    if !in_fit && running != RunningStage::SanityChecking && rank_zero {
        let stage = if validation { "validate" } else { "test" };
        let table = crate::callbacks::progress::results_table(stage, &results, run.core.output.width());
        if !table.is_empty() {
            run.core.output.println(&table);
        }
    }
    run.core.state.stage = previous_stage;
    run.core.state.batch_idx = previous_idx;
    Ok(results)
}

/// Validation or test, for [`run_evaluation`]: the stage's batch type (the module's
/// `ValBatch` or `TestBatch`), and its batch hooks and step.
pub(crate) trait EvaluationStage<M: LightningModule> {
    type Batch: Clone + Send + 'static;
    /// The stage's batches, for the batch-transfer hooks.
    type Transfer: TransferStage<M, Batch = Self::Batch>;

    /// The batch-start hooks, the step and the batch-end hooks of one batch.
    fn run_batch<D>(
        run: &mut Run<'_, M, D>,
        batch: Self::Batch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<(), Error>
    where
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>;
}

/// The validation stage (in fit, its sanity check, and `Trainer::validate`).
pub(crate) struct Validating;

impl<M: LightningModule> EvaluationStage<M> for Validating {
    type Batch = M::ValBatch;
    type Transfer = ValBatches;

    fn run_batch<D>(
        run: &mut Run<'_, M, D>,
        batch: M::ValBatch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<(), Error>
    where
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let kept = run
            .batch_end_needs_batch(Hook::OnValidationBatchEnd)
            .then(|| batch.clone());
        hook!(run.on_validation_batch_start(&batch, batch_idx, dataloader_idx));
        let output = run.step("validation_step", |module, core| {
            module.validation_step(
                batch,
                batch_idx,
                dataloader_idx,
                &mut StepContext::new(core, Hook::ValidationStep),
            )
        })?;
        if let (Some(output), Some(batch)) = (&output, &kept) {
            hook!(run.on_validation_batch_end(output, batch, batch_idx, dataloader_idx));
        }
        Ok(())
    }
}

/// The test stage (`Trainer::test`).
pub(crate) struct Testing;

impl<M: LightningModule> EvaluationStage<M> for Testing {
    type Batch = M::TestBatch;
    type Transfer = TestBatches;

    fn run_batch<D>(
        run: &mut Run<'_, M, D>,
        batch: M::TestBatch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<(), Error>
    where
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let kept = run.batch_end_needs_batch(Hook::OnTestBatchEnd).then(|| batch.clone());
        hook!(run.on_test_batch_start(&batch, batch_idx, dataloader_idx));
        let output = run.step("test_step", |module, core| {
            module.test_step(
                batch,
                batch_idx,
                dataloader_idx,
                &mut StepContext::new(core, Hook::TestStep),
            )
        })?;
        if let (Some(output), Some(batch)) = (&output, &kept) {
            hook!(run.on_test_batch_end(output, batch, batch_idx, dataloader_idx));
        }
        Ok(())
    }
}

/// Sends what the batch logged on_step to the loggers, after every batch (Lightning's
/// `update_eval_step_metrics`: not gated by `log_every_n_steps`), at the count of the batches of
/// this loop and dataloader logged so far in the run, without `epoch`. Nothing is read from the device when the
/// batch logged nothing on_step (the default in evaluation hooks).
fn log_eval_step_values<M, D>(
    run: &mut Run<'_, M, D>,
    kind: Loop,
    dataloader_idx: usize,
    batch_started: u64,
) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let step = run.eval_batches_logged.entry((kind, dataloader_idx)).or_insert(0);
    let at = *step;
    *step += 1;
    let values = run.core.metrics.logger_step_metrics(kind, batch_started);
    run.send_to_loggers(values, at)
}

/// `Trainer::predict`: the predictions of every dataloader, in order, or none with
/// `return_predictions(false)`. [`PredictionWriter`]s among the callbacks get each batch's
/// prediction just before the `on_predict_batch_end` hooks, and the epoch's just before the
/// `on_predict_epoch_end` hooks.
pub(crate) fn predict<M, D>(
    cfg: &Config,
    session: &mut Session<M>,
    model: &mut M,
    data: D,
) -> Result<Vec<M::Prediction>, Error>
where
    M: PredictStep,
    D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
{
    let limit = cfg.limit_predict_batches;
    on_eval_copy(cfg, session, model, data, TrainerFn::Predicting, |run| {
        if limit.is_off() {
            return Ok(Vec::new());
        }
        let device = run.eval_device.clone();
        let loaders = run.predict_loaders(&device)?;
        let loaders = run.required(Loop::Predict, loaders)?;
        let _span = tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = "run_predict").entered();
        let writers: Vec<usize> = (0..run.callbacks.len())
            .filter(|&i| writer_at::<M>(run.callbacks, i).is_some())
            .collect();
        let interval = |i: usize| writer_at::<M>(run.callbacks, i).map(|w| w.interval());
        let on_batch = writers.iter().any(|&i| interval(i).is_some_and(|w| w.on_batch()));
        let on_epoch = writers.iter().any(|&i| interval(i).is_some_and(|w| w.on_epoch()));
        // As Lightning: an epoch writer needs every prediction until the epoch ends, whatever
        // `return_predictions` says.
        let keep = run.cfg.return_predictions || on_epoch;
        // Per dataloader: the predictions, and (for epoch writers) each batch's item positions.
        let mut predictions: Vec<Vec<M::Prediction>> = Vec::new();
        let mut batch_indices: Vec<Vec<Vec<usize>>> = Vec::new();
        hook!(run.on_predict_model_eval());
        hook!(run.on_predict_start());
        hook!(run.on_predict_epoch_start());
        run.core.state.num_dataloaders = loaders.len();
        for (dataloader_idx, loader) in loaders.iter().enumerate() {
            run.core.state.dataloader_idx = dataloader_idx;
            predictions.push(Vec::new());
            batch_indices.push(Vec::new());
            let mut batches = Batches::new(Loop::Predict, loader, limit)?;
            let mut batch_idx = 0;
            // Items this dataloader yielded so far: where the next batch starts.
            let mut position = 0;
            while let Some(next) = batches.next_batch()? {
                let _span =
                    tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = batch_phase(Loop::Predict))
                        .entered();
                run.core.state.batch_idx = batch_idx;
                run.core.batch_size = next.size;
                run.core.state.num_predict_batches = batches.planned();
                let indices: Vec<usize> = if writers.is_empty() {
                    Vec::new()
                } else {
                    (position..position + next.size).collect()
                };
                position += next.size;
                let batch = run.transfer::<PredictBatches>(next.batch, &device, dataloader_idx)?;
                let kept = (on_batch || run.batch_end_needs_batch(Hook::OnPredictBatchEnd)).then(|| batch.clone());
                hook!(run.on_predict_batch_start(&batch, batch_idx, dataloader_idx));
                let prediction = run.step("predict_step", |module, core| {
                    module.predict_step(
                        batch,
                        batch_idx,
                        dataloader_idx,
                        &mut HookContext::new(core, Hook::PredictStep),
                    )
                })?;
                // A step that returned nothing has no prediction to write or keep (Lightning
                // would keep its `None`).
                if let Some(prediction) = prediction {
                    if let Some(batch) = &kept {
                        if on_batch {
                            for &i in &writers {
                                if let Some(writer) = writer_at_mut::<M>(run.callbacks, i) {
                                    writer.write_batch(
                                        &run.module,
                                        &prediction,
                                        &indices,
                                        batch,
                                        batch_idx,
                                        dataloader_idx,
                                    )?;
                                }
                            }
                        }
                        hook!(run.on_predict_batch_end(&prediction, batch, batch_idx, dataloader_idx));
                    }
                    if keep {
                        predictions[dataloader_idx].push(prediction);
                        if on_epoch {
                            batch_indices[dataloader_idx].push(indices);
                        }
                    }
                }
                batch_idx += 1;
            }
        }
        run.core.state.dataloader_idx = 0;
        if on_epoch {
            for &i in &writers {
                if let Some(writer) = writer_at_mut::<M>(run.callbacks, i) {
                    writer.write_epoch(&run.module, &predictions, &batch_indices)?;
                }
            }
        }
        hook!(run.on_predict_epoch_end());
        hook!(run.on_predict_end());
        if !run.cfg.return_predictions {
            return Ok(Vec::new());
        }
        Ok(predictions.into_iter().flatten().collect())
    })
}

/// The callback at `index`, if it is a [`PredictionWriter`].
fn writer_at<M: LightningModule>(callbacks: &Callbacks<M>, index: usize) -> Option<&PredictionWriter<M>> {
    let callback: &dyn std::any::Any = &*callbacks[index];
    callback.downcast_ref()
}

/// The callback at `index`, if it is a [`PredictionWriter`], to write with.
fn writer_at_mut<M: LightningModule>(callbacks: &mut Callbacks<M>, index: usize) -> Option<&mut PredictionWriter<M>> {
    let callback: &mut dyn std::any::Any = &mut *callbacks[index];
    callback.downcast_mut()
}

/// The profiler's name of an evaluation run.
fn run_phase(kind: Loop, running: RunningStage) -> &'static str {
    match (kind, running) {
        (_, RunningStage::SanityChecking) => "run_sanity_check",
        (Loop::Validation, _) => "run_validation",
        (Loop::Predict, _) => "run_predict",
        _ => "run_test",
    }
}

/// The profiler's name of one batch of an evaluation loop.
fn batch_phase(kind: Loop) -> &'static str {
    match kind {
        Loop::Validation => "run_validation_batch",
        Loop::Predict => "run_predict_batch",
        _ => "run_test_batch",
    }
}
