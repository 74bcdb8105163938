//! Manual optimization as hooks call it: [`StepContext::manual_backward`],
//! [`StepContext::optimizer_step`] and [`OptimizerHandle::step`], with the backward and optimizer
//! hooks they run; and the checks of losses and gradients that automatic optimization shares.

use crate::hooks::context::{Core, StepContext};
use crate::hooks::{Callbacks, LightningModule, ManualOptimization, dispatch};
use crate::optim::{ConfiguredOptimizers, Gradients, IntoOptimizerConfig, OnlyOptimizer, OptimizerHandle};
use crate::{Error, Tensor};
use std::any::Any;

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
            .and_then(|i| crate::hooks::context::optimizer_in(manual.optimizer, manual.more, i));
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
        let Some(optimizer) = crate::hooks::context::optimizer_in(manual.optimizer, manual.more, handle.index) else {
            self.core
                .defer_error(crate::hooks::context::no_such_optimizer(what, handle, count));
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
pub(crate) fn check_loss(hook: &'static str, loss: &Tensor<1>) -> Result<(), Error> {
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
pub(crate) fn check_finite_loss(core: &mut Core, hook: &'static str, loss: &Tensor<1>) -> Result<(), Error> {
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
    core.first_non_finite_loss = Some(format!("{value} at {at}"));
    let warning = format!(
        "warning: the loss of `{hook}` is {value} at {at}; training goes on with it \
         (`detect_anomaly(true)` stops at the first such step, naming it)"
    );
    tracing::warn!(target: "burn_lightning", "{warning}");
    core.output.println(&warning);
    Ok(())
}

/// Under `detect_anomaly`, a gradient that is not finite is an error naming the parameter.
pub(crate) fn check_finite_gradients<M: LightningModule>(
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
    let norms = crate::optim::grad_norm(module, grads, 2.0)?;
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
