//! Optimizers as the trainer drives them: `configure_optimizers` returns an [`OptimizerConfig`]
//! (a burn `ModuleOptimizer`, a learning rate, an optional scheduler); the trainer turns it into
//! an [`Optimizer`] and runs the automatic-optimization closure through it.

use crate::context::{Core, StepContext};
use crate::hooks::{Hook, LightningModule, StepOutput, dispatch};
use crate::{Callback, Error, Tensor};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer};

/// When a scheduler steps (Lightning's `interval`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Interval {
    /// After the last batch of every epoch (Lightning's default).
    #[default]
    Epoch,
    /// After every optimizer step.
    Step,
}

/// What `configure_optimizers` returns.
pub struct OptimizerConfig {
    optimizer: ModuleOptimizer,
    lr: f64,
    scheduler: Option<Scheduler>,
}

impl OptimizerConfig {
    /// A burn optimizer (for example `AdamConfig::new().init()`) with a constant learning rate.
    pub fn new(optimizer: impl Into<ModuleOptimizer>, lr: f64) -> Self {
        Self {
            optimizer: optimizer.into(),
            lr,
            scheduler: None,
        }
    }

    /// Replaces the constant learning rate by a burn scheduler (any `LrScheduler`, or a
    /// `ModuleLrScheduler` as burn's `XConfig::init()` returns) stepped every `interval`.
    #[must_use]
    pub fn with_scheduler(mut self, scheduler: impl Into<ModuleLrScheduler>, interval: Interval) -> Self {
        self.scheduler = Some(Scheduler::new(scheduler.into(), interval));
        self
    }

    pub(crate) fn build(self) -> Optimizer {
        Optimizer {
            inner: self.optimizer,
            lr: self.lr,
            scheduler: self.scheduler,
            steps: 0,
        }
    }
}

/// What `configure_optimizers` may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from `configure_optimizers`",
    label = "return an `OptimizerConfig`",
    note = "for example `OptimizerConfig::new(AdamConfig::new().init(), 1e-3)`"
)]
pub trait IntoOptimizerConfig {
    fn into_optimizer_config(self) -> OptimizerConfig;
}

impl IntoOptimizerConfig for OptimizerConfig {
    fn into_optimizer_config(self) -> OptimizerConfig {
        self
    }
}

/// A learning-rate scheduler and when it steps.
pub struct Scheduler {
    inner: ModuleLrScheduler,
    interval: Interval,
    lr: ModuleLearningRate,
}

impl Scheduler {
    fn new(mut inner: ModuleLrScheduler, interval: Interval) -> Self {
        // burn schedulers return the learning rate of the coming step: the first call gives the
        // initial rate, as a torch scheduler's `base_lr`.
        let lr = inner.step();
        Self { inner, interval, lr }
    }

    /// Advances the schedule (what `lr_scheduler_step` does by default).
    pub fn step(&mut self) {
        self.lr = self.inner.step();
    }

    /// The learning rate in use (of the group matching every parameter).
    pub fn lr(&self) -> f64 {
        self.lr.base()
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }
}

/// The optimizer in a run: burn's `ModuleOptimizer`, its learning rate or scheduler, and the
/// number of steps it took.
pub struct Optimizer {
    inner: ModuleOptimizer,
    lr: f64,
    scheduler: Option<Scheduler>,
    steps: usize,
}

impl Optimizer {
    /// The learning rate the next step uses (of the group matching every parameter).
    pub fn lr(&self) -> f64 {
        self.scheduler.as_ref().map_or(self.lr, Scheduler::lr)
    }

    fn module_lr(&self) -> ModuleLearningRate {
        match &self.scheduler {
            Some(scheduler) => scheduler.lr.clone(),
            None => self.lr.into(),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The scheduler, if `configure_optimizers` set one.
    pub fn scheduler_mut(&mut self) -> Option<&mut Scheduler> {
        self.scheduler.as_mut()
    }

    pub(crate) fn scheduler_interval(&self) -> Option<Interval> {
        self.scheduler.as_ref().map(Scheduler::interval)
    }

    /// burn's optimizer (for its state record).
    pub fn module_optimizer(&self) -> &ModuleOptimizer {
        &self.inner
    }

    /// Runs `closure` (training step, backward, clipping) and updates `module` with the
    /// gradients it returns: what `optimizer_step` does by default, like torch's
    /// `optimizer.step(closure)`. A skipped batch (no loss) updates nothing.
    pub fn step<M: LightningModule>(&mut self, module: &mut M, closure: OptimizerClosure<'_, M>) {
        if let Some(grads) = closure.run(module, self) {
            self.apply(module, grads);
        }
    }

    /// Updates `module` with `grads`.
    pub(crate) fn apply<M: Module>(&mut self, module: &mut M, grads: Gradients) {
        let lr = self.module_lr();
        // burn's optimizer consumes the module and returns the updated one; taking it out of
        // `&mut` avoids cloning the parameters (a clone would defeat in-place updates).
        replace_with::replace_with_or_abort(module, |m| self.inner.step(lr, m, grads.params));
        self.steps += 1;
    }
}

/// The gradients of a module's parameters, as `backward` returns them.
pub struct Gradients {
    params: GradientsParams,
}

impl Gradients {
    /// Back-propagates `loss` and keeps the gradients of `module`'s parameters.
    pub fn from_loss<M: Module>(loss: &Tensor<1>, module: &M) -> Self {
        Self {
            params: GradientsParams::from_grads(loss.backward(), module),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            params: GradientsParams::new(),
        }
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The gradient of one parameter.
    pub fn get<const D: usize>(&self, id: ParamId) -> Option<Tensor<D>> {
        self.params.get(id)
    }

    /// burn's gradients.
    pub fn params(&self) -> &GradientsParams {
        &self.params
    }

    /// The global L2 norm of the gradients of `module`'s parameters (reads the device).
    pub fn norm<M: Module>(&self, module: &M) -> f64 {
        self.norm_tensor(module)
            .map_or(0.0, |norm| norm.into_scalar::<f64>())
    }

    /// The global L2 norm as a one-element tensor, left on the device; `None` without gradients.
    pub fn norm_tensor<M: Module>(&self, module: &M) -> Option<Tensor<1>> {
        let mut visitor = SquaredNorm {
            grads: &self.params,
            total: None,
        };
        module.visit(&mut visitor);
        visitor.total.map(Tensor::sqrt)
    }

    /// Clips in place, as torch's `clip_grad_norm_` (every gradient scaled by
    /// `min(1, max / (norm + 1e-6))`) or `clip_grad_value_`. The scale stays a tensor: clipping
    /// does not wait for the device.
    pub fn clip<M: Module>(&mut self, module: &M, clip: GradientClip) {
        let scale = match clip {
            GradientClip::Norm(max) => match self.norm_tensor(module) {
                Some(norm) => Some(norm.add_scalar(1e-6).recip().mul_scalar(max).clamp_max(1.0)),
                None => return,
            },
            GradientClip::Value(_) => None,
        };
        let mut visitor = ClipVisitor {
            grads: &mut self.params,
            clip,
            scale,
        };
        module.visit(&mut visitor);
    }
}

/// Gradient clipping (Lightning's `gradient_clip_val` with `gradient_clip_algorithm`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum GradientClip {
    /// Scale all gradients so that their global L2 norm is at most this.
    Norm(f64),
    /// Clamp every gradient value into `[-v, v]`.
    Value(f64),
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squared = grad.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + squared,
                None => squared,
            });
        }
    }
}

struct ClipVisitor<'a> {
    grads: &'a mut GradientsParams,
    clip: GradientClip,
    /// The norm's scale, a one-element tensor.
    scale: Option<Tensor<1>>,
}

impl ModuleVisitor for ClipVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let clipped = match (self.clip, &self.scale) {
                (GradientClip::Value(v), _) => grad.clamp(-v, v),
                (GradientClip::Norm(_), Some(scale)) => grad.mul(scale.clone().reshape([1; D])),
                (GradientClip::Norm(_), None) => grad,
            };
            self.grads.register::<D>(param.id, clipped);
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

    fn steps(&mut self, module: &mut M, optimizer: &mut Optimizer, batch: M::Batch) -> Result<Option<Gradients>, Error> {
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
