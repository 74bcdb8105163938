//! Optimizers as the trainer drives them: `configure_optimizers` returns an [`OptimizerConfig`]
//! (a burn optimizer, a learning rate, optional param groups and scheduler); the trainer turns it
//! into an [`Optimizer`], which keeps its state and steps.

use super::gradients::Gradients;
use super::param_groups::{GroupFactory, OptimizerSource, ParamGroupConfig, Params};
use super::scheduler::{LrSchedulerConfig, Scheduler};
use crate::{Error, Tensor};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup as BurnParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer};
use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The learning rate of one param group of one optimizer, as `LearningRateMonitor` logs it.
#[derive(Clone, Debug, PartialEq)]
pub struct LearningRate {
    /// The key it is logged under: Lightning's `lr-{optimizer class}`, with `-1`, `-2` for
    /// further optimizers of a class and `/pg1`, `/pg2` (or the group's name) for param groups,
    /// or its scheduler's `name`.
    pub name: String,
    /// The learning rate the next step uses.
    pub lr: f64,
    /// When its scheduler steps; `None` without a scheduler.
    pub interval: Option<Interval>,
    /// The group's weight decay, when known (`None` for a type-erased `ModuleOptimizer`).
    pub weight_decay: Option<f64>,
    /// Which optimizer (its position in what `configure_optimizers` returned).
    pub optimizer: usize,
    /// Which param group of that optimizer (0 for the first).
    pub group: usize,
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

/// What `configure_optimizers` returns: an optimizer, its learning rate, optionally param groups
/// and a learning-rate scheduler (torch's `AdamW(groups, lr=...)` and Lightning's
/// `{"optimizer": .., "lr_scheduler": ..}`).
///
/// ```ignore
/// // minGPT: no weight decay on biases, norms and embeddings.
/// OptimizerConfig::new(AdamWConfig::new().with_beta_2(0.95), 6e-4)
///     .param_group(ParamGroupConfig::new(Params::decay(self)).weight_decay(0.1))
///     .param_group(ParamGroupConfig::new(Params::no_decay(self)).weight_decay(0.0))
/// ```
pub struct OptimizerConfig {
    optimizer: ModuleOptimizer,
    class: Cow<'static, str>,
    weight_decay: Option<f64>,
    factory: Option<Arc<dyn GroupFactory>>,
    lr: f64,
    scheduler: Option<LrSchedulerConfig>,
    params: Option<BTreeSet<ParamId>>,
    groups: Vec<ParamGroupConfig>,
}

impl OptimizerConfig {
    /// A burn optimizer with a constant learning rate: its configuration (`AdamConfig::new()`,
    /// the torch way: `LearningRateMonitor` logs `lr-Adam`, and param groups may set their own
    /// weight decay), the built optimizer (`.build()`), or a `ModuleOptimizer` (`.init()`,
    /// type-erased: logged as `lr-Optimizer`). See [`OptimizerSource`].
    pub fn new(optimizer: impl OptimizerSource, lr: f64) -> Self {
        let parts = optimizer.into_parts();
        Self {
            optimizer: parts.optimizer,
            class: parts.class,
            weight_decay: parts.weight_decay,
            factory: parts.factory,
            lr,
            scheduler: None,
            params: None,
            groups: Vec::new(),
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

    /// Adds a param group (torch's `{"params": ..., "lr": ..., "weight_decay": ...}`): the
    /// optimizer then updates the parameters of its groups only, each group with its own
    /// learning rate and weight decay (the optimizer's where the group sets none). Groups are
    /// numbered in the order given (`lr-AdamW/pg1`, `lr-AdamW/pg2`).
    ///
    /// burn's rules are taken care of: a group with its own weight decay is a
    /// `ModuleOptimizer::with_group` of its own (which would reset the state of the parameters it
    /// matches; here groups are made before the first step), the first burn group covers every
    /// parameter (the optimizer's own settings, for no parameter of a group), and since a
    /// parameter may be in one group only (an error otherwise, as torch's), no two groups match
    /// it.
    #[must_use]
    pub fn param_group(mut self, group: impl Into<ParamGroupConfig>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Whether it updates every parameter alike (no `for_params`, no param groups).
    pub(crate) fn updates_every_parameter(&self) -> bool {
        self.params.is_none() && self.groups.is_empty()
    }

    /// Adds a learning-rate scheduler (Lightning's `{"optimizer": .., "lr_scheduler": ..}`);
    /// it starts from this optimizer's learning rate, or each param group's.
    #[must_use]
    pub fn with_scheduler(mut self, scheduler: LrSchedulerConfig) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// torch's check of the learning rates (`Invalid learning rate`): the optimizer's and each
    /// param group's must be 0 or more (not a negative number, not NaN).
    pub(crate) fn check_learning_rates(&self) -> Result<(), String> {
        let valid = |lr: f64| lr >= 0.0;
        if !valid(self.lr) {
            return Err(format!(
                "invalid learning rate {}: it must be 0 or more (torch refuses it too: `Invalid learning rate`)",
                self.lr
            ));
        }
        if let Some((i, lr)) = self
            .groups
            .iter()
            .enumerate()
            .find_map(|(i, g)| g.lr.filter(|lr| !valid(*lr)).map(|lr| (i, lr)))
        {
            return Err(format!(
                "invalid learning rate {lr} of param group {}: it must be 0 or more (torch refuses it too: \
                 `Invalid learning rate`)",
                i + 1
            ));
        }
        Ok(())
    }

    /// The parameters it updates, when not all.
    fn updated_params(&self) -> Option<BTreeSet<ParamId>> {
        match self.groups.is_empty() {
            true => self.params.clone(),
            false => Some(self.groups.iter().flat_map(|g| g.params.ids()).collect()),
        }
    }

    /// The optimizer of the run at position `index`; errors name `configure_optimizers` and
    /// what to change.
    pub(crate) fn build(self, index: usize) -> Result<Optimizer, Error> {
        let refuse = |message: String| Error::Hook {
            hook: "configure_optimizers",
            message,
        };
        self.check_learning_rates().map_err(refuse)?;
        let params = self.updated_params();
        if !self.groups.is_empty() && self.params.is_some() {
            return Err(refuse(
                "it gives both `for_params` and param groups; give the parameters through the groups alone".into(),
            ));
        }
        let mut owner: BTreeMap<ParamId, usize> = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (i, group) in self.groups.iter().enumerate() {
            if group.params.is_empty() {
                return Err(refuse(format!(
                    "param group {} holds no parameter (its `Params` matched none); remove it or fix its selection",
                    i + 1
                )));
            }
            for (id, path) in group.params.entries() {
                if let Some(first) = owner.insert(*id, i) {
                    return Err(refuse(format!(
                        "the parameter `{path}` is in param groups {} and {}; a parameter may be in one group only \
                         (torch refuses it too): take it out of one with `Params::except`",
                        first + 1,
                        i + 1
                    )));
                }
            }
            if let Some(name) = &group.name
                && !names.insert(name.clone())
            {
                return Err(refuse(format!(
                    "two param groups are named `{name}` (Lightning refuses duplicate names: they are the keys \
                     `LearningRateMonitor` logs)"
                )));
            }
        }
        let mut optimizer = Optimizer {
            inner: self.optimizer,
            lr: self.lr,
            scheduler: None,
            params,
            steps: 0,
            stand_in: None,
            index,
            class: self.class,
            base_weight_decay: self.weight_decay,
            factory: self.factory,
            groups: Vec::new(),
        };
        if self.groups.is_empty() {
            optimizer.groups.push(GroupState {
                params: None,
                lr: self.lr,
                weight_decay: None,
                name: None,
            });
        }
        for group in self.groups {
            optimizer.push_group(group, self.lr).map_err(refuse)?;
        }
        let base_lrs: Vec<f64> = optimizer.groups.iter().map(|g| g.lr).collect();
        optimizer.scheduler = self.scheduler.map(|config| config.build(&base_lrs)).transpose()?;
        Ok(optimizer)
    }

    /// The optimizers of the run. Several optimizers must each update their own parameters
    /// (`for_params` or param groups), none shared: a step of one then cannot move another's
    /// parameters, so the generator's loss cannot update the discriminator. torch allows a
    /// parameter in two optimizers; this refuses it, on purpose.
    pub(crate) fn build_all(configs: Vec<OptimizerConfig>) -> Result<Vec<Optimizer>, Error> {
        let refuse = |message: String| Error::Hook {
            hook: "configure_optimizers",
            message,
        };
        if configs.is_empty() {
            return Err(refuse("it returned no optimizer".into()));
        }
        if configs.len() > 1 {
            let updated: Vec<Option<BTreeSet<ParamId>>> = configs.iter().map(OptimizerConfig::updated_params).collect();
            for (i, params) in updated.iter().enumerate() {
                let Some(params) = params else {
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
                if let Some(j) = updated[..i]
                    .iter()
                    .position(|other| other.as_ref().is_some_and(|o| !o.is_disjoint(params)))
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

/// Builds a burn scheduler from a param group's base learning rate (called once per group).
pub(super) type MakeScheduler = Arc<dyn Fn(f64) -> Result<ModuleLrScheduler, String> + Send + Sync>;

/// One param group of an optimizer in a run (torch's `optimizer.param_groups[i]`).
#[derive(Clone, Debug)]
struct GroupState {
    /// Its parameters; `None` for the one group of an optimizer configured without groups
    /// (every parameter it updates).
    params: Option<Params>,
    /// Its rate when no scheduler drives it (the base rate a scheduler starts from).
    lr: f64,
    /// Its own weight decay; `None`: the optimizer's.
    weight_decay: Option<f64>,
    name: Option<String>,
}

impl GroupState {
    fn burn_group(&self) -> BurnParamGroup {
        match &self.params {
            Some(params) => BurnParamGroup::from_ids(params.ids().collect()),
            None => BurnParamGroup::all(),
        }
    }
}

/// The optimizer in a run: burn's `ModuleOptimizer`, its param groups with their learning rates
/// or its scheduler, and the number of steps it took.
pub struct Optimizer {
    inner: ModuleOptimizer,
    /// The configured learning rate (the default of groups that set none).
    lr: f64,
    scheduler: Option<Scheduler>,
    /// The parameters it updates, when not all (`OptimizerConfig::for_params`, param groups).
    params: Option<BTreeSet<ParamId>>,
    steps: usize,
    /// A module of the trained type with empty tensors, made at the first step: what is left in
    /// place of the module if burn's optimizer panics while it owns it, so the panic unwinds
    /// (to `on_exception` and the pending checkpoints) instead of aborting.
    stand_in: Option<Box<dyn Any + Send>>,
    /// Its position in what `configure_optimizers` returned.
    index: usize,
    /// torch's class name (`AdamW`), `Optimizer` when type-erased.
    class: Cow<'static, str>,
    /// The weight decay it was configured with, when known.
    base_weight_decay: Option<f64>,
    /// Builds an optimizer of the same kind with another weight decay.
    factory: Option<Arc<dyn GroupFactory>>,
    /// Its param groups: one at least.
    groups: Vec<GroupState>,
}

impl Optimizer {
    /// Its position in what `configure_optimizers` returned (0 for the first, and for a single
    /// optimizer): which optimizer `on_before_optimizer_step` is called for.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it updates the parameter `id` (all parameters unless `for_params` or param groups
    /// were given).
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

    /// The learning rate the next step uses, of the first param group (torch's
    /// `param_groups[0]["lr"]`; for an optimizer without groups, of every parameter).
    pub fn lr(&self) -> f64 {
        self.group_lr(0)
    }

    /// How many param groups it has (1 for an optimizer configured without groups; fine-tuning
    /// callbacks add some during the fit).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The learning rate param group `group` uses at the next step: its scheduler's, else its own.
    ///
    /// # Panics
    ///
    /// When there is no such group (see [`group_count`](Self::group_count)).
    pub fn group_lr(&self, group: usize) -> f64 {
        self.scheduler
            .as_ref()
            .and_then(|scheduler| scheduler.group_lr(group))
            .unwrap_or(self.groups[group].lr)
    }

    /// The weight decay of param group `group`, when known: its own, else the optimizer's
    /// configuration's (`None` for a type-erased `ModuleOptimizer`).
    pub fn group_weight_decay(&self, group: usize) -> Option<f64> {
        self.groups.get(group)?.weight_decay.or(self.base_weight_decay)
    }

    /// The name of param group `group`, when it was given one.
    pub fn group_name(&self, group: usize) -> Option<&str> {
        self.groups.get(group)?.name.as_deref()
    }

    /// The class name of the burn optimizer, as torch names it (`Adam`, `AdamW`, `SGD`), or
    /// `Optimizer` when `configure_optimizers` gave a type-erased `ModuleOptimizer`.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The rates of every parameter for the next step.
    fn module_lr(&self) -> ModuleLearningRate {
        if self.groups.len() == 1 {
            return match &self.scheduler {
                Some(scheduler) => scheduler.module_lr(),
                None => self.groups[0].lr.into(),
            };
        }
        // A constant burn schedule per group gives the rates as burn's lookup wants them: the
        // first group's for every parameter, each later group's for its own (groups are
        // disjoint, so no parameter matches two).
        let mut rates = ModuleLrScheduler::new(self.group_lr(0));
        for (i, group) in self.groups.iter().enumerate().skip(1) {
            rates = rates.with_group(group.burn_group(), self.group_lr(i));
        }
        rates.step()
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

    /// Adds `group` as its last param group with `default_lr` where the group sets no rate: its
    /// parameters join those it updates, and a weight decay of its own gets an optimizer of its
    /// own (burn's `with_group`, which resets the state of the parameters it matches: these have
    /// none yet).
    fn push_group(&mut self, group: ParamGroupConfig, default_lr: f64) -> Result<(), String> {
        let weight_decay = group.weight_decay.filter(|wd| Some(*wd) != self.base_weight_decay);
        let state = GroupState {
            params: Some(group.params),
            lr: group.lr.unwrap_or(default_lr),
            weight_decay: group.weight_decay,
            name: group.name,
        };
        if let Some(weight_decay) = weight_decay {
            let factory = self.factory.as_ref().ok_or_else(|| {
                format!(
                    "param group {} has a weight decay of its own ({weight_decay}), which a built optimizer cannot \
                     change: give `OptimizerConfig::new` the optimizer's configuration (`AdamWConfig::new()...`) \
                     rather than the result of its `.init()` or `.build()`",
                    self.groups.len() + 1
                )
            })?;
            let burn_group = state.burn_group();
            let optimizer = factory.build(weight_decay);
            replace_with::replace_with_or_abort(&mut self.inner, |inner| inner.with_group(burn_group, optimizer, None));
        }
        if let (Some(updated), Some(params)) = (&mut self.params, &state.params) {
            updated.extend(params.ids());
        }
        self.groups.push(state);
        Ok(())
    }

    /// Adds a param group during the fit (torch's `optimizer.add_param_group`, what Lightning's
    /// `BaseFinetuning.unfreeze_and_add_param_group` calls). Parameters it already updates are
    /// left out with a warning, as Lightning's `filter_on_optimizer` does; a group left empty is
    /// not added. Without its own rate, the group gets the configured one. A scheduler does not
    /// drive a group added this way: its rate is the one given, or set with
    /// [`set_group_lr`](Self::set_group_lr). Returns the group's index, if added.
    pub(crate) fn add_param_group(&mut self, group: ParamGroupConfig) -> Result<Option<usize>, Error> {
        let (kept, skipped): (Vec<_>, Vec<_>) = group
            .params
            .entries()
            .iter()
            .cloned()
            .partition(|(id, _)| !self.updates(*id));
        if !skipped.is_empty() {
            tracing::warn!(target: "burn_lightning",
                "optimizer {}: the parameters {} are already in one of its param groups and are left out of the new one \
                 (configure the optimizer with the trainable parameters only, e.g. `Params::trainable(self)` or \
                 `for_params`, to add them later)",
                self.index,
                skipped.iter().map(|(_, path)| format!("`{path}`")).collect::<Vec<_>>().join(", "));
        }
        if kept.is_empty() {
            return Ok(None);
        }
        // An optimizer of every parameter that gets a group: its first group is what it updated.
        let group = ParamGroupConfig {
            params: Params::from_entries(kept),
            ..group
        };
        self.push_group(group, self.lr).map_err(|message| Error::Hook {
            hook: "add_param_group",
            message,
        })?;
        Ok(Some(self.groups.len() - 1))
    }

    /// Sets the learning rate of param group `group` (torch's `param_groups[i]["lr"] = lr`) for
    /// a group no scheduler drives: one added during the fit, or any group of an optimizer
    /// without a scheduler.
    pub(crate) fn set_group_lr(&mut self, group: usize, lr: f64) -> Result<(), Error> {
        let refuse = |message: String| Error::Hook {
            hook: "set_param_group_lr",
            message,
        };
        if group >= self.groups.len() {
            return Err(refuse(format!(
                "optimizer {} has {} param groups, not {}",
                self.index,
                self.groups.len(),
                group + 1
            )));
        }
        if self.scheduler.as_ref().is_some_and(|s| group < s.group_count()) {
            return Err(refuse(format!(
                "param group {} of optimizer {} follows its scheduler, which sets its rate",
                group + 1,
                self.index
            )));
        }
        self.groups[group].lr = lr;
        Ok(())
    }

    /// Replaces its scheduler by `config`, built from every group's current rate (what
    /// `StochasticWeightAveraging` does with `SWALR`).
    pub(crate) fn replace_scheduler(&mut self, config: LrSchedulerConfig) -> Result<(), Error> {
        let current: Vec<f64> = (0..self.groups.len()).map(|g| self.group_lr(g)).collect();
        self.scheduler = Some(config.build(&current)?);
        Ok(())
    }
}

/// Lightning's `LearningRateMonitor._find_names`: the learning rate of every param group of every
/// optimizer, keyed as Lightning keys them. Optimizers with a scheduler come first, in order,
/// then the others; a scheduler's `name` is the key, else `lr-{class}`, `-1`, `-2` for the
/// second and third unnamed ones of a class; an optimizer with several groups adds `/pg1`,
/// `/pg2` (or the group's name), one with a single named group `/{name}`. The keys are made
/// again when the groups or schedulers change (`rates` emptied); otherwise only the rates are
/// refreshed.
pub(crate) fn sync_learning_rates(rates: &mut Vec<LearningRate>, first: Option<&Optimizer>, more: &[Optimizer]) {
    let optimizer = |i: usize| if i == 0 { first } else { more.get(i - 1) };
    let groups: usize = first.iter().copied().chain(more).map(Optimizer::group_count).sum();
    if rates.len() == groups {
        for rate in rates.iter_mut() {
            if let Some(optimizer) = optimizer(rate.optimizer) {
                rate.lr = optimizer.group_lr(rate.group);
            }
        }
        return;
    }
    rates.clear();
    let indexed: Vec<(usize, &Optimizer)> = first.into_iter().chain(more).enumerate().collect();
    let (scheduled, plain): (Vec<_>, Vec<_>) = indexed.into_iter().partition(|(_, o)| o.scheduler.is_some());
    let mut seen_classes: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, optimizer) in scheduled.into_iter().chain(plain) {
        let class = optimizer.class();
        let named = optimizer.scheduler_name();
        if named.is_none() {
            *seen_classes.entry(class).or_default() += 1;
        }
        let base = named.map_or_else(|| format!("lr-{class}"), str::to_string);
        // Lightning's `_add_prefix`.
        let base = match seen_classes.get(class) {
            Some(&count) if count > 1 => format!("{base}-{}", count - 1),
            _ => base,
        };
        let count = optimizer.group_count();
        for group in 0..count {
            // Lightning's `_add_suffix`.
            let name = match (count, optimizer.group_name(group)) {
                (1, None) => base.clone(),
                (_, Some(name)) => format!("{base}/{name}"),
                (_, None) => format!("{base}/pg{}", group + 1),
            };
            rates.push(LearningRate {
                name,
                lr: optimizer.group_lr(group),
                interval: optimizer.scheduler().map(Scheduler::interval),
                weight_decay: optimizer.group_weight_decay(group),
                optimizer: index,
                group,
            });
        }
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
    /// learning-rate sweep, as Lightning's `_exchange_scheduler`: every group sweeps the same rates).
    pub(crate) fn exchange_scheduler(&mut self, lr: f64, scheduler: LrSchedulerConfig) -> Result<(), Error> {
        self.lr = lr;
        for group in &mut self.groups {
            group.lr = lr;
        }
        self.scheduler = Some(scheduler.build(&vec![lr; self.groups.len()])?);
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
    /// The scheduler's state as JSON (see `Scheduler::state`).
    pub(crate) fn scheduler_state(&self) -> Result<Option<serde_json::Value>, Error> {
        self.scheduler.as_ref().map(Scheduler::state).transpose()
    }

    /// Its param groups as JSON, when it has several: each group's parameters (their ids), rate,
    /// weight decay and name, so that a resume rebuilds the groups a fine-tuning callback added
    /// before it loads their state.
    pub(crate) fn groups_state(&self) -> Option<serde_json::Value> {
        if self.groups.len() == 1 {
            return None;
        }
        let groups: Vec<serde_json::Value> = self
            .groups
            .iter()
            .map(|group| {
                serde_json::json!({
                    "params": group.params.as_ref().map(|p| p.entries().iter().map(|(id, path)| (id.val(), path.clone())).collect::<Vec<_>>()),
                    "lr": group.lr.to_bits(),
                    "weight_decay": group.weight_decay.map(f64::to_bits),
                    "name": group.name,
                })
            })
            .collect();
        Some(serde_json::Value::Array(groups))
    }

    /// Restores the param groups a fit added (from [`groups_state`](Self::groups_state)), then
    /// burn's optimizer state (`bytes`, empty for none), the step count and the scheduler's
    /// state saved by [`scheduler_state`](Self::scheduler_state).
    pub(crate) fn restore_state(
        &mut self,
        bytes: &[u8],
        steps: usize,
        scheduler: Option<&serde_json::Value>,
        groups: Option<&serde_json::Value>,
    ) -> Result<(), Error> {
        let bad = |what: &str, why: String| Error::Checkpoint(format!("cannot restore the {what}'s state: {why}"));
        if let Some(groups) = groups {
            self.restore_groups(groups)
                .map_err(|why| bad("optimizer's param groups", why))?;
        }
        if !bytes.is_empty() {
            let record = burn::tensor::Bytes::from_bytes_vec(bytes.to_vec());
            self.inner = self
                .inner
                .clone()
                .from_bytes(record)
                .map_err(|e| bad("optimizer", format!("{e} (was it saved with another optimizer?)")))?;
        }
        self.steps = steps;
        match (&mut self.scheduler, scheduler) {
            // `StochasticWeightAveraging` replaced the configured scheduler with `SWALR`.
            (_, Some(saved)) if Scheduler::saved_is_swa(saved) => {
                self.scheduler = Some(Scheduler::from_saved_swa(saved)?);
            }
            (Some(scheduler), Some(saved)) => scheduler.restore(saved)?,
            (None, None) => {}
            _ => tracing::warn!(target: "burn_lightning",
                "the checkpoint's scheduler state does not match `configure_optimizers` (one has a scheduler, the other not): the scheduler starts afresh"),
        }
        Ok(())
    }

    fn restore_groups(&mut self, saved: &serde_json::Value) -> Result<(), String> {
        let saved = saved.as_array().ok_or("they are not a list")?;
        if saved.len() < self.groups.len() {
            return Err(format!(
                "the checkpoint holds {} param groups, and `configure_optimizers` configures {}",
                saved.len(),
                self.groups.len()
            ));
        }
        let float = |value: &serde_json::Value| value.as_u64().map(f64::from_bits);
        for (i, group) in saved.iter().enumerate() {
            let lr = group.get("lr").and_then(float).ok_or("a group's `lr` is missing")?;
            if i < self.groups.len() {
                self.groups[i].lr = lr;
                continue;
            }
            // A group added during the fit that saved the checkpoint.
            let entries: Vec<(u64, String)> = group
                .get("params")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .ok_or("an added group's `params` are missing")?;
            let params = Params::from_entries(
                entries
                    .into_iter()
                    .map(|(id, path)| (ParamId::from(id), path))
                    .collect(),
            );
            let mut config = ParamGroupConfig::new(params).lr(lr);
            config.weight_decay = group.get("weight_decay").and_then(float);
            config.name = group.get("name").and_then(|n| n.as_str()).map(str::to_string);
            self.push_group(config, lr)?;
        }
        Ok(())
    }
}
