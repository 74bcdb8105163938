//! What an automatic `optimizer_step`'s closure runs (Lightning's closure: `training_step`, the
//! zero-grad and backward hooks, `on_before_optimizer_step`, clipping), on one device, on the
//! replicas of data-parallel training and across processes; and the windows of
//! `accumulate_grad_batches`. The closure itself, as hooks see it, is
//! [`OptimizerClosure`](crate::OptimizerClosure); manual optimization's calls are in
//! `hooks::manual`.

use crate::Error;
use crate::hooks::closure::ClosureBody;
use crate::hooks::context::{Core, StepContext};
use crate::hooks::manual::{check_finite_gradients, check_finite_loss, check_loss};
use crate::hooks::{Callback, Hook, LightningModule, StepOutput, dispatch};
use crate::optim::{GradientClip, Gradients, Optimizer};
use crate::strategies::ddp::ReplicaBatches;
use crate::strategies::process_group::ProcessGroup;
use burn::module::Module;
use std::sync::Arc;

/// The closure of one training batch: what the fit loop hands `optimizer_step` (inside an
/// [`OptimizerClosure`](crate::OptimizerClosure)).
pub(crate) struct TrainingStepClosure<'a, M: LightningModule> {
    pub batch: Option<M::Batch>,
    pub batch_idx: usize,
    pub callbacks: &'a mut [Box<dyn Callback<M>>],
    pub clip: Option<GradientClip>,
    pub output: &'a mut Option<StepOutput<M::TrainExtra>>,
    /// The accumulation window this batch belongs to; `None` without accumulation.
    pub window: Option<&'a mut AccumulationWindow>,
    /// Data-parallel training: the other ranks' batches; `None` on one device.
    pub replicas: Option<ReplicaBatches<M::Batch>>,
    /// Several processes: the gradients are averaged across them before the step.
    pub process_group: Option<Arc<ProcessGroup>>,
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

impl<M: LightningModule> ClosureBody<M> for TrainingStepClosure<'_, M> {
    /// Runs the training step, the zero-grad hooks, backward (when `training_step` returned a
    /// loss), `on_before_optimizer_step` and gradient clipping, as Lightning's closure does; returns
    /// the gradients, or `None` when there is nothing to apply.
    fn run(&mut self, module: &mut M, optimizer: &mut Optimizer, core: &mut Core) -> Result<Option<Gradients>, Error> {
        let Some(batch) = self.batch.take() else {
            return Ok(None);
        };
        self.steps(module, optimizer, core, batch)
    }
}

impl<M: LightningModule> TrainingStepClosure<'_, M> {
    fn steps(
        &mut self,
        module: &mut M,
        optimizer: &mut Optimizer,
        core: &mut Core,
        batch: M::Batch,
    ) -> Result<Option<Gradients>, Error> {
        // Data-parallel: the other ranks step first, so that their `sync_dist` values are
        // there when rank zero logs the same keys.
        let replica_grads = match self.replicas.take() {
            Some(replicas) => Some(self.replica_gradients(module, optimizer, core, replicas)?),
            None => None,
        };
        let output = {
            let _span =
                tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "training_step", by = "module")
                    .entered();
            // `*-mixed`: the step runs on a half-precision view of the module.
            let mut view = crate::optim::precision::mixed_view(&mut core.precision, module);
            let output = view.as_mut().unwrap_or(module).training_step(
                batch,
                self.batch_idx,
                &mut StepContext::new(core, Hook::TrainingStep).reading(optimizer),
            );
            crate::optim::precision::end_view(&mut core.precision);
            core.take_error()?;
            output?
        };
        if let Some(output) = &output {
            check_loss("training_step", &output.loss)?;
            check_finite_loss(core, "training_step", &output.loss)?;
        }
        let epoch = core.state.current_epoch;
        let callbacks = &mut *self.callbacks;
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
        if let Some(group) = &self.process_group {
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
    /// [`crate::strategies::ddp`]); returns the sum of their gradients on rank zero's device (`None`
    /// when no rank returned a loss) and the number of ranks, rank zero included.
    fn replica_gradients(
        &mut self,
        module: &M,
        optimizer: &Optimizer,
        core: &mut Core,
        replicas: ReplicaBatches<M::Batch>,
    ) -> Result<(Option<Gradients>, usize), Error> {
        let ranks = replicas.batches.len() + 1;
        // Each loss is divided as rank zero's is under accumulation.
        let divisor = self.window.as_deref().map_or(1, |window| window.divisor);
        let mut sum: Option<Gradients> = None;
        core.sync_dist.clear();
        for (rank, (batch, device)) in replicas.batches.into_iter().enumerate() {
            let mut replica = module.clone().fork(&device);
            // The replica's hook sees its own rank and device (Lightning's `self.device`).
            core.state.global_rank = rank + 1;
            let main_device = std::mem::replace(&mut core.state.device, device.clone());
            let output = {
                let _span = tracing::trace_span!(target: "burn_lightning::replicas", "training_step", rank = rank + 1)
                    .entered();
                let mut view = crate::optim::precision::mixed_view(&mut core.precision, &replica);
                let output = view.as_mut().unwrap_or(&mut replica).training_step(
                    batch,
                    self.batch_idx,
                    &mut StepContext::new(core, Hook::TrainingStep).reading(optimizer),
                );
                crate::optim::precision::end_view(&mut core.precision);
                output
            };
            core.state.global_rank = 0;
            core.state.device = main_device;
            core.take_error()?;
            let Some(output) = output? else { continue };
            check_loss("training_step", &output.loss)?;
            let loss = if divisor > 1 {
                output.loss.div_scalar(divisor as f64)
            } else {
                output.loss
            };
            let loss = core.precision.scale_loss(loss);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;
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
