//! Learning-rate schedulers as Lightning configures them (`lr_scheduler_config`): burn's
//! schedulers, [`ReduceLrOnPlateau`] and torch's `SWALR` ([`SwaLr`]), with their interval,
//! frequency, monitor and name. With param groups, a scheduler drives each group from its own
//! base rate, as torch's schedulers do.

use super::optimizer::{Interval, MakeScheduler};
use crate::Error;
use crate::core::mode::Mode;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use serde_json::{Value, json};
use std::sync::Arc;

/// Lightning's `lr_scheduler_config` dict: the scheduler, when it steps (`interval`, every
/// `frequency` epochs or batches), and the `name` a learning-rate monitor shows. A
/// [`ReduceLrOnPlateau`] also has the metric it follows (`monitor`, required) and `strict`.
///
/// ```ignore
/// OptimizerConfig::new(SgdConfig::new(), 0.1).with_scheduler(
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
    Swa(SwaLr),
}

impl LrSchedulerConfig {
    /// A burn scheduler, built by `make` from the optimizer's learning rate (so the rate is
    /// given once): `|lr| ExponentialLrSchedulerConfig::new(lr, 0.9).init()`. Any
    /// `LrScheduler` works: `|lr| Ok(MySchedule::new(lr))`. With param groups, `make` builds one
    /// scheduler per group from that group's base rate (torch's `base_lrs`), so a cosine
    /// schedule's floor or a warm-up's start stay what they are for each group.
    pub fn new<S, F>(make: F) -> Self
    where
        S: Into<ModuleLrScheduler>,
        F: Fn(f64) -> Result<S, String> + Send + Sync + 'static,
    {
        Self::with_kind(ConfigKind::Burn(Arc::new(move |lr| make(lr).map(Into::into))))
    }

    /// A [`ReduceLrOnPlateau`] following the metric `monitor` (a name in `callback_metrics`),
    /// stepped after the validation that produced it, as Lightning steps it.
    pub fn reduce_on_plateau(plateau: ReduceLrOnPlateau, monitor: impl Into<String>) -> Self {
        Self::with_kind(ConfigKind::Plateau {
            plateau,
            monitor: monitor.into(),
        })
    }

    /// torch's `SWALR` (see [`SwaLr`]), stepped every epoch: what `StochasticWeightAveraging`
    /// puts in place of the optimizer's scheduler when averaging starts.
    pub fn swa(swa: SwaLr) -> Self {
        Self::with_kind(ConfigKind::Swa(swa))
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

    /// The scheduler of an optimizer whose groups start from `base_lrs` (one per param group;
    /// one for an optimizer without groups).
    pub(super) fn build(self, base_lrs: &[f64]) -> Result<Scheduler, Error> {
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
                let groups = base_lrs
                    .iter()
                    .map(|&lr| {
                        let mut inner =
                            make(lr).map_err(|e| refuse(format!("the scheduler could not be built: {e}")))?;
                        // burn schedulers return the learning rate of the coming step: the first
                        // call gives the initial rate, as a torch scheduler's `base_lr`.
                        let lr = inner.step();
                        Ok(BurnGroup { inner, lr })
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                (SchedulerKind::Burn { groups }, None)
            }
            ConfigKind::Plateau { plateau, monitor } => {
                plateau.validate().map_err(refuse)?;
                (
                    SchedulerKind::Plateau(PlateauState::new(plateau, base_lrs)),
                    Some(monitor),
                )
            }
            ConfigKind::Swa(swa) => (SchedulerKind::Swa(SwaState::new(swa, base_lrs).map_err(refuse)?), None),
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

/// torch's `SWALR`: anneals each param group's learning rate from the rate it has when the
/// scheduler is made to `swa_lr`, over `anneal_epochs` epochs, along a cosine (default) or a
/// line, then keeps it there. Stepped once per epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct SwaLr {
    swa_lrs: Vec<f64>,
    anneal_epochs: usize,
    strategy: Annealing,
}

/// How [`SwaLr`] anneals (torch's `anneal_strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Annealing {
    /// `(1 - cos(pi t)) / 2` (torch's `"cos"`, the default).
    #[default]
    Cos,
    /// `t` (torch's `"linear"`).
    Linear,
}

impl SwaLr {
    /// Anneals every group to `swa_lr`, over 10 epochs, along a cosine (torch's defaults).
    pub fn new(swa_lr: f64) -> Self {
        Self::per_group(vec![swa_lr])
    }

    /// One SWA rate per param group (torch's list `swa_lr`); a single rate applies to every group.
    pub fn per_group(swa_lrs: Vec<f64>) -> Self {
        Self {
            swa_lrs,
            anneal_epochs: 10,
            strategy: Annealing::Cos,
        }
    }

    /// Epochs of the annealing (torch's `anneal_epochs`, default 10; 0 jumps to `swa_lr`).
    #[must_use]
    pub fn anneal_epochs(mut self, epochs: usize) -> Self {
        self.anneal_epochs = epochs;
        self
    }

    /// The shape of the annealing (torch's `anneal_strategy`).
    #[must_use]
    pub fn anneal_strategy(mut self, strategy: Annealing) -> Self {
        self.strategy = strategy;
        self
    }
}

/// A [`SwaLr`] in a run: torch's `SWALR` state.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct SwaState {
    swa_lrs: Vec<f64>,
    /// Each group's current rate (torch's `group["lr"]`, which `SWALR` reads back at each step).
    lrs: Vec<f64>,
    anneal_epochs: usize,
    strategy: Annealing,
    /// torch's `_step_count`.
    step_count: usize,
}

impl SwaState {
    /// torch's constructor, which takes a first step (its `_initial_step`).
    fn new(swa: SwaLr, current: &[f64]) -> Result<Self, String> {
        let swa_lrs = match swa.swa_lrs.len() {
            1 => vec![swa.swa_lrs[0]; current.len()],
            n if n == current.len() => swa.swa_lrs,
            n => {
                return Err(format!(
                    "SWA was given {n} learning rates for an optimizer with {} param groups; give one, or one per group",
                    current.len()
                ));
            }
        };
        if let Some(bad) = swa_lrs.iter().find(|lr| !(**lr > 0.0 && lr.is_finite())) {
            return Err(format!("the SWA learning rate {bad} is not a positive number"));
        }
        let mut state = Self {
            swa_lrs,
            lrs: current.to_vec(),
            anneal_epochs: swa.anneal_epochs,
            strategy: swa.strategy,
            step_count: 0,
        };
        state.step();
        Ok(state)
    }

    fn anneal(&self, t: f64) -> f64 {
        match self.strategy {
            Annealing::Cos => (1.0 - (std::f64::consts::PI * t).cos()) / 2.0,
            Annealing::Linear => t,
        }
    }

    /// torch's `SWALR.get_lr`, applied.
    fn step(&mut self) {
        self.step_count += 1;
        let mut step = self.step_count as f64 - 1.0;
        if self.anneal_epochs == 0 {
            step = step.max(1.0);
        }
        let span = self.anneal_epochs.max(1) as f64;
        let prev_alpha = self.anneal(((step - 1.0) / span).clamp(0.0, 1.0));
        let alpha = self.anneal((step / span).clamp(0.0, 1.0));
        for (lr, swa_lr) in self.lrs.iter_mut().zip(&self.swa_lrs) {
            // torch's `_get_initial_lr`: the rate the annealing started from.
            let initial = if prev_alpha == 1.0 {
                *swa_lr
            } else {
                (*lr - prev_alpha * swa_lr) / (1.0 - prev_alpha)
            };
            *lr = swa_lr * alpha + initial * (1.0 - alpha);
        }
    }

    fn state(&self) -> Value {
        json!({
            "kind": "swa",
            "swa_lrs": bits(&self.swa_lrs),
            "lrs": bits(&self.lrs),
            "anneal_epochs": self.anneal_epochs,
            "strategy": self.strategy,
            "step_count": self.step_count,
        })
    }

    fn from_state(saved: &Value) -> Result<Self, String> {
        let field = |key: &str| saved.get(key).ok_or_else(|| format!("`{key}` is missing"));
        let floats = |key: &str| -> Result<Vec<f64>, String> {
            serde_json::from_value::<Vec<u64>>(field(key)?.clone())
                .map(|v| v.into_iter().map(f64::from_bits).collect())
                .map_err(|e| format!("`{key}`: {e}"))
        };
        let count = |key: &str| {
            field(key)?
                .as_u64()
                .map(|n| n as usize)
                .ok_or(format!("`{key}` is not a count"))
        };
        Ok(Self {
            swa_lrs: floats("swa_lrs")?,
            lrs: floats("lrs")?,
            anneal_epochs: count("anneal_epochs")?,
            strategy: serde_json::from_value(field("strategy")?.clone()).map_err(|e| format!("`strategy`: {e}"))?,
            step_count: count("step_count")?,
        })
    }
}

/// Floats as their bits, for JSON (which has no infinity).
fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
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

/// A [`ReduceLrOnPlateau`] in a run: torch's `ReduceLROnPlateau` state, one rate per param group.
#[derive(Clone, Debug)]
pub(super) struct PlateauState {
    pub(super) settings: ReduceLrOnPlateau,
    pub(super) lrs: Vec<f64>,
    pub(super) best: f64,
    pub(super) num_bad_epochs: usize,
    pub(super) cooldown_counter: usize,
}

impl PlateauState {
    pub(super) fn new(settings: ReduceLrOnPlateau, lrs: &[f64]) -> Self {
        let best = match settings.mode {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        };
        Self {
            settings,
            lrs: lrs.to_vec(),
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

    /// torch's `ReduceLROnPlateau.step(metrics)`: every group's rate is lowered together.
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
            for lr in &mut self.lrs {
                let lowered = (*lr * self.settings.factor).max(self.settings.min_lr);
                if *lr - lowered > self.settings.eps {
                    *lr = lowered;
                }
            }
            self.cooldown_counter = self.settings.cooldown;
            self.num_bad_epochs = 0;
        }
    }
}

/// One param group's burn schedule and the rate it gave last.
pub(super) struct BurnGroup {
    pub(super) inner: ModuleLrScheduler,
    pub(super) lr: ModuleLearningRate,
}

pub(super) enum SchedulerKind {
    /// One burn schedule per param group.
    Burn {
        groups: Vec<BurnGroup>,
    },
    Plateau(PlateauState),
    Swa(SwaState),
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
    /// Advances the schedule of every param group (what `lr_scheduler_step` does by default). A
    /// plateau scheduler needs the metric: [`step_on`](Self::step_on); here it does nothing.
    pub fn step(&mut self) {
        match &mut self.kind {
            SchedulerKind::Burn { groups } => {
                for group in groups {
                    group.lr = group.inner.step();
                }
            }
            SchedulerKind::Swa(swa) => swa.step(),
            SchedulerKind::Plateau(_) => {}
        }
    }

    /// Steps a plateau scheduler with the monitored metric's value (what `lr_scheduler_step`
    /// does by default when the trainer read one); any other scheduler just steps, as torch's.
    pub fn step_on(&mut self, metric: f64) {
        match &mut self.kind {
            SchedulerKind::Plateau(plateau) => plateau.step(metric),
            _ => self.step(),
        }
    }

    /// The learning rate in use by the first param group (for an optimizer without groups, the
    /// rate of every parameter).
    pub fn lr(&self) -> f64 {
        self.group_lr(0).unwrap_or(f64::NAN)
    }

    /// The learning rate in use by param group `group`; `None` for a group it does not drive
    /// (one added during the fit).
    pub fn group_lr(&self, group: usize) -> Option<f64> {
        match &self.kind {
            SchedulerKind::Burn { groups } => groups.get(group).map(|g| g.lr.base()),
            SchedulerKind::Plateau(plateau) => plateau.lrs.get(group).copied(),
            SchedulerKind::Swa(swa) => swa.lrs.get(group).copied(),
        }
    }

    /// How many param groups it drives.
    pub fn group_count(&self) -> usize {
        match &self.kind {
            SchedulerKind::Burn { groups } => groups.len(),
            SchedulerKind::Plateau(plateau) => plateau.lrs.len(),
            SchedulerKind::Swa(swa) => swa.lrs.len(),
        }
    }

    /// The rates of an optimizer without param groups (burn's, which may vary by parameter).
    pub(super) fn module_lr(&self) -> ModuleLearningRate {
        match &self.kind {
            SchedulerKind::Burn { groups } => groups[0].lr.clone(),
            _ => self.lr().into(),
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

    /// Whether it is torch's `SWALR` ([`SwaLr`]).
    pub fn is_swa(&self) -> bool {
        matches!(self.kind, SchedulerKind::Swa(_))
    }

    /// Its state as JSON, for a checkpoint: each group's burn schedule (its record's bytes) and
    /// rate, a plateau scheduler's counters and rates, or `SWALR`'s. Floats are kept as their
    /// bits (JSON has no infinity).
    pub(super) fn state(&self) -> Result<Value, Error> {
        Ok(match &self.kind {
            SchedulerKind::Burn { groups } => {
                let group = |g: &BurnGroup| -> Result<Value, Error> {
                    let record = g
                        .inner
                        .to_record()
                        .into_bytes()
                        .map_err(|e| Error::Checkpoint(format!("cannot serialize the scheduler's state: {e}")))?;
                    Ok(json!({ "record": record.to_vec(), "lr": g.lr.base().to_bits() }))
                };
                let mut state = group(&groups[0])?;
                if groups.len() > 1 {
                    state["groups"] = Value::Array(groups[1..].iter().map(group).collect::<Result<_, _>>()?);
                }
                state
            }
            SchedulerKind::Plateau(plateau) => json!({
                "lr": plateau.lrs[0].to_bits(),
                "more_lrs": bits(&plateau.lrs[1..]),
                "best": plateau.best.to_bits(),
                "num_bad_epochs": plateau.num_bad_epochs,
                "cooldown_counter": plateau.cooldown_counter,
            }),
            SchedulerKind::Swa(swa) => swa.state(),
        })
    }

    /// Whether `saved` (from [`state`](Self::state)) is `SWALR`'s, which replaced the
    /// configured scheduler during the fit that saved it.
    pub(super) fn saved_is_swa(saved: &Value) -> bool {
        saved.get("kind").and_then(Value::as_str) == Some("swa")
    }

    /// The `SWALR` a checkpoint saved, as a scheduler stepped every epoch.
    pub(super) fn from_saved_swa(saved: &Value) -> Result<Self, Error> {
        let swa = SwaState::from_state(saved)
            .map_err(|why| Error::Checkpoint(format!("cannot restore the SWA scheduler's state: {why}")))?;
        Ok(Self {
            kind: SchedulerKind::Swa(swa),
            interval: Interval::Epoch,
            frequency: 1,
            monitor: None,
            strict: true,
            name: None,
        })
    }

    /// Restores the state [`state`](Self::state) saved.
    pub(super) fn restore(&mut self, saved: &Value) -> Result<(), Error> {
        let bad = |why: String| Error::Checkpoint(format!("cannot restore the scheduler's state: {why}"));
        let float = |value: &Value, key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .map(f64::from_bits)
                .ok_or_else(|| bad(format!("`{key}` is missing")))
        };
        let count = |key: &str| {
            saved
                .get(key)
                .and_then(Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("`{key}` is missing")))
        };
        match &mut self.kind {
            SchedulerKind::Burn { groups } => {
                let more = saved
                    .get("groups")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if more.len() + 1 != groups.len() {
                    return Err(bad(format!(
                        "it was saved for {} param groups, and `configure_optimizers` configures {}",
                        more.len() + 1,
                        groups.len()
                    )));
                }
                for (group, saved) in groups.iter_mut().zip(std::iter::once(saved).chain(&more)) {
                    let record: Vec<u8> = saved
                        .get("record")
                        .and_then(|r| serde_json::from_value(r.clone()).ok())
                        .ok_or_else(|| bad("its record is missing (a plateau scheduler's state?)".into()))?;
                    let record = burn::optim::lr_scheduler::LrSchedulerRecord::from_bytes(
                        burn::tensor::Bytes::from_bytes_vec(record),
                    )
                    .map_err(|e| bad(e.to_string()))?;
                    group.inner = group.inner.clone().load_record(record);
                    group.lr = float(saved, "lr")?.into();
                }
            }
            SchedulerKind::Plateau(plateau) => {
                let more: Vec<f64> = saved
                    .get("more_lrs")
                    .and_then(|v| serde_json::from_value::<Vec<u64>>(v.clone()).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(f64::from_bits)
                    .collect();
                let mut lrs = vec![float(saved, "lr")?];
                lrs.extend(more);
                if lrs.len() != plateau.lrs.len() {
                    return Err(bad(format!(
                        "it was saved for {} param groups, and `configure_optimizers` configures {}",
                        lrs.len(),
                        plateau.lrs.len()
                    )));
                }
                plateau.lrs = lrs;
                plateau.best = float(saved, "best")?;
                plateau.num_bad_epochs = count("num_bad_epochs")?;
                plateau.cooldown_counter = count("cooldown_counter")?;
            }
            SchedulerKind::Swa(swa) => {
                *swa = SwaState::from_state(saved).map_err(bad)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plateau_lrs(settings: ReduceLrOnPlateau, lr: f64, values: &[f64]) -> Vec<f64> {
        let mut plateau = PlateauState::new(settings, &[lr]);
        values
            .iter()
            .map(|value| {
                plateau.step(*value);
                plateau.lrs[0]
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
    fn swa_anneals_from_the_current_rate_as_torchs_swalr() {
        // torch: `SWALR(opt, swa_lr=0.05, anneal_epochs=2, anneal_strategy="cos")` on a group at
        // 0.1 gives 0.1 at once, then 0.075, 0.05, 0.05 after each `step()`; a second group at
        // 0.2 with its own swa_lr 0.1 gives twice those.
        let mut swa = SwaState::new(SwaLr::per_group(vec![0.05, 0.1]).anneal_epochs(2), &[0.1, 0.2]).unwrap();
        let mut seen = vec![swa.lrs.clone()];
        for _ in 0..3 {
            swa.step();
            seen.push(swa.lrs.clone());
        }
        for (got, want) in seen.iter().zip([0.1, 0.075, 0.05, 0.05]) {
            assert_lrs(got, &[want, 2.0 * want]);
        }
        // Linear, and `anneal_epochs=0` jumps to the SWA rate at once.
        let mut linear = SwaState::new(
            SwaLr::new(0.0).anneal_epochs(4).anneal_strategy(Annealing::Linear),
            &[1.0],
        );
        assert!(linear.is_err(), "a rate that is not positive is refused");
        linear = SwaState::new(
            SwaLr::new(0.2).anneal_epochs(4).anneal_strategy(Annealing::Linear),
            &[1.0],
        );
        let linear = linear.as_mut().unwrap();
        linear.step();
        assert_lrs(&linear.lrs, &[0.8]);
        let at_once = SwaState::new(SwaLr::new(0.2).anneal_epochs(0), &[1.0]).unwrap();
        assert_lrs(&at_once.lrs, &[0.2]);
        assert!(SwaState::new(SwaLr::per_group(vec![0.1, 0.2, 0.3]), &[1.0, 1.0]).is_err());
        let restored = SwaState::from_state(&linear.state()).unwrap();
        assert_eq!(&restored, &*linear);
    }

    #[test]
    fn reduce_on_plateau_refuses_a_factor_that_does_not_lower() {
        assert!(ReduceLrOnPlateau::new().factor(1.0).validate().is_err());
        assert!(ReduceLrOnPlateau::new().factor(-0.5).validate().is_err());
        assert!(ReduceLrOnPlateau::new().factor(0.5).validate().is_ok());
    }
}
