//! Optimizers as the trainer drives them: `configure_optimizers` returns an [`OptimizerConfig`]
//! (a burn `ModuleOptimizer`, a learning rate, an optional scheduler); the trainer turns it into
//! an [`Optimizer`], which keeps its state and steps.

use super::gradients::Gradients;
use super::scheduler::{LrSchedulerConfig, Scheduler, SchedulerKind};
use crate::{Error, Tensor};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer};
use std::any::Any;
use std::collections::BTreeSet;

/// An optimizer's learning rate as `LearningRateMonitor` logs it.
#[derive(Clone, Debug, PartialEq)]
pub struct LearningRate {
    /// The key it is logged under: Lightning's `lr-{optimizer}`.
    pub name: String,
    /// The learning rate the next step uses.
    pub lr: f64,
    /// When its scheduler steps; `None` without a scheduler.
    pub interval: Option<Interval>,
}

/// When a scheduler steps (Lightning's `interval`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Interval {
    /// After the last batch of every epoch (Lightning's default).
    #[default]
    Epoch,
    /// After every optimizer step.
    Step,
}

/// What `configure_optimizers` returns: an optimizer, its learning rate, and optionally a
/// learning-rate scheduler configured as Lightning's `lr_scheduler_config` dict.
pub struct OptimizerConfig {
    optimizer: ModuleOptimizer,
    lr: f64,
    scheduler: Option<LrSchedulerConfig>,
    params: Option<BTreeSet<ParamId>>,
}

impl OptimizerConfig {
    /// A burn optimizer (for example `AdamConfig::new().init()`) with a constant learning rate.
    pub fn new(optimizer: impl Into<ModuleOptimizer>, lr: f64) -> Self {
        Self {
            optimizer: optimizer.into(),
            lr,
            scheduler: None,
            params: None,
        }
    }

    /// Updates only the parameters of `part`, a sub-module (torch's `Adam(self.head.parameters())`):
    /// the others keep their weights, whatever their gradients. Called again, it adds `part`'s
    /// parameters to those already given.
    #[must_use]
    pub fn for_params<P: Module>(mut self, part: &P) -> Self {
        let mut visitor = ParamIds(self.params.take().unwrap_or_default());
        part.visit(&mut visitor);
        self.params = Some(visitor.0);
        self
    }

    /// Whether it updates every parameter (no `for_params`).
    pub(crate) fn updates_every_parameter(&self) -> bool {
        self.params.is_none()
    }

    /// Adds a learning-rate scheduler (Lightning's `{"optimizer": .., "lr_scheduler": ..}`);
    /// it starts from this optimizer's learning rate.
    #[must_use]
    pub fn with_scheduler(mut self, scheduler: LrSchedulerConfig) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// The optimizer of the run at position `index`; errors name `configure_optimizers` and
    /// what to change.
    pub(crate) fn build(self, index: usize) -> Result<Optimizer, Error> {
        let scheduler = self.scheduler.map(|config| config.build(self.lr)).transpose()?;
        Ok(Optimizer {
            inner: self.optimizer,
            lr: self.lr,
            scheduler,
            params: self.params,
            steps: 0,
            stand_in: None,
            index,
        })
    }

    /// The optimizers of the run. Several optimizers must each update their own parameters
    /// (`for_params`), none shared: a step of one then cannot move another's parameters, so the
    /// generator's loss cannot update the discriminator. torch allows a parameter in two
    /// optimizers; this refuses it, on purpose.
    pub(crate) fn build_all(configs: Vec<OptimizerConfig>) -> Result<Vec<Optimizer>, Error> {
        let refuse = |message: String| Error::Hook {
            hook: "configure_optimizers",
            message,
        };
        if configs.is_empty() {
            return Err(refuse("it returned no optimizer".into()));
        }
        if configs.len() > 1 {
            for (i, config) in configs.iter().enumerate() {
                let Some(params) = &config.params else {
                    return Err(refuse(format!(
                        "optimizer {i} of {} updates every parameter; with several optimizers give each its own \
                         parameters with `.for_params(&self.part)`, so that stepping one leaves the others' \
                         parameters alone",
                        configs.len()
                    )));
                };
                if params.is_empty() {
                    return Err(refuse(format!(
                        "optimizer {i} was given no parameters (`for_params` of a sub-module without any)"
                    )));
                }
                if let Some(j) = configs[..i]
                    .iter()
                    .position(|other| other.params.as_ref().is_some_and(|o| !o.is_disjoint(params)))
                {
                    return Err(refuse(format!(
                        "optimizers {j} and {i} share parameters; give each optimizer its own sub-modules with \
                         `for_params`"
                    )));
                }
            }
        }
        configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| config.build(index))
            .collect()
    }
}

/// What `configure_optimizers` may return, in a shape the compiler checks (Lightning's return
/// forms, section 2.5 of the reference):
///
/// - one optimizer, with or without a scheduler: an [`OptimizerConfig`] (its `with_scheduler`
///   is Lightning's `{"optimizer": .., "lr_scheduler": ..}` dict);
/// - several optimizers, each with its own parameters ([`OptimizerConfig::for_params`]) and its
///   own scheduler: a tuple `(OptimizerConfig, OptimizerConfig)` (up to four) or an array
///   `[OptimizerConfig; N]` (Lightning's `[opt_g, opt_d], [sched_g, sched_d]`). Several
///   optimizers need manual optimization (`#[lightning_module(manual_optimization)]`); under
///   automatic optimization they do not compile, as Lightning 2.x refuses them when the fit starts.
///
/// [`Handles`](Self::Handles) is what `self.optimizers()` returns in `training_step`: one
/// [`OptimizerHandle`] per optimizer, in the same shape, so `let (opt_g, opt_d) =
/// self.optimizers();` has exactly as many handles as there are optimizers.
///
/// Lightning lets one optimizer have several schedulers; here each has at most one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from `configure_optimizers`",
    label = "return an `OptimizerConfig`, or a tuple or array of them",
    note = "for example `OptimizerConfig::new(AdamConfig::new().init(), 1e-3)`, or `(opt_g, opt_d)` for two optimizers under manual optimization"
)]
pub trait IntoOptimizerConfig {
    /// One [`OptimizerHandle`] per optimizer, in the shape of `Self`.
    type Handles: Copy;
    /// [`One`] or [`Several`]: whether automatic optimization can step it.
    type Count;
    /// The optimizers' configurations, in order (their handles' indices).
    fn into_optimizer_configs(self) -> Vec<OptimizerConfig>;
    /// The handles of the optimizers.
    fn handles() -> Self::Handles;
}

/// [`IntoOptimizerConfig::Count`] of a single optimizer.
pub enum One {}
/// [`IntoOptimizerConfig::Count`] of several optimizers.
pub enum Several {}

impl IntoOptimizerConfig for OptimizerConfig {
    type Handles = OptimizerHandle;
    type Count = One;
    fn into_optimizer_configs(self) -> Vec<OptimizerConfig> {
        vec![self]
    }
    fn handles() -> OptimizerHandle {
        OptimizerHandle { index: 0 }
    }
}

impl IntoOptimizerConfig for (OptimizerConfig, OptimizerConfig) {
    type Handles = (OptimizerHandle, OptimizerHandle);
    type Count = Several;
    fn into_optimizer_configs(self) -> Vec<OptimizerConfig> {
        vec![self.0, self.1]
    }
    fn handles() -> Self::Handles {
        (OptimizerHandle { index: 0 }, OptimizerHandle { index: 1 })
    }
}

impl IntoOptimizerConfig for (OptimizerConfig, OptimizerConfig, OptimizerConfig) {
    type Handles = (OptimizerHandle, OptimizerHandle, OptimizerHandle);
    type Count = Several;
    fn into_optimizer_configs(self) -> Vec<OptimizerConfig> {
        vec![self.0, self.1, self.2]
    }
    fn handles() -> Self::Handles {
        let [a, b, c] = <[OptimizerConfig; 3]>::handles();
        (a, b, c)
    }
}

impl IntoOptimizerConfig for (OptimizerConfig, OptimizerConfig, OptimizerConfig, OptimizerConfig) {
    type Handles = (OptimizerHandle, OptimizerHandle, OptimizerHandle, OptimizerHandle);
    type Count = Several;
    fn into_optimizer_configs(self) -> Vec<OptimizerConfig> {
        vec![self.0, self.1, self.2, self.3]
    }
    fn handles() -> Self::Handles {
        let [a, b, c, d] = <[OptimizerConfig; 4]>::handles();
        (a, b, c, d)
    }
}

impl<const N: usize> IntoOptimizerConfig for [OptimizerConfig; N] {
    type Handles = [OptimizerHandle; N];
    type Count = Several;
    fn into_optimizer_configs(self) -> Vec<OptimizerConfig> {
        self.into()
    }
    fn handles() -> [OptimizerHandle; N] {
        std::array::from_fn(|index| OptimizerHandle { index })
    }
}

/// Automatic optimization steps one optimizer: implemented for [`One`] only.
#[diagnostic::on_unimplemented(
    message = "`configure_optimizers` returns several optimizers, which automatic optimization cannot step",
    label = "several optimizers",
    note = "use manual optimization: write `#[lightning_module(manual_optimization)]` on the impl block, get the handles in `training_step` with `let (opt_g, opt_d) = self.optimizers();` and step each with `opt_g.step(cx, self, grads)` (Lightning 2.x refuses several optimizers under automatic optimization too)"
)]
pub trait AutomaticOptimizers {}
impl AutomaticOptimizers for One {}

/// `cx.optimizer_step` steps the only optimizer: implemented for [`One`] only.
#[diagnostic::on_unimplemented(
    message = "`cx.optimizer_step` steps the only optimizer, but `configure_optimizers` returns several",
    label = "which optimizer?",
    note = "step each optimizer with its own handle: `let (opt_g, opt_d) = self.optimizers();` then `opt_g.step(cx, self, grads)`; a handle's step updates only that optimizer's parameters"
)]
pub trait OnlyOptimizer {}
impl OnlyOptimizer for One {}

/// The optimizers a module's `configure_optimizers` returns, as a type; implemented by
/// `#[lightning_module]` for every module. Its [`optimizers`](Self::optimizers)
/// is Lightning's `self.optimizers()`.
pub trait ConfiguredOptimizers {
    /// The return type of `configure_optimizers` (`OptimizerConfig` for a module without one).
    /// Not bound here: a type that is no [`IntoOptimizerConfig`] is reported once, where
    /// `configure_optimizers` returns it.
    type Config;

    /// Handles of the optimizers `configure_optimizers` returns, in its shape (Lightning's
    /// `self.optimizers()`): `let (opt_g, opt_d) = self.optimizers();` for two. A handle is an
    /// index: it borrows nothing, and is used with the step's context (`opt_g.step(cx, self, grads)`).
    fn optimizers(&self) -> <Self::Config as IntoOptimizerConfig>::Handles
    where
        Self::Config: IntoOptimizerConfig,
    {
        <Self::Config as IntoOptimizerConfig>::handles()
    }
}

/// One of the optimizers `configure_optimizers` returned, named by its position (Lightning's
/// `LightningOptimizer` as `self.optimizers()` returns it). Under manual optimization it steps
/// that optimizer ([`step`](Self::step)), reads it ([`StepContext::optimizer_at`]) or its
/// scheduler ([`StepContext::lr_scheduler_of`]), and toggles it
/// ([`StepContext::toggle_optimizer`]).
///
/// [`StepContext::optimizer_at`]: crate::StepContext::optimizer_at
/// [`StepContext::lr_scheduler_of`]: crate::StepContext::lr_scheduler_of
/// [`StepContext::toggle_optimizer`]: crate::StepContext::toggle_optimizer
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct OptimizerHandle {
    pub(crate) index: usize,
}

impl OptimizerHandle {
    /// Its position in what `configure_optimizers` returned (0 for the first).
    pub fn index(self) -> usize {
        self.index
    }
}

/// Builds a burn scheduler from the optimizer's learning rate.
pub(super) type MakeScheduler = Box<dyn FnOnce(f64) -> Result<ModuleLrScheduler, String> + Send>;

/// The optimizer in a run: burn's `ModuleOptimizer`, its learning rate or scheduler, and the
/// number of steps it took.
pub struct Optimizer {
    inner: ModuleOptimizer,
    lr: f64,
    scheduler: Option<Scheduler>,
    /// The parameters it updates, when not all (`OptimizerConfig::for_params`).
    params: Option<BTreeSet<ParamId>>,
    steps: usize,
    /// A module of the trained type with empty tensors, made at the first step: what is left in
    /// place of the module if burn's optimizer panics while it owns it, so the panic unwinds
    /// (to `on_exception` and the pending checkpoints) instead of aborting.
    stand_in: Option<Box<dyn Any + Send>>,
    /// Its position in what `configure_optimizers` returned.
    index: usize,
}

impl Optimizer {
    /// Its position in what `configure_optimizers` returned (0 for the first, and for a single
    /// optimizer): which optimizer `on_before_optimizer_step` is called for.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it updates the parameter `id` (all parameters unless `for_params` was given).
    pub fn updates(&self, id: ParamId) -> bool {
        self.params.as_ref().is_none_or(|params| params.contains(&id))
    }

    /// Keeps only the gradients of the parameters it updates.
    pub(crate) fn keep_own<M: Module>(&self, module: &M, grads: &mut Gradients) {
        if let Some(params) = &self.params {
            module.visit(&mut KeepOnly {
                grads: &mut grads.params,
                keep: params,
            });
        }
    }

    /// Whether `grads` holds a gradient for one of its parameters (reads no tensor).
    pub(crate) fn has_gradient_in<M: Module>(&self, module: &M, grads: &Gradients) -> bool {
        let mut visitor = AnyGradient {
            grads: &grads.params,
            optimizer: self,
            found: false,
        };
        module.visit(&mut visitor);
        visitor.found
    }

    /// The learning rate the next step uses (of the group matching every parameter).
    pub fn lr(&self) -> f64 {
        self.scheduler.as_ref().map_or(self.lr, Scheduler::lr)
    }

    fn module_lr(&self) -> ModuleLearningRate {
        match &self.scheduler {
            Some(scheduler) => scheduler.module_lr(),
            None => self.lr.into(),
        }
    }

    /// The name of its scheduler's configuration (`LrSchedulerConfig::name`), for a
    /// learning-rate monitor's key.
    pub fn scheduler_name(&self) -> Option<&str> {
        self.scheduler.as_ref().and_then(Scheduler::name)
    }

    /// The scheduler, if `configure_optimizers` set one.
    pub fn scheduler(&self) -> Option<&Scheduler> {
        self.scheduler.as_ref()
    }

    /// The key `LearningRateMonitor` logs this optimizer's learning rate under: its
    /// scheduler's `name`, else Lightning's `lr-{torch class}`; burn's optimizers are
    /// type-erased in `ModuleOptimizer`, so the class is not known: `lr-Optimizer`.
    pub(crate) fn monitor_key(&self) -> String {
        self.scheduler_name()
            .map_or_else(|| "lr-Optimizer".to_string(), str::to_string)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The scheduler, if `configure_optimizers` set one.
    pub fn scheduler_mut(&mut self) -> Option<&mut Scheduler> {
        self.scheduler.as_mut()
    }

    /// burn's optimizer (for its state record).
    pub fn module_optimizer(&self) -> &ModuleOptimizer {
        &self.inner
    }

    /// Updates `module` with `grads`, the parameters it updates only.
    pub(crate) fn apply<M: Module + 'static>(&mut self, module: &mut M, mut grads: Gradients) {
        // burn's optimizers leave a parameter without a gradient as it is.
        self.keep_own(module, &mut grads);
        let lr = self.module_lr();
        if !self.stand_in.as_ref().is_some_and(|s| s.is::<M>()) {
            self.stand_in = Some(Box::new(module.clone().map(&mut EmptyTensors)));
        }
        let stand_in = self.stand_in.as_ref().and_then(|s| s.downcast_ref::<M>());
        let inner = &mut self.inner;
        // burn's optimizer consumes the module and returns the updated one; taking it out of
        // `&mut` avoids cloning the parameters (a clone would defeat in-place updates).
        replace_with::replace_with(
            module,
            || stand_in.cloned().expect("the stand-in was made above"),
            |m| inner.step(lr, m, grads.params),
        );
        self.steps += 1;
    }
}

/// The learning rates of the optimizers after the first (entries `1..` of `rates`, entry 0
/// being the first optimizer's). Keys as Lightning's `LearningRateMonitor._find_names`: a
/// scheduler's `name`, else `lr-Optimizer`, the second unnamed one `lr-Optimizer-1`, and so on
/// (Lightning's `lr-Adam`, `lr-Adam-1`; burn's optimizers are type-erased, so all are `Optimizer`).
pub(crate) fn sync_more_learning_rates(rates: &mut Vec<LearningRate>, more: &[Optimizer]) {
    for (i, optimizer) in more.iter().enumerate() {
        let lr = optimizer.lr();
        if let Some(rate) = rates.get_mut(i + 1) {
            rate.lr = lr;
            continue;
        }
        let name = match optimizer.scheduler_name() {
            Some(name) => name.to_string(),
            None => {
                let unnamed_before = rates.iter().filter(|r| r.name.starts_with("lr-Optimizer")).count();
                match unnamed_before {
                    0 => "lr-Optimizer".to_string(),
                    n => format!("lr-Optimizer-{n}"),
                }
            }
        };
        rates.push(LearningRate {
            name,
            lr,
            interval: optimizer.scheduler().map(Scheduler::interval),
        });
    }
}

/// Whether any of an optimizer's parameters has a gradient.
struct AnyGradient<'a> {
    grads: &'a GradientsParams,
    optimizer: &'a Optimizer,
    found: bool,
}

impl ModuleVisitor for AnyGradient<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.found && self.optimizer.updates(param.id) && self.grads.get::<D>(param.id).is_some() {
            self.found = true;
        }
    }
}

impl Optimizer {
    /// Sets the learning rate to `lr` and replaces the scheduler with `scheduler` (the tuner's
    /// learning-rate sweep, as Lightning's `_exchange_scheduler`).
    pub(crate) fn exchange_scheduler(&mut self, lr: f64, scheduler: LrSchedulerConfig) -> Result<(), Error> {
        self.lr = lr;
        self.scheduler = Some(scheduler.build(lr)?);
        Ok(())
    }
}

/// Collects the ids of a module's float parameters.
struct ParamIds(BTreeSet<ParamId>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(param.id);
    }
}

/// Drops the gradients of the parameters not in `keep`.
struct KeepOnly<'a> {
    grads: &'a mut GradientsParams,
    keep: &'a BTreeSet<ParamId>,
}

impl ModuleVisitor for KeepOnly<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.keep.contains(&param.id) {
            self.grads.remove::<D>(param.id);
        }
    }
}

/// Replaces every float parameter by an empty tensor: a module of the same type that holds no
/// weights (and shares no buffer with the module it was made from).
struct EmptyTensors;

impl ModuleMapper for EmptyTensors {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| Tensor::empty([0; D], &tensor.device()))
    }
}

/// What a resume restores of an optimizer besides burn's record (see [`crate::resume`]).
impl Optimizer {
    /// The scheduler's state as JSON: a burn schedule's record (its bytes) and learning rate,
    /// or a plateau scheduler's counters. Floats are kept as their bits (JSON has no infinity).
    pub(crate) fn scheduler_state(&self) -> Result<Option<serde_json::Value>, Error> {
        let Some(scheduler) = &self.scheduler else {
            return Ok(None);
        };
        Ok(Some(match &scheduler.kind {
            SchedulerKind::Burn { inner, lr } => {
                let record = inner
                    .to_record()
                    .into_bytes()
                    .map_err(|e| Error::Checkpoint(format!("cannot serialize the scheduler's state: {e}")))?;
                serde_json::json!({ "record": record.to_vec(), "lr": lr.base().to_bits() })
            }
            SchedulerKind::Plateau(plateau) => serde_json::json!({
                "lr": plateau.lr.to_bits(),
                "best": plateau.best.to_bits(),
                "num_bad_epochs": plateau.num_bad_epochs,
                "cooldown_counter": plateau.cooldown_counter,
            }),
        }))
    }

    /// Restores burn's optimizer state (`bytes`, empty for none), the step count and the
    /// scheduler's state saved by [`scheduler_state`](Self::scheduler_state).
    pub(crate) fn restore_state(
        &mut self,
        bytes: &[u8],
        steps: usize,
        scheduler: Option<&serde_json::Value>,
    ) -> Result<(), Error> {
        let bad = |what: &str, why: String| Error::Checkpoint(format!("cannot restore the {what}'s state: {why}"));
        if !bytes.is_empty() {
            let record = burn::tensor::Bytes::from_bytes_vec(bytes.to_vec());
            self.inner = self
                .inner
                .clone()
                .from_bytes(record)
                .map_err(|e| bad("optimizer", format!("{e} (was it saved with another optimizer?)")))?;
        }
        self.steps = steps;
        let (Some(scheduler), Some(saved)) = (&mut self.scheduler, scheduler) else {
            if self.scheduler.is_some() != scheduler.is_some() {
                tracing::warn!(target: "burn_lightning",
                    "the checkpoint's scheduler state does not match `configure_optimizers` (one has a scheduler, the other not): the scheduler starts afresh");
            }
            return Ok(());
        };
        let float = |key: &str| {
            saved
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .map(f64::from_bits)
                .ok_or_else(|| bad("scheduler", format!("`{key}` is missing")))
        };
        let count = |key: &str| {
            saved
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| bad("scheduler", format!("`{key}` is missing")))
        };
        match &mut scheduler.kind {
            SchedulerKind::Burn { inner, lr } => {
                let record: Vec<u8> = saved
                    .get("record")
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
                    .ok_or_else(|| {
                        bad(
                            "scheduler",
                            "its record is missing (a plateau scheduler's state?)".into(),
                        )
                    })?;
                let record = burn::optim::lr_scheduler::LrSchedulerRecord::from_bytes(
                    burn::tensor::Bytes::from_bytes_vec(record),
                )
                .map_err(|e| bad("scheduler", e.to_string()))?;
                *inner = inner.clone().load_record(record);
                *lr = float("lr")?.into();
            }
            SchedulerKind::Plateau(plateau) => {
                plateau.lr = float("lr")?;
                plateau.best = float("best")?;
                plateau.num_bad_epochs = count("num_bad_epochs")?;
                plateau.cooldown_counter = count("cooldown_counter")?;
            }
        }
        Ok(())
    }
}
