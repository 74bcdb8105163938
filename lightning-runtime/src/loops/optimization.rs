//! Optimization as the hooks see it: the closure an automatic `optimizer_step` runs
//! (Lightning's: `training_step`, the zero-grad and backward hooks, `on_before_optimizer_step`,
//! clipping), `Optimizer::step`, and the calls of manual optimization on [`StepContext`].

use crate::context::{Core, StepContext};
use crate::hooks::{Callbacks, Hook, LightningModule, ManualOptimization, StepOutput, dispatch};
use crate::optim::{
    ConfiguredOptimizers, GradientClip, Gradients, IntoOptimizerConfig, OnlyOptimizer, Optimizer, OptimizerHandle,
};
use crate::{Callback, Error, Tensor};
use burn::module::Module;
use std::any::Any;

impl Optimizer {
    /// Runs `closure` (training step, backward, clipping) and updates `module` with the
    /// gradients it returns: what `optimizer_step` does by default, like torch's
    /// `optimizer.step(closure)`. A skipped batch (no loss) updates nothing.
    pub fn step<M: LightningModule>(&mut self, module: &mut M, closure: OptimizerClosure<'_, M>) {
        if let Some(grads) = closure.run(module, self) {
            self.apply(module, grads);
        }
    }
}

/// The work `optimizer_step` must run before updating parameters: `training_step`, the
/// zero-grad and backward hooks, `on_before_optimizer_step` and gradient clipping (Lightning's
/// optimizer closure). Run it with [`Optimizer::step`] or [`run`](Self::run).
pub struct OptimizerClosure<'a, M: LightningModule> {
    pub(crate) batch: Option<M::Batch>,
    pub(crate) batch_idx: usize,
    pub(crate) core: &'a mut Core,
    pub(crate) callbacks: &'a mut [Box<dyn Callback<M>>],
    pub(crate) clip: Option<GradientClip>,
    pub(crate) output: &'a mut Option<StepOutput<M::TrainExtra>>,
    pub(crate) ran: bool,
    /// The accumulation window this batch belongs to; `None` without accumulation.
    pub(crate) window: Option<&'a mut AccumulationWindow>,
    /// Data-parallel training: the other ranks' batches; `None` on one device.
    pub(crate) replicas: Option<crate::strategy::ReplicaBatches<M::Batch>>,
}

/// One window of `accumulate_grad_batches`: the batches whose gradients are summed before the
/// optimizer steps. Lives for one epoch of the fit loop; a window cut short by a stop is dropped
/// with it, as Lightning zeroes those gradients at the next window's start.
#[derive(Default)]
pub(crate) struct AccumulationWindow {
    /// The gradients of the window's earlier batches, summed (loss already divided).
    sum: Option<Gradients>,
    /// Batches of the window run so far.
    batches: usize,
    /// What each loss of the window is divided by: the window's length when the epoch's length
    /// is known, else the accumulation factor (corrected at the step, see `finish`).
    divisor: usize,
    /// Whether the current batch ends the window (the optimizer steps).
    pub steps: bool,
}

impl AccumulationWindow {
    /// Places batch `batch_idx` of the epoch in its window (Lightning's
    /// `_accumulated_batches_reached` / `_num_ready_batches_reached`): a window starts every
    /// `factor` batches and ends after `factor` batches or on the epoch's last one. `planned` is
    /// the epoch's number of batches when known.
    pub fn begin(&mut self, batch_idx: usize, factor: usize, planned: Option<usize>, is_last: bool) {
        if batch_idx.is_multiple_of(factor) {
            self.sum = None;
            self.batches = 0;
            // Lightning divides the last, shorter window by `factor` too (its issue #19987);
            // dividing by the window's own length gives the mean gradient, as every other window.
            self.divisor = planned.map_or(factor, |planned| planned.saturating_sub(batch_idx).clamp(1, factor));
        }
        self.steps = (batch_idx + 1).is_multiple_of(factor) || is_last;
    }

    fn first_batch(&self) -> bool {
        self.batches == 0
    }

    /// Ends the current batch: `grads` (this batch's, or none) plus the window's sum. Returns
    /// the sum when the optimizer steps now, else keeps it.
    fn finish<M: Module>(&mut self, module: &M, grads: Option<Gradients>) -> Option<Gradients> {
        self.batches += 1;
        let sum = match (grads, self.sum.take()) {
            (Some(mut grads), Some(sum)) => {
                grads.accumulate(module, sum);
                Some(grads)
            }
            (grads, sum) => grads.or(sum),
        };
        if !self.steps {
            self.sum = sum;
            return None;
        }
        // An epoch of unknown length ended the window early: the losses were divided by the
        // factor, not by the window's length.
        sum.map(|mut sum| {
            if self.batches != self.divisor {
                sum.scale(module, self.divisor as f64 / self.batches as f64);
            }
            sum
        })
    }
}

impl<M: LightningModule> OptimizerClosure<'_, M> {
    /// Runs the training step, the zero-grad hooks, backward (when `training_step` returned a
    /// loss), `on_before_optimizer_step` and gradient clipping, as Lightning's closure does; returns
    /// the gradients, or `None` when there is nothing to apply (no loss, or a hook failed: the
    /// error ends the step once `optimizer_step` returns).
    pub fn run(mut self, module: &mut M, optimizer: &mut Optimizer) -> Option<Gradients> {
        self.ran = true;
        let batch = self.batch.take()?;
        match self.steps(module, optimizer, batch) {
            Ok(grads) => grads,
            Err(e) => {
                self.core.defer_error(e);
                None
            }
        }
    }

    fn steps(
        &mut self,
        module: &mut M,
        optimizer: &mut Optimizer,
        batch: M::Batch,
    ) -> Result<Option<Gradients>, Error> {
        // Data-parallel: the other ranks step first, so that their `sync_dist` values are
        // there when rank zero logs the same keys.
        let replica_grads = match self.replicas.take() {
            Some(replicas) => Some(self.replica_gradients(module, optimizer, replicas)?),
            None => None,
        };
        let output = {
            let _span =
                tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "training_step", by = "module")
                    .entered();
            // `*-mixed`: the step runs on a half-precision view of the module.
            let mut view = crate::precision::mixed_view(self.core, module);
            let output = view.as_mut().unwrap_or(module).training_step(
                batch,
                self.batch_idx,
                &mut StepContext::new(self.core, Hook::TrainingStep).reading(optimizer),
            );
            crate::precision::end_view(self.core);
            self.core.take_error()?;
            output?
        };
        if let Some(output) = &output {
            check_loss("training_step", &output.loss)?;
            check_finite_loss(self.core, "training_step", &output.loss)?;
        }
        let epoch = self.core.state.current_epoch;
        let callbacks = &mut *self.callbacks;
        let core = &mut *self.core;
        // With accumulation, gradients are cleared at the start of a window only (Lightning).
        if self.window.as_deref().is_none_or(AccumulationWindow::first_batch) {
            dispatch::on_before_zero_grad(module, callbacks, core, &mut (), optimizer)?;
            dispatch::optimizer_zero_grad(module, callbacks, core, &mut (), epoch, self.batch_idx, optimizer)?;
        }
        // Lightning divides the loss by the accumulation factor before backward, and hands that
        // divided loss on to `on_train_batch_end`.
        let output = match (output, self.window.as_deref()) {
            (Some(output), Some(window)) if window.divisor > 1 => Some(StepOutput {
                loss: output.loss.div_scalar(window.divisor as f64),
                extra: output.extra,
            }),
            (output, _) => output,
        };
        // Lightning skips backward, not the optimizer hooks, when `training_step` returns no loss.
        let grads = match &output {
            Some(output) => {
                // `16-mixed` scales the loss backward sees (and `on_before_backward`, as Lightning).
                let loss = core.precision.scale_loss(output.loss.clone());
                dispatch::on_before_backward(module, callbacks, core, &mut (), &loss)?;
                let mut grads = dispatch::backward(module, callbacks, core, &mut (), loss)?;
                // Data-parallel: the mean of every rank's gradients, as DDP's all-reduce gives
                // before `on_after_backward`.
                if let Some((sum, ranks)) = replica_grads {
                    if let Some(sum) = sum {
                        grads.accumulate(module, sum);
                    }
                    grads.scale(module, 1.0 / ranks as f64);
                }
                // As torch's `.grad` after backward: the sum over the window so far.
                if let Some(window) = self.window.as_deref_mut()
                    && let Some(sum) = window.sum.take()
                {
                    grads.accumulate(module, sum);
                }
                check_finite_gradients(core, "backward", module, &grads)?;
                dispatch::on_after_backward(module, callbacks, core, &mut (), &grads)?;
                Some(grads)
            }
            None => None,
        };
        let grads = match self.window.as_deref_mut() {
            Some(window) => window.finish(module, grads),
            None => grads,
        };
        if self.window.as_deref().is_some_and(|window| !window.steps) {
            // Accumulating: no optimizer step, so neither its hooks nor clipping.
            if let Some(output) = output {
                *self.output = Some(StepOutput {
                    loss: output.loss.detach(),
                    extra: output.extra,
                });
            }
            return Ok(None);
        }
        let mut had_grads = grads.is_some();
        let mut grads = grads.unwrap_or_else(Gradients::empty);
        // Several processes: every rank applies the mean of all ranks' gradients (each rank
        // reaches this all-reduce at every optimizer step, with or without a loss).
        if let Some(group) = core.process_group.clone() {
            had_grads = group.average_gradients(module, &mut grads)?;
        }
        // `16-mixed`: the optimizer hooks and clipping see unscaled gradients (Lightning).
        core.precision.unscale(module, &mut grads);
        dispatch::on_before_optimizer_step(module, callbacks, core, &mut (), optimizer, &grads)?;
        dispatch::configure_gradient_clipping(module, callbacks, core, &mut (), optimizer, &mut grads, self.clip)?;
        // Without a loss, the window's earlier gradients are still applied (torch steps with
        // whatever `.grad` holds); without either, nothing is.
        if let Some(output) = output {
            *self.output = Some(StepOutput {
                loss: output.loss.detach(),
                extra: output.extra,
            });
        }
        // `16-mixed` skips the update when a gradient is inf or NaN (torch's `GradScaler.step`).
        Ok((had_grads && !core.precision.skips_step()).then_some(grads))
    }

    /// Data-parallel: runs `training_step` and backward for ranks 1.., each on a fork of
    /// `module` on its device (only `sync_dist` values of what they log count, see
    /// [`crate::strategy`]); returns the sum of their gradients on rank zero's device (`None`
    /// when no rank returned a loss) and the number of ranks, rank zero included.
    fn replica_gradients(
        &mut self,
        module: &M,
        optimizer: &Optimizer,
        replicas: crate::strategy::ReplicaBatches<M::Batch>,
    ) -> Result<(Option<Gradients>, usize), Error> {
        let ranks = replicas.batches.len() + 1;
        // Each loss is divided as rank zero's is under accumulation.
        let divisor = self.window.as_deref().map_or(1, |window| window.divisor);
        let mut sum: Option<Gradients> = None;
        self.core.sync_dist.clear();
        for (rank, (batch, device)) in replicas.batches.into_iter().enumerate() {
            let mut replica = module.clone().fork(&device);
            // The replica's hook sees its own rank and device (Lightning's `self.device`).
            self.core.state.global_rank = rank + 1;
            let main_device = std::mem::replace(&mut self.core.state.device, device.clone());
            let output = {
                let _span = tracing::trace_span!(target: "burn_lightning::replicas", "training_step", rank = rank + 1)
                    .entered();
                let mut view = crate::precision::mixed_view(self.core, &replica);
                let output = view.as_mut().unwrap_or(&mut replica).training_step(
                    batch,
                    self.batch_idx,
                    &mut StepContext::new(self.core, Hook::TrainingStep).reading(optimizer),
                );
                crate::precision::end_view(self.core);
                output
            };
            self.core.state.global_rank = 0;
            self.core.state.device = main_device;
            self.core.take_error()?;
            let Some(output) = output? else { continue };
            check_loss("training_step", &output.loss)?;
            let loss = if divisor > 1 {
                output.loss.div_scalar(divisor as f64)
            } else {
                output.loss
            };
            let loss = self.core.precision.scale_loss(loss);
            let mut grads = Gradients::from_loss(&loss, &replica);
            if device.clone().without_autodiff() != replicas.main_device {
                grads = grads.moved_to(&replicas.main_device, &replica);
            }
            match &mut sum {
                Some(sum) => sum.accumulate(module, grads),
                None => sum = Some(grads),
            }
        }
        Ok((sum, ranks))
    }

    /// The step's context, to log from an overridden `optimizer_step`.
    pub fn context(&mut self) -> StepContext<'_> {
        StepContext::new(self.core, Hook::OptimizerStep)
    }
}

impl<M: LightningModule> Drop for OptimizerClosure<'_, M> {
    fn drop(&mut self) {
        if !self.ran {
            self.core.defer_error(Error::Hook {
                hook: "optimizer_step",
                message: "the closure was not run: call `optimizer.step(self, closure)` (or `closure.run`) so that `training_step` and backward happen".into(),
            });
        }
    }
}

impl StepContext<'_> {
    /// Manual optimization: back-propagates `loss` with the backward hooks
    /// (`on_before_backward`, `backward`, `on_after_backward`, run at every call) and returns the
    /// gradients; with an optimizer toggled (`toggle_optimizer`), only those of its parameters.
    /// When a hook fails, the rest is skipped, the gradients are empty and `training_step` ends
    /// with that error once it returns.
    pub fn manual_backward<M: ManualOptimization>(&mut self, module: &mut M, loss: Tensor<1>) -> Gradients {
        let Some(manual) = self.manual.as_mut() else {
            self.core.defer_error(outside_training_step("manual_backward"));
            return Gradients::empty();
        };
        if self.core.failed() {
            return Gradients::empty();
        }
        if let Err(e) =
            check_loss("manual_backward", &loss).and_then(|()| check_finite_loss(self.core, "manual_backward", &loss))
        {
            self.core.defer_error(e);
            return Gradients::empty();
        }
        let toggled = manual
            .toggled
            .and_then(|i| crate::context::optimizer_in(manual.optimizer, manual.more, i));
        let callbacks = callbacks_of::<M>(manual.callbacks);
        let core = &mut *self.core;
        let result = dispatch::on_before_backward(module, callbacks, core, &mut (), &loss)
            .and_then(|()| dispatch::backward(module, callbacks, core, &mut (), loss))
            .map(|mut grads| {
                // Lightning's toggled optimizer: the other parameters have no gradient.
                if let Some(optimizer) = &toggled {
                    optimizer.keep_own(module, &mut grads);
                }
                grads
            })
            .and_then(|grads| check_finite_gradients(core, "manual_backward", module, &grads).map(|()| grads))
            .and_then(|grads| dispatch::on_after_backward(module, callbacks, core, &mut (), &grads).map(|()| grads));
        result.unwrap_or_else(|e| {
            core.defer_error(e);
            Gradients::empty()
        })
    }

    /// Manual optimization with one optimizer: runs `on_before_optimizer_step` and updates the
    /// module's parameters with `grads`; counts one step of `global_step`. With several
    /// optimizers this does not compile: step each with its handle,
    /// [`OptimizerHandle::step`].
    pub fn optimizer_step<M>(&mut self, module: &mut M, grads: Gradients)
    where
        M: ManualOptimization + ConfiguredOptimizers<Config: IntoOptimizerConfig<Count: OnlyOptimizer>>,
    {
        self.step_optimizer(module, OptimizerHandle { index: 0 }, grads, "optimizer_step");
    }

    /// Steps the optimizer `handle` names: `on_before_optimizer_step` (with that optimizer), then
    /// its update of its own parameters; one step of `global_step`.
    fn step_optimizer<M: ManualOptimization>(
        &mut self,
        module: &mut M,
        handle: OptimizerHandle,
        grads: Gradients,
        what: &str,
    ) {
        let Some(manual) = self.manual.as_mut() else {
            self.core.defer_error(outside_training_step(what));
            return;
        };
        if self.core.failed() {
            return;
        }
        let count = manual.count();
        let callbacks = callbacks_of::<M>(manual.callbacks);
        let Some(optimizer) = crate::context::optimizer_in(manual.optimizer, manual.more, handle.index) else {
            self.core
                .defer_error(crate::context::no_such_optimizer(what, handle, count));
            return;
        };
        if count > 1 && !grads.is_empty() && !optimizer.has_gradient_in(module, &grads) {
            // Several optimizers: gradients that hold none of this one's parameters were
            // computed for another (toggled) optimizer; stepping would silently do nothing.
            self.core.defer_error(Error::Hook {
                hook: "training_step",
                message: format!(
                    "optimizer {} was stepped with gradients that hold none of its parameters (were they computed \
                     with another optimizer toggled?); step it with the gradients of a loss of its own parameters",
                    handle.index
                ),
            });
            return;
        }
        if let Err(e) = dispatch::on_before_optimizer_step(module, callbacks, self.core, &mut (), optimizer, &grads) {
            self.core.defer_error(e);
            return;
        }
        let _span = tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = "optimizer_step").entered();
        optimizer.apply(module, grads);
        // Lightning 2.x counts every optimizer's step (`_ManualOptimization._on_after_step`).
        self.core.state.global_step += 1;
    }
}

impl OptimizerHandle {
    /// Manual optimization: steps this optimizer (Lightning's `opt.step()`): runs
    /// `on_before_optimizer_step` with it, then updates only the parameters it was given
    /// (`OptimizerConfig::for_params`) with their gradients in `grads`; the other parameters
    /// keep their weights, bit for bit, whatever `grads` holds for them.
    ///
    /// `global_step` counts every step of every optimizer, as Lightning 2.x does: a GAN that
    /// steps its generator and its discriminator once per batch advances it by 2 per batch (so
    /// `max_steps` and `log_every_n_steps` count optimizer steps too).
    ///
    /// Stepping with gradients that hold none of this optimizer's parameters (computed while
    /// another optimizer was toggled) ends the run with an error, rather than doing nothing.
    pub fn step<M: ManualOptimization>(self, cx: &mut StepContext<'_>, module: &mut M, grads: Gradients) {
        cx.step_optimizer(module, self, grads, "step");
    }
}

fn callbacks_of<M: LightningModule>(callbacks: &mut dyn Any) -> &mut [Box<dyn crate::Callback<M>>] {
    // The trainer stores exactly `Callbacks<M>` for the module type it runs.
    callbacks
        .downcast_mut::<Callbacks<M>>()
        .map(|c| c.as_mut_slice())
        .unwrap_or_default()
}

/// A loss must be one value, as PyTorch's `backward` requires of an implicit gradient: the shape
/// is known without reading the device.
fn check_loss(hook: &'static str, loss: &Tensor<1>) -> Result<(), Error> {
    let values = loss.dims()[0];
    if values == 1 {
        return Ok(());
    }
    let why = if values == 0 {
        "the loss is empty (0 values); check the batch and the reduction that produced it".to_string()
    } else {
        format!("the loss holds {values} values, but backward needs one; reduce it (`.mean()` or `.sum()`)")
    };
    Err(Error::Hook { hook, message: why })
}

/// Where a step is, for messages: `global step 3 (epoch 0, batch 3)`.
fn step_position(core: &Core) -> String {
    let state = &core.state;
    format!(
        "global step {} (epoch {}, batch {})",
        state.global_step, state.current_epoch, state.batch_idx
    )
}

/// A loss that is not finite: an error under `detect_anomaly` (which reads every loss), else a
/// warning the first time one is seen on a step whose values are read for the loggers anyway.
fn check_finite_loss(core: &mut Core, hook: &'static str, loss: &Tensor<1>) -> Result<(), Error> {
    if !core.detect_anomaly && (core.warned_non_finite || !core.logs_this_step) {
        return Ok(());
    }
    let value = loss.clone().into_scalar::<f64>();
    if value.is_finite() {
        return Ok(());
    }
    let at = step_position(core);
    if core.detect_anomaly {
        return Err(Error::Hook {
            hook,
            message: format!("the loss is {value} at {at}; `detect_anomaly` stopped the run"),
        });
    }
    core.warned_non_finite = true;
    let warning = format!(
        "warning: the loss of `{hook}` is {value} at {at}; training goes on with it \
         (`detect_anomaly(true)` stops at the first such step, naming it)"
    );
    tracing::warn!(target: "burn_lightning", "{warning}");
    core.output.println(&warning);
    Ok(())
}

/// Under `detect_anomaly`, a gradient that is not finite is an error naming the parameter.
fn check_finite_gradients<M: LightningModule>(
    core: &Core,
    hook: &'static str,
    module: &M,
    grads: &Gradients,
) -> Result<(), Error> {
    if !core.detect_anomaly || grads.is_empty() {
        return Ok(());
    }
    let Some(total) = grads.norm_tensor(module) else {
        return Ok(());
    };
    if total.into_scalar::<f64>().is_finite() {
        return Ok(());
    }
    let norms = crate::monitors::grad_norm(module, grads, 2.0)?;
    let culprit = norms
        .iter()
        .filter(|(name, _)| !name.ends_with("_total"))
        .find(|(_, norm)| !(*norm).clone().into_scalar::<f64>().is_finite())
        .and_then(|(name, _)| name.split_once('/').map(|(_, path)| path.to_string()));
    let which = culprit.map_or("a gradient".to_string(), |path| format!("the gradient of `{path}`"));
    Err(Error::Hook {
        hook,
        message: format!(
            "{which} is not finite at {}; `detect_anomaly` stopped the run",
            step_position(core)
        ),
    })
}

fn outside_training_step(what: &str) -> Error {
    Error::Hook {
        hook: "training_step",
        message: format!("`{what}` can only be called inside `training_step`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    fn weight_grad(layer: &Linear, grads: &Gradients) -> Vec<f32> {
        let grad = grads.get::<2>(layer.weight.id).expect("a weight gradient");
        grad.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn a_window_cut_short_by_an_epoch_of_unknown_length_steps_with_the_mean() {
        let device = crate::Device::default().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 3.0], [1, 3]), &device);
        let grads = || Gradients::from_loss(&layer.forward(x.clone()).sum(), &layer);
        let single = weight_grad(&layer, &grads());

        // A factor of 4, an unknown epoch length, and the epoch ending after 2 batches: each
        // loss was divided by 4, so the sum of the two is scaled by 4 / 2.
        let mut window = AccumulationWindow::default();
        window.begin(0, 4, None, false);
        assert!(window.finish(&layer, Some(grads())).is_none(), "accumulating: no step");
        window.begin(1, 4, None, true);
        let sum = window.finish(&layer, Some(grads())).expect("the last batch steps");
        for (stepped, one) in weight_grad(&layer, &sum).iter().zip(&single) {
            assert!((stepped - 4.0 * one).abs() < 1e-5, "{stepped} vs 4 * {one}");
        }

        // With the length known, the window divides by its own length and is not rescaled.
        let mut window = AccumulationWindow::default();
        window.begin(4, 4, Some(6), false);
        assert_eq!(window.divisor, 2);
        assert!(window.finish(&layer, Some(grads())).is_none());
        window.begin(5, 4, Some(6), true);
        let sum = window.finish(&layer, Some(grads())).expect("the last batch steps");
        for (stepped, one) in weight_grad(&layer, &sum).iter().zip(&single) {
            assert!((stepped - 2.0 * one).abs() < 1e-5, "{stepped} vs 2 * {one}");
        }
    }
}
