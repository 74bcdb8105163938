//! Optimization as the hooks see it: the closure an automatic `optimizer_step` runs
//! (Lightning's: `training_step`, the zero-grad and backward hooks, `on_before_optimizer_step`,
//! clipping), `Optimizer::step`, and the calls of manual optimization on [`StepContext`].

use crate::context::{Core, StepContext};
use crate::hooks::{Callbacks, Hook, LightningModule, ManualOptimization, StepOutput, dispatch};
use crate::optim::{GradientClip, Gradients, Optimizer};
use crate::{Callback, Error, Tensor};
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
        let output = {
            let _span =
                tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "training_step", by = "module")
                    .entered();
            let output = module.training_step(
                batch,
                self.batch_idx,
                &mut StepContext::new(self.core, Hook::TrainingStep),
            );
            self.core.take_error()?;
            output?
        };
        if let Some(output) = &output {
            check_loss("training_step", &output.loss)?;
        }
        let epoch = self.core.state.current_epoch;
        let callbacks = &mut *self.callbacks;
        let core = &mut *self.core;
        dispatch::on_before_zero_grad(module, callbacks, core, &mut (), optimizer)?;
        dispatch::optimizer_zero_grad(module, callbacks, core, &mut (), epoch, self.batch_idx, optimizer)?;
        // Lightning skips backward, not the optimizer hooks, when `training_step` returns no loss.
        let mut grads = match &output {
            Some(output) => {
                dispatch::on_before_backward(module, callbacks, core, &mut (), &output.loss)?;
                let grads = dispatch::backward(module, callbacks, core, &mut (), output.loss.clone())?;
                dispatch::on_after_backward(module, callbacks, core, &mut (), &grads)?;
                grads
            }
            None => Gradients::empty(),
        };
        dispatch::on_before_optimizer_step(module, callbacks, core, &mut (), optimizer, &grads)?;
        dispatch::configure_gradient_clipping(module, callbacks, core, &mut (), optimizer, &mut grads, self.clip)?;
        let Some(output) = output else { return Ok(None) };
        *self.output = Some(StepOutput {
            loss: output.loss.detach(),
            extra: output.extra,
        });
        Ok(Some(grads))
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
    /// (`on_before_backward`, `backward`, `on_after_backward`) and returns the gradients. When
    /// a hook fails, the rest is skipped, the gradients are empty and `training_step` ends with
    /// that error once it returns.
    pub fn manual_backward<M: ManualOptimization>(&mut self, module: &mut M, loss: Tensor<1>) -> Gradients {
        let Some(manual) = self.manual.as_mut() else {
            self.core.defer_error(outside_training_step("manual_backward"));
            return Gradients::empty();
        };
        if self.core.failed() {
            return Gradients::empty();
        }
        if let Err(e) = check_loss("manual_backward", &loss) {
            self.core.defer_error(e);
            return Gradients::empty();
        }
        let callbacks = callbacks_of::<M>(manual.callbacks);
        let core = &mut *self.core;
        let result = dispatch::on_before_backward(module, callbacks, core, &mut (), &loss)
            .and_then(|()| dispatch::backward(module, callbacks, core, &mut (), loss))
            .and_then(|grads| dispatch::on_after_backward(module, callbacks, core, &mut (), &grads).map(|()| grads));
        result.unwrap_or_else(|e| {
            core.defer_error(e);
            Gradients::empty()
        })
    }

    /// Manual optimization: runs `on_before_optimizer_step` and updates the module's
    /// parameters with `grads`; counts one step of `global_step`.
    pub fn optimizer_step<M: ManualOptimization>(&mut self, module: &mut M, grads: Gradients) {
        let Some(manual) = self.manual.as_mut() else {
            self.core.defer_error(outside_training_step("optimizer_step"));
            return;
        };
        if self.core.failed() {
            return;
        }
        let callbacks = callbacks_of::<M>(manual.callbacks);
        if let Err(e) =
            dispatch::on_before_optimizer_step(module, callbacks, self.core, &mut (), manual.optimizer, &grads)
        {
            self.core.defer_error(e);
            return;
        }
        let _span = tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = "optimizer_step").entered();
        manual.optimizer.apply(module, grads);
        self.core.state.global_step += 1;
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

fn outside_training_step(what: &str) -> Error {
    Error::Hook {
        hook: "training_step",
        message: format!("`{what}` can only be called inside `training_step`"),
    }
}
