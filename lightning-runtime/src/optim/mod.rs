//! Optimizers as the trainer drives them: `configure_optimizers` returns an [`OptimizerConfig`]
//! (a burn `ModuleOptimizer`, a learning rate, an optional scheduler); the trainer turns it into
//! an [`Optimizer`]. Gradients and their clipping. What runs hooks around an optimizer step (the
//! closure, manual optimization) is in [`optimization`](crate::optimization).

use crate::{Error, Mode, Tensor};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsParams, ModuleOptimizer};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};

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
type MakeScheduler = Box<dyn FnOnce(f64) -> Result<ModuleLrScheduler, String> + Send>;

/// Lightning's `lr_scheduler_config` dict: the scheduler, when it steps (`interval`, every
/// `frequency` epochs or batches), and the `name` a learning-rate monitor shows. A
/// [`ReduceLrOnPlateau`] also has the metric it follows (`monitor`, required) and `strict`.
///
/// ```ignore
/// OptimizerConfig::new(SgdConfig::new().init(), 0.1).with_scheduler(
///     LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 10).with_gamma(0.5).init())
///         .interval(Interval::Step),
/// )
/// ```
pub struct LrSchedulerConfig {
    kind: ConfigKind,
    interval: Interval,
    frequency: usize,
    strict: bool,
    name: Option<String>,
}

enum ConfigKind {
    Burn(MakeScheduler),
    Plateau {
        plateau: ReduceLrOnPlateau,
        monitor: String,
    },
}

impl LrSchedulerConfig {
    /// A burn scheduler, built by `make` from the optimizer's learning rate (so the rate is
    /// given once): `|lr| ExponentialLrSchedulerConfig::new(lr, 0.9).init()`. Any
    /// `LrScheduler` works: `|lr| Ok(MySchedule::new(lr))`.
    pub fn new<S, F>(make: F) -> Self
    where
        S: Into<ModuleLrScheduler>,
        F: FnOnce(f64) -> Result<S, String> + Send + 'static,
    {
        Self::with_kind(ConfigKind::Burn(Box::new(move |lr| make(lr).map(Into::into))))
    }

    /// A [`ReduceLrOnPlateau`] following the metric `monitor` (a name in `callback_metrics`),
    /// stepped after the validation that produced it, as Lightning steps it.
    pub fn reduce_on_plateau(plateau: ReduceLrOnPlateau, monitor: impl Into<String>) -> Self {
        Self::with_kind(ConfigKind::Plateau {
            plateau,
            monitor: monitor.into(),
        })
    }

    fn with_kind(kind: ConfigKind) -> Self {
        Self {
            kind,
            interval: Interval::Epoch,
            frequency: 1,
            strict: true,
            name: None,
        }
    }

    /// Steps every epoch (default) or every optimizer step.
    #[must_use]
    pub fn interval(mut self, interval: Interval) -> Self {
        self.interval = interval;
        self
    }

    /// Steps every `frequency` intervals (default 1): when `(epoch + 1)`, or with
    /// `Interval::Step` the epoch's `(batch_idx + 1)`, is a multiple of it, as in Lightning.
    #[must_use]
    pub fn frequency(mut self, frequency: usize) -> Self {
        self.frequency = frequency;
        self
    }

    /// For a plateau scheduler: whether a monitored metric missing when the scheduler is due is
    /// an error (default, as Lightning's `strict=True`) or a warning that skips the step.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The scheduler's name (Lightning's `name`, the key a learning-rate monitor logs under).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn build(self, lr: f64) -> Result<Scheduler, Error> {
        let refuse = |message: String| Error::Hook {
            hook: "configure_optimizers",
            message,
        };
        if self.frequency == 0 {
            return Err(refuse(
                "the scheduler's `frequency` is 0, so it would never step; use 1 or more".into(),
            ));
        }
        let (kind, monitor) = match self.kind {
            ConfigKind::Burn(make) => {
                let mut inner = make(lr).map_err(|e| refuse(format!("the scheduler could not be built: {e}")))?;
                // burn schedulers return the learning rate of the coming step: the first call
                // gives the initial rate, as a torch scheduler's `base_lr`.
                let lr = inner.step();
                (SchedulerKind::Burn { inner, lr }, None)
            }
            ConfigKind::Plateau { plateau, monitor } => {
                plateau.validate().map_err(refuse)?;
                (SchedulerKind::Plateau(PlateauState::new(plateau, lr)), Some(monitor))
            }
        };
        Ok(Scheduler {
            kind,
            interval: self.interval,
            frequency: self.frequency,
            monitor,
            strict: self.strict,
            name: self.name,
        })
    }
}

/// Lightning's (torch's) `ReduceLROnPlateau`, which burn lacks: lowers the learning rate by
/// `factor` when the monitored metric has not improved for more than `patience` checks. Stepped
/// with the metric's value after the validation that produced it; give it to an optimizer with
/// [`LrSchedulerConfig::reduce_on_plateau`]. Defaults are torch's: `Mode::Min`, factor 0.1,
/// patience 10, threshold 1e-4 relative, cooldown 0, `min_lr` 0, eps 1e-8.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLrOnPlateau {
    mode: Mode,
    factor: f64,
    patience: usize,
    threshold: f64,
    threshold_mode: ThresholdMode,
    cooldown: usize,
    min_lr: f64,
    eps: f64,
}

/// How [`ReduceLrOnPlateau`] compares a value with the best so far (torch's `threshold_mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ThresholdMode {
    /// Better means beyond `best * (1 -/+ threshold)`.
    #[default]
    Rel,
    /// Better means beyond `best -/+ threshold`.
    Abs,
}

impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        Self {
            mode: Mode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

macro_rules! plateau_settings {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, $name: $ty) -> Self {
            self.$name = $name;
            self
        }
    )*};
}

impl ReduceLrOnPlateau {
    /// torch's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    plateau_settings! {
        /// Whether a lower (`Mode::Min`) or higher (`Mode::Max`) value is better.
        mode: Mode;
        /// What the learning rate is multiplied by when it is lowered (below 1).
        factor: f64;
        /// Checks without improvement tolerated before lowering.
        patience: usize;
        /// How much better a value must be to count as an improvement.
        threshold: f64;
        /// Whether `threshold` is relative to the best value or absolute.
        threshold_mode: ThresholdMode;
        /// Checks to wait after lowering before counting checks without improvement again.
        cooldown: usize;
        /// The learning rate is never lowered below this.
        min_lr: f64;
        /// A reduction smaller than this is not applied.
        eps: f64;
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.factor < 1.0 && self.factor >= 0.0) {
            return Err(format!(
                "ReduceLrOnPlateau's factor is {}; it must be in [0, 1) to lower the learning rate",
                self.factor
            ));
        }
        if !(self.threshold >= 0.0 && self.min_lr >= 0.0 && self.eps >= 0.0) {
            return Err("ReduceLrOnPlateau's threshold, min_lr and eps must not be negative".into());
        }
        Ok(())
    }
}

/// A [`ReduceLrOnPlateau`] in a run: torch's `ReduceLROnPlateau` state.
#[derive(Clone, Debug)]
struct PlateauState {
    settings: ReduceLrOnPlateau,
    lr: f64,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
}

impl PlateauState {
    fn new(settings: ReduceLrOnPlateau, lr: f64) -> Self {
        let best = match settings.mode {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        };
        Self {
            settings,
            lr,
            best,
            num_bad_epochs: 0,
            cooldown_counter: 0,
        }
    }

    /// torch's `is_better`.
    fn is_better(&self, value: f64) -> bool {
        let ReduceLrOnPlateau { threshold, .. } = self.settings;
        match (self.settings.mode, self.settings.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => value < self.best * (1.0 - threshold),
            (Mode::Min, ThresholdMode::Abs) => value < self.best - threshold,
            (Mode::Max, ThresholdMode::Rel) => value > self.best * (threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => value > self.best + threshold,
        }
    }

    /// torch's `ReduceLROnPlateau.step(metrics)`.
    fn step(&mut self, value: f64) {
        if self.is_better(value) {
            self.best = value;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            // Checks during the cooldown do not count.
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.settings.patience {
            let lowered = (self.lr * self.settings.factor).max(self.settings.min_lr);
            if self.lr - lowered > self.settings.eps {
                self.lr = lowered;
            }
            self.cooldown_counter = self.settings.cooldown;
            self.num_bad_epochs = 0;
        }
    }
}

enum SchedulerKind {
    Burn {
        inner: ModuleLrScheduler,
        lr: ModuleLearningRate,
    },
    Plateau(PlateauState),
}

/// A learning-rate scheduler in a run, with its configuration (Lightning's `LRSchedulerConfig`).
pub struct Scheduler {
    kind: SchedulerKind,
    interval: Interval,
    frequency: usize,
    monitor: Option<String>,
    strict: bool,
    name: Option<String>,
}

impl Scheduler {
    /// Advances a burn schedule (what `lr_scheduler_step` does by default). A plateau scheduler
    /// needs the metric: [`step_on`](Self::step_on); here it does nothing.
    pub fn step(&mut self) {
        if let SchedulerKind::Burn { inner, lr } = &mut self.kind {
            *lr = inner.step();
        }
    }

    /// Steps a plateau scheduler with the monitored metric's value (what `lr_scheduler_step`
    /// does by default when the trainer read one); any other scheduler just steps, as torch's.
    pub fn step_on(&mut self, metric: f64) {
        match &mut self.kind {
            SchedulerKind::Plateau(plateau) => plateau.step(metric),
            SchedulerKind::Burn { .. } => self.step(),
        }
    }

    /// The learning rate in use (of the group matching every parameter).
    pub fn lr(&self) -> f64 {
        match &self.kind {
            SchedulerKind::Burn { lr, .. } => lr.base(),
            SchedulerKind::Plateau(plateau) => plateau.lr,
        }
    }

    fn module_lr(&self) -> ModuleLearningRate {
        match &self.kind {
            SchedulerKind::Burn { lr, .. } => lr.clone(),
            SchedulerKind::Plateau(plateau) => plateau.lr.into(),
        }
    }

    /// When it steps.
    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// Every how many intervals it steps.
    pub fn frequency(&self) -> usize {
        self.frequency
    }

    /// The metric a plateau scheduler follows; `None` for other schedulers.
    pub fn monitor(&self) -> Option<&str> {
        self.monitor.as_deref()
    }

    /// Whether a missing monitored metric is an error (else a warning that skips the step).
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// The name given in its configuration.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether it is a [`ReduceLrOnPlateau`], stepped with a metric after validation.
    pub fn reduces_on_plateau(&self) -> bool {
        matches!(self.kind, SchedulerKind::Plateau(_))
    }
}

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

/// The gradients of a module's parameters, as `backward` returns them.
#[derive(Debug)]
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

    /// burn's gradients, to replace them (the all-reduce across processes).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn params_mut(&mut self) -> &mut GradientsParams {
        &mut self.params
    }

    /// The global L2 norm of the gradients of `module`'s parameters (reads the device).
    pub fn norm<M: Module>(&self, module: &M) -> f64 {
        self.norm_tensor(module).map_or(0.0, |norm| norm.into_scalar::<f64>())
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

    /// Adds `other` to these gradients, parameter by parameter (a parameter with a gradient in
    /// only one of them keeps that one): how gradients are accumulated over several batches.
    /// The sums stay on the device.
    pub fn accumulate<M: Module>(&mut self, module: &M, other: Gradients) {
        let mut visitor = AddVisitor {
            sum: &mut self.params,
            other: other.params,
        };
        module.visit(&mut visitor);
    }

    /// These gradients moved to `device` (data-parallel training averages them on rank zero's).
    pub(crate) fn moved_to<M: Module>(self, device: &crate::Device, module: &M) -> Self {
        Self {
            params: self.params.to_device(device, module),
        }
    }

    /// Multiplies every gradient of `module`'s parameters by `factor`, on the device.
    pub fn scale<M: Module>(&mut self, module: &M, factor: f64) {
        let mut visitor = ScaleVisitor {
            grads: &mut self.params,
            factor,
        };
        module.visit(&mut visitor);
    }
}

struct AddVisitor<'a> {
    sum: &'a mut GradientsParams,
    other: GradientsParams,
}

impl ModuleVisitor for AddVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(other) = self.other.remove::<D>(param.id) {
            let sum = match self.sum.remove::<D>(param.id) {
                Some(grad) => grad + other,
                None => other,
            };
            self.sum.register::<D>(param.id, sum);
        }
    }
}

struct ScaleVisitor<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Lightning's `accumulate_grad_batches`, and its `GradientAccumulationScheduler`: how many
/// batches' gradients are summed (each loss divided by that number) before the optimizer steps,
/// from a given epoch on. Built from a number (`4`, the same for every epoch) or with
/// [`new`](Self::new) from `(epoch, factor)` pairs; epoch 0 gets 1 unless the schedule says
/// otherwise. The optimizer also steps on the last batch of every epoch, with the gradients of
/// the batches of that shorter window averaged over their actual count.
///
/// Lightning takes a schedule as a callback; here it is the value of the
/// [`accumulate_grad_batches`](crate::TrainerBuilder::accumulate_grad_batches) flag, so the two
/// cannot be set against each other.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GradientAccumulationScheduler {
    /// Epoch it starts at, and the factor from then on (signed to report negative input).
    scheduling: BTreeMap<usize, i64>,
}

impl GradientAccumulationScheduler {
    /// A schedule of `(epoch, factor)` pairs: from `epoch` on, accumulate `factor` batches.
    /// For example `[(0, 8), (4, 4), (8, 1)]`.
    pub fn new(scheduling: impl IntoIterator<Item = (usize, usize)>) -> Self {
        Self {
            scheduling: scheduling
                .into_iter()
                .map(|(epoch, factor)| (epoch, i64::try_from(factor).unwrap_or(i64::MAX)))
                .collect(),
        }
    }

    /// The number of batches accumulated in `epoch` (Lightning's
    /// `get_accumulate_grad_batches`).
    pub fn factor(&self, epoch: usize) -> usize {
        self.scheduling
            .range(..=epoch)
            .next_back()
            .map_or(1, |(_, factor)| usize::try_from(*factor).unwrap_or(1).max(1))
    }

    /// Whether any epoch accumulates more than one batch.
    pub fn accumulates(&self) -> bool {
        self.scheduling.values().any(|factor| *factor > 1)
    }

    /// The `(epoch, factor)` pairs (factors signed, as given).
    pub(crate) fn schedule(&self) -> &BTreeMap<usize, i64> {
        &self.scheduling
    }

    /// Every factor must be at least 1.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        match self.scheduling.iter().find(|(_, factor)| **factor < 1) {
            Some((epoch, factor)) => Err(Error::config(
                "accumulate_grad_batches",
                format!("{factor} batches (from epoch {epoch}) accumulates nothing; use 1 (no accumulation) or more"),
            )),
            None => Ok(()),
        }
    }
}

impl Default for GradientAccumulationScheduler {
    fn default() -> Self {
        Self::from(1usize)
    }
}

impl From<usize> for GradientAccumulationScheduler {
    fn from(factor: usize) -> Self {
        Self::new([(0, factor)])
    }
}

impl From<i32> for GradientAccumulationScheduler {
    fn from(factor: i32) -> Self {
        Self {
            scheduling: BTreeMap::from([(0, i64::from(factor))]),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    /// A linear layer on the autodiff device and the gradients of a loss whose gradient norm is
    /// well above 1.
    fn layer_and_grads() -> (Linear, Gradients) {
        let device = crate::Device::default().autodiff();
        let layer = LinearConfig::new(4, 3).init(&device);
        let grads = grads_of(&layer);
        (layer, grads)
    }

    fn grads_of(layer: &Linear) -> Gradients {
        let device = crate::Device::default().autodiff();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5, 2.0, 1.0, -1.0, 4.0], [2, 4]),
            &device,
        );
        let loss = layer.forward(x).powi_scalar(2).sum().mul_scalar(10.0);
        Gradients::from_loss(&loss, layer)
    }

    fn grad_values(layer: &Linear, grads: &Gradients) -> Vec<f32> {
        let weight = grads.get::<2>(layer.weight.id).expect("a weight gradient");
        let bias = grads
            .get::<1>(layer.bias.as_ref().expect("a bias").id)
            .expect("a bias gradient");
        let mut values = weight.into_data().try_to_vec::<f32>().unwrap();
        values.extend(bias.into_data().try_to_vec::<f32>().unwrap());
        values
    }

    #[test]
    fn clipping_by_norm_scales_like_torch_clip_grad_norm() {
        let (layer, grads) = layer_and_grads();
        let before = grad_values(&layer, &grads);
        let norm = before.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
        assert!(norm > 1.0, "the test needs a norm above the limit: {norm}");
        assert!((grads.norm(&layer) - norm).abs() < 1e-3 * norm);

        // torch: every gradient times min(1, max / (norm + 1e-6)).
        let mut clipped = grads;
        clipped.clip(&layer, GradientClip::Norm(0.5));
        let scale = 0.5 / (norm + 1e-6);
        for (after, before) in grad_values(&layer, &clipped).iter().zip(&before) {
            assert!(
                ((*after as f64) - (*before as f64) * scale).abs() < 1e-5,
                "{after} vs {before} * {scale}"
            );
        }
        assert!((clipped.norm(&layer) - 0.5).abs() < 1e-4);

        // Below the limit the scale is clamped to 1: nothing changes.
        let mut grads = grads_of(&layer);
        grads.clip(&layer, GradientClip::Norm(norm * 2.0));
        assert_eq!(grad_values(&layer, &grads), before);
    }

    fn plateau_lrs(settings: ReduceLrOnPlateau, lr: f64, values: &[f64]) -> Vec<f64> {
        let mut plateau = PlateauState::new(settings, lr);
        values
            .iter()
            .map(|value| {
                plateau.step(*value);
                plateau.lr
            })
            .collect()
    }

    fn assert_lrs(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn reduce_on_plateau_follows_torchs_rules_in_min_mode_with_a_relative_threshold() {
        // torch's `ReduceLROnPlateau(mode="min", factor=0.5, patience=1, threshold=0.1,
        // threshold_mode="rel", cooldown=1, min_lr=0.2)` from lr 1.0; better means below
        // best * 0.9. The learning rate after each `step(value)`, traced by torch's rules:
        //  10.0 best 10 | 9.5 bad 1 | 9.2 bad 2 > 1: lr 0.5, cooldown 1 | 9.1 cooldown: bad 0 |
        //  9.0 bad 1 (not below 9.0) | 8.0 best 8 | 8.0 bad 1 | 8.0 bad 2: lr 0.25, cooldown 1 |
        //  8.0 cooldown | 8.0 bad 1 | 8.0 bad 2: lr max(0.125, min_lr 0.2) = 0.2 | 8.0 cooldown |
        //  8.0 bad 1 | 8.0 bad 2: 0.2 - max(0.1, 0.2) is not above eps, lr stays 0.2.
        let settings = ReduceLrOnPlateau::new()
            .factor(0.5)
            .patience(1)
            .threshold(0.1)
            .cooldown(1)
            .min_lr(0.2);
        let values = [10.0, 9.5, 9.2, 9.1, 9.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0];
        let expected = [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2];
        assert_lrs(&plateau_lrs(settings, 1.0, &values), &expected);
    }

    #[test]
    fn reduce_on_plateau_follows_torchs_rules_in_max_mode_with_an_absolute_threshold() {
        // torch's `ReduceLROnPlateau(mode="max", factor=0.1, patience=0, threshold=0.5,
        // threshold_mode="abs")` from lr 1.0; better means above best + 0.5:
        //  1.0 best 1 | 1.4 bad 1 > 0: lr 0.1 | 2.0 best 2 | 2.4 bad 1: lr 0.01 | NaN bad 1: 0.001
        let settings = ReduceLrOnPlateau::new()
            .mode(Mode::Max)
            .factor(0.1)
            .patience(0)
            .threshold(0.5)
            .threshold_mode(ThresholdMode::Abs);
        let values = [1.0, 1.4, 2.0, 2.4, f64::NAN];
        assert_lrs(&plateau_lrs(settings, 1.0, &values), &[1.0, 0.1, 0.1, 0.01, 0.001]);
    }

    #[test]
    fn reduce_on_plateau_refuses_a_factor_that_does_not_lower() {
        assert!(ReduceLrOnPlateau::new().factor(1.0).validate().is_err());
        assert!(ReduceLrOnPlateau::new().factor(-0.5).validate().is_err());
        assert!(ReduceLrOnPlateau::new().factor(0.5).validate().is_ok());
    }

    #[test]
    fn clipping_by_value_clamps_every_gradient() {
        let (layer, mut grads) = layer_and_grads();
        let before = grad_values(&layer, &grads);
        grads.clip(&layer, GradientClip::Value(0.25));
        let after = grad_values(&layer, &grads);
        for (a, b) in after.iter().zip(&before) {
            assert_eq!(*a, b.clamp(-0.25, 0.25));
        }
    }
}
