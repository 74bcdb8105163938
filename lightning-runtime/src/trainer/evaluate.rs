//! The evaluation loops: validation (inside fit and on its own), test and predict (sections 1.3
//! to 1.5 of the spec). They run on the module's evaluation copy (`Module::valid`: no autodiff
//! graph, training flags off).

use super::Trainer;
use super::batches::Batches;
use super::run::{LoaderKind, Run};
use crate::Error;
use crate::context::{HookContext, RunningStage, StepContext, TrainerFn};
use crate::data::{DataModule, Loader, Stage};
use crate::hooks::{Hook, LightningModule, PredictStep, dispatch};
use crate::logging::{LoopKind, Metrics};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum EvalKind {
    Validation,
    Test,
}

/// `Trainer::validate` and `Trainer::test`.
pub(crate) fn evaluate<M, D>(trainer: &mut Trainer<M>, model: &M, data: D, kind: EvalKind) -> Result<Metrics, Error>
where
    M: LightningModule,
    D: DataModule<M::Batch>,
{
    let (function, stage, loader_kind, limit, running) = match kind {
        EvalKind::Validation => (
            TrainerFn::Validating,
            Stage::Validate,
            LoaderKind::Val,
            trainer.config.limit_val_batches,
            RunningStage::Validating,
        ),
        EvalKind::Test => (
            TrainerFn::Testing,
            Stage::Test,
            LoaderKind::Test,
            trainer.config.limit_test_batches,
            RunningStage::Testing,
        ),
    };
    let module = model.valid().fork(&trainer.config.device.clone().without_autodiff());
    let mut run = Run::new(&trainer.config, &mut trainer.callbacks, module, data, function, stage);
    let result = (|| {
        run.setup()?;
        if !limit.is_off() {
            let device = run.eval_device.clone();
            let loader = run.required_loader(loader_kind, &device)?;
            run_evaluation(&mut run, kind, &loader, limit, None, running)?;
        }
        run.teardown()
    })();
    if let Err(e) = &result {
        run.fail(e);
    }
    trainer.callback_metrics = run.core.metrics.callback_metrics().into();
    result?;
    Ok(run.core.metrics.epoch_metrics(match kind {
        EvalKind::Validation => LoopKind::Validation,
        EvalKind::Test => LoopKind::Test,
    }))
}

/// One validation or test run over `loader`, at most `limit` batches and, if given, `cap`
/// batches (the sanity check's). Inside fit the module is switched to evaluation and back to
/// training around it.
pub(crate) fn run_evaluation<M, D>(
    run: &mut Run<'_, M, D>,
    kind: EvalKind,
    loader: &Loader<M::Batch>,
    limit: super::Limit,
    cap: Option<usize>,
    running: RunningStage,
) -> Result<(), Error>
where
    M: LightningModule,
    D: DataModule<M::Batch>,
{
    let in_fit = run.core.state.function == TrainerFn::Fitting;
    let previous_stage = run.core.state.stage;
    let previous_idx = run.core.state.batch_idx;
    if in_fit {
        run.module = run.module.valid();
    }
    let device = run.eval_device.clone();
    run.core.state.stage = running;
    run.core.state.device = device.clone();
    let loop_kind = LoopKind::of(running);
    let validation = kind == EvalKind::Validation;
    let core = &mut run.core;
    let module = &mut run.module;
    if validation {
        dispatch::on_validation_model_eval(module, core);
    } else {
        dispatch::on_test_model_eval(module, core);
    }
    core.metrics.start_epoch(loop_kind);
    if validation {
        dispatch::on_validation_start(module, run.callbacks, core);
        dispatch::on_validation_epoch_start(module, run.callbacks, core);
    } else {
        dispatch::on_test_start(module, run.callbacks, core);
        dispatch::on_test_epoch_start(module, run.callbacks, core);
    }
    run.check()?;

    let (name, flag) = if validation {
        ("val_dataloader", "limit_val_batches")
    } else {
        ("test_dataloader", "limit_test_batches")
    };
    let end_hook = if validation {
        Hook::OnValidationBatchEnd
    } else {
        Hook::OnTestBatchEnd
    };
    let mut batches = Batches::new(name, flag, loader, limit)?.capped(cap);
    let mut batch_idx = 0;
    while let Some(next) = batches.next_batch()? {
        run.core.state.batch_idx = batch_idx;
        run.core.batch_size = next.size;
        let batch = run.transfer(next.batch, &device);
        let kept = run.batch_end_needs_batch(end_hook).then(|| batch.clone());
        let core = &mut run.core;
        let module = &mut run.module;
        if validation {
            dispatch::on_validation_batch_start(module, run.callbacks, core, &batch, batch_idx);
            let output = {
                let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "validation_step", by = "module").entered();
                module.validation_step(batch, batch_idx, &mut StepContext::new(core, Hook::ValidationStep))
            };
            if let (Some(output), Some(batch)) = (&output, &kept) {
                dispatch::on_validation_batch_end(module, run.callbacks, core, output, batch, batch_idx);
            }
        } else {
            dispatch::on_test_batch_start(module, run.callbacks, core, &batch, batch_idx);
            let output = {
                let _span =
                    tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "test_step", by = "module")
                        .entered();
                module.test_step(batch, batch_idx, &mut StepContext::new(core, Hook::TestStep))
            };
            if let (Some(output), Some(batch)) = (&output, &kept) {
                dispatch::on_test_batch_end(module, run.callbacks, core, output, batch, batch_idx);
            }
        }
        run.check()?;
        batch_idx += 1;
    }

    let core = &mut run.core;
    let module = &mut run.module;
    // Epoch values are reduced once the epoch's last batch is in, before the epoch-end hooks
    // (which may read them, and may log more).
    core.metrics.end_epoch(loop_kind);
    if validation {
        dispatch::on_validation_epoch_end(module, run.callbacks, core);
        dispatch::on_validation_end(module, run.callbacks, core);
    } else {
        dispatch::on_test_epoch_end(module, run.callbacks, core);
        dispatch::on_test_end(module, run.callbacks, core);
    }
    run.save_requested_checkpoints()?;
    run.check()?;

    if in_fit {
        replace_with::replace_with_or_abort(&mut run.module, M::train);
        run.core.state.device = run.train_device.clone();
    }
    // Lightning calls `on_*_model_train` only when the module implements it.
    if validation && M::OVERRIDDEN.contains(Hook::OnValidationModelTrain) {
        dispatch::on_validation_model_train(&mut run.module, &mut run.core);
    }
    if !validation && M::OVERRIDDEN.contains(Hook::OnTestModelTrain) {
        dispatch::on_test_model_train(&mut run.module, &mut run.core);
    }
    run.core.state.stage = previous_stage;
    run.core.state.batch_idx = previous_idx;
    run.check()
}

/// `Trainer::predict`.
pub(crate) fn predict<M, D>(trainer: &mut Trainer<M>, model: &M, data: D) -> Result<Vec<M::Prediction>, Error>
where
    M: PredictStep,
    D: DataModule<M::Batch>,
{
    let limit = trainer.config.limit_predict_batches;
    let module = model.valid().fork(&trainer.config.device.clone().without_autodiff());
    let mut run = Run::new(
        &trainer.config,
        &mut trainer.callbacks,
        module,
        data,
        TrainerFn::Predicting,
        Stage::Predict,
    );
    let mut predictions = Vec::new();
    let result = (|| {
        run.setup()?;
        if !limit.is_off() {
            let device = run.eval_device.clone();
            let loader = run.required_loader(LoaderKind::Predict, &device)?;
            dispatch::on_predict_model_eval(&mut run.module, &mut run.core);
            dispatch::on_predict_start(&mut run.module, run.callbacks, &mut run.core);
            dispatch::on_predict_epoch_start(&mut run.module, run.callbacks, &mut run.core);
            run.check()?;
            let mut batches = Batches::new("predict_dataloader", "limit_predict_batches", &loader, limit)?;
            let mut batch_idx = 0;
            while let Some(next) = batches.next_batch()? {
                run.core.state.batch_idx = batch_idx;
                run.core.batch_size = next.size;
                let batch = run.transfer(next.batch, &device);
                let kept = run
                    .batch_end_needs_batch(Hook::OnPredictBatchEnd)
                    .then(|| batch.clone());
                dispatch::on_predict_batch_start(&mut run.module, run.callbacks, &mut run.core, &batch, batch_idx);
                let prediction = {
                    let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "predict_step", by = "module").entered();
                    run.module.predict_step(
                        batch,
                        batch_idx,
                        &mut HookContext::new(&mut run.core, Hook::PredictStep),
                    )
                };
                if let Some(prediction) = prediction {
                    if let Some(batch) = &kept {
                        dispatch::on_predict_batch_end(
                            &mut run.module,
                            run.callbacks,
                            &mut run.core,
                            &prediction,
                            batch,
                            batch_idx,
                        );
                    }
                    predictions.push(prediction);
                }
                run.check()?;
                batch_idx += 1;
            }
            dispatch::on_predict_epoch_end(&mut run.module, run.callbacks, &mut run.core);
            dispatch::on_predict_end(&mut run.module, run.callbacks, &mut run.core);
        }
        run.teardown()
    })();
    if let Err(e) = &result {
        run.fail(e);
    }
    result.map(|()| predictions)
}
