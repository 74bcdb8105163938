//! Learning-rate schedulers as Lightning configures them (`lr_scheduler_config`): burn's
//! schedulers and [`ReduceLrOnPlateau`], with their interval, frequency, monitor and name.

use super::optimizer::{Interval, MakeScheduler};
use crate::Error;
use crate::core::mode::Mode;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};

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

    pub(super) fn build(self, lr: f64) -> Result<Scheduler, Error> {
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
pub(super) struct PlateauState {
    pub(super) settings: ReduceLrOnPlateau,
    pub(super) lr: f64,
    pub(super) best: f64,
    pub(super) num_bad_epochs: usize,
    pub(super) cooldown_counter: usize,
}

impl PlateauState {
    pub(super) fn new(settings: ReduceLrOnPlateau, lr: f64) -> Self {
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

pub(super) enum SchedulerKind {
    Burn {
        inner: ModuleLrScheduler,
        lr: ModuleLearningRate,
    },
    Plateau(PlateauState),
}

/// A learning-rate scheduler in a run, with its configuration (Lightning's `LRSchedulerConfig`).
pub struct Scheduler {
    pub(super) kind: SchedulerKind,
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

    pub(super) fn module_lr(&self) -> ModuleLearningRate {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
