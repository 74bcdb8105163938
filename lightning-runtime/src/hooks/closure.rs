//! Lightning's optimizer closure as `optimizer_step` receives it: [`OptimizerClosure`], run by
//! [`Optimizer::step`] or [`OptimizerClosure::run`]. What it runs is the fit loop's
//! (`loops::optimization`), behind `ClosureBody`.

use crate::Error;
use crate::hooks::context::{Core, StepContext};
use crate::hooks::{Hook, LightningModule};
use crate::optim::{Gradients, Optimizer};

/// What a closure runs: the training step, the zero-grad and backward hooks,
/// `on_before_optimizer_step` and clipping. Implemented by the fit loop.
pub(crate) trait ClosureBody<M: LightningModule> {
    /// Runs the work; returns the gradients to apply, or `None` when there is nothing to apply
    /// (no loss, or a step that accumulates).
    fn run(&mut self, module: &mut M, optimizer: &mut Optimizer, core: &mut Core) -> Result<Option<Gradients>, Error>;
}

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
    body: &'a mut dyn ClosureBody<M>,
    core: &'a mut Core,
    ran: bool,
}

impl<'a, M: LightningModule> OptimizerClosure<'a, M> {
    pub(crate) fn new(body: &'a mut dyn ClosureBody<M>, core: &'a mut Core) -> Self {
        Self { body, core, ran: false }
    }

    /// Runs the training step, the zero-grad hooks, backward (when `training_step` returned a
    /// loss), `on_before_optimizer_step` and gradient clipping, as Lightning's closure does; returns
    /// the gradients, or `None` when there is nothing to apply (no loss, or a hook failed: the
    /// error ends the step once `optimizer_step` returns).
    pub fn run(mut self, module: &mut M, optimizer: &mut Optimizer) -> Option<Gradients> {
        self.ran = true;
        match self.body.run(module, optimizer, self.core) {
            Ok(grads) => grads,
            Err(e) => {
                self.core.defer_error(e);
                None
            }
        }
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
