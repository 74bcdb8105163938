//! [`EarlyStopping`]: stops fitting when a monitored metric stops improving.

use super::monitor::{MonitorContext, bad_state, score_from_json, score_to_json};
use crate::core::mode::Mode;
use crate::core::state::TrainerState;
use crate::hooks::{Callback, CallbackRole, LightningModule};
use crate::{EpochContext, Error, HookContext, JsonValue};
use std::borrow::Cow;

/// Why [`EarlyStopping`] stopped training (Lightning's `EarlyStoppingReason`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EarlyStoppingReason {
    /// The monitored value reached `stopping_threshold`.
    StoppingThreshold = 1,
    /// The monitored value went past `divergence_threshold`.
    DivergenceThreshold = 2,
    /// `patience` checks without improvement.
    PatienceExhausted = 3,
    /// The monitored value was NaN or infinite (`check_finite`).
    NonFiniteMetric = 4,
}

impl EarlyStoppingReason {
    fn from_value(value: u64) -> Option<Self> {
        match value {
            1 => Some(Self::StoppingThreshold),
            2 => Some(Self::DivergenceThreshold),
            3 => Some(Self::PatienceExhausted),
            4 => Some(Self::NonFiniteMetric),
            _ => None,
        }
    }
}

/// Stops fitting when a monitored metric stops improving, as Lightning's `EarlyStopping`:
/// checked at the end of each training epoch when validation runs once per epoch at its end,
/// otherwise after each validation run (never during the sanity check, nor under
/// `fast_dev_run`); `patience` counts checks. Each check, in Lightning's order: a non-finite
/// value stops (`check_finite`), then reaching `stopping_threshold`, then passing
/// `divergence_threshold`; else an improvement by more than `min_delta` resets the wait, and
/// `patience` checks without one stop.
///
/// After `fit`, `trainer.early_stopping_callback()` reads `stopped_epoch()`, `stop_reason()`,
/// `wait_count()` and `best_score()`.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    monitor: String,
    mode: Mode,
    patience: usize,
    min_delta: f64,
    verbose: bool,
    strict: bool,
    check_finite: bool,
    stopping_threshold: Option<f64>,
    divergence_threshold: Option<f64>,
    check_on_train_epoch_end: Option<bool>,
    log_rank_zero_only: bool,
    wait_count: usize,
    best_score: f64,
    /// Lightning's `stopped_epoch`: 0 until it stops.
    stopped_epoch: usize,
    stop_reason: Option<EarlyStoppingReason>,
    stop_message: Option<String>,
}

impl EarlyStopping {
    /// Stops after 3 checks without improvement of `monitor` (`Mode::Min`: smaller is better).
    pub fn new(monitor: impl Into<String>, mode: Mode) -> Self {
        Self {
            monitor: monitor.into(),
            mode,
            patience: 3,
            min_delta: 0.0,
            verbose: false,
            strict: true,
            check_finite: true,
            stopping_threshold: None,
            divergence_threshold: None,
            check_on_train_epoch_end: None,
            log_rank_zero_only: false,
            wait_count: 0,
            best_score: mode.worst(),
            stopped_epoch: 0,
            stop_reason: None,
            stop_message: None,
        }
    }

    /// How many checks without improvement stop training (default 3).
    #[must_use]
    pub fn patience(mut self, checks: usize) -> Self {
        self.patience = checks;
        self
    }

    /// The smallest change that counts as an improvement (its sign is ignored: the mode gives
    /// the direction).
    #[must_use]
    pub fn min_delta(mut self, delta: f64) -> Self {
        self.min_delta = delta.abs();
        self
    }

    /// Prints every improvement and the reason it stops (Lightning's `verbose`).
    #[must_use]
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// Whether a monitored metric that was not logged is an error (default true, as in
    /// Lightning); with `false` the check is skipped with a warning.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Whether a NaN or infinite value stops training at once (default true).
    #[must_use]
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Stops as soon as the monitored value is better than `threshold` (below it in
    /// `Mode::Min`).
    #[must_use]
    pub fn stopping_threshold(mut self, threshold: f64) -> Self {
        self.stopping_threshold = Some(threshold);
        self
    }

    /// Stops as soon as the monitored value is worse than `threshold` (above it in
    /// `Mode::Min`): training diverged.
    #[must_use]
    pub fn divergence_threshold(mut self, threshold: f64) -> Self {
        self.divergence_threshold = Some(threshold);
        self
    }

    /// `Some(true)`: check at the end of each training epoch; `Some(false)`: after each
    /// validation run; `None` (default): as Lightning decides from the validation flags.
    #[must_use]
    pub fn check_on_train_epoch_end(mut self, at_epoch_end: Option<bool>) -> Self {
        self.check_on_train_epoch_end = at_epoch_end;
        self
    }

    /// Lightning's `log_rank_zero_only`: with several processes, only rank 0 prints. The
    /// trainer runs one process, so this is accepted and changes nothing.
    #[must_use]
    pub fn log_rank_zero_only(mut self, only: bool) -> Self {
        self.log_rank_zero_only = only;
        self
    }

    /// The epoch at which it stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stop_reason.map(|_| self.stopped_epoch)
    }

    /// Why it stopped training, if it did.
    pub fn stop_reason(&self) -> Option<EarlyStoppingReason> {
        self.stop_reason
    }

    /// Why it stopped, in words (what `verbose` prints), if it did.
    pub fn stop_message(&self) -> Option<&str> {
        self.stop_message.as_deref()
    }

    /// Checks in a row without improvement.
    pub fn wait_count(&self) -> usize {
        self.wait_count
    }

    /// The best monitored value so far (`inf` in `Mode::Min`, `-inf` in `Mode::Max`, before
    /// the first check).
    pub fn best_score(&self) -> f64 {
        self.best_score
    }

    fn checks_on_train_epoch_end(&self, cx: &TrainerState) -> bool {
        self.check_on_train_epoch_end.unwrap_or(cx.validates_at_epoch_end)
    }

    /// Lightning's `_should_skip_check`, and early stopping is off under `fast_dev_run`.
    fn skips(cx: &TrainerState) -> bool {
        !cx.fitting() || cx.sanity_checking() || cx.fast_dev_run
    }

    /// Lightning's `_evaluate_stopping_criteria`: whether to stop, and the message.
    fn evaluate(&mut self, current: f64) -> (bool, Option<String>) {
        let monitor = &self.monitor;
        let order = self.mode.order();
        let (reason, message) = if self.check_finite && !current.is_finite() {
            (
                EarlyStoppingReason::NonFiniteMetric,
                format!(
                    "Monitored metric {monitor} = {current} is not finite. Previous best value was {:.3}. \
                     Signaling Trainer to stop.",
                    self.best_score
                ),
            )
        } else if let Some(threshold) = self.stopping_threshold
            && self.mode.better(current, threshold)
        {
            (
                EarlyStoppingReason::StoppingThreshold,
                format!(
                    "Stopping threshold reached: {monitor} = {current} {order} {threshold}. Signaling Trainer to stop."
                ),
            )
        } else if let Some(threshold) = self.divergence_threshold
            && self.mode.better(-current, -threshold)
        {
            (
                EarlyStoppingReason::DivergenceThreshold,
                format!(
                    "Divergence threshold reached: {monitor} = {current} {order} {threshold}. Signaling Trainer to stop."
                ),
            )
        } else {
            let shifted = match self.mode {
                Mode::Min => current + self.min_delta,
                Mode::Max => current - self.min_delta,
            };
            if self.mode.better(shifted, self.best_score) {
                let message = if self.best_score.is_finite() {
                    format!(
                        "Metric {monitor} improved by {:.3} >= min_delta = {}. New best score: {current:.3}",
                        (self.best_score - current).abs(),
                        self.min_delta
                    )
                } else {
                    format!("Metric {monitor} improved. New best score: {current:.3}")
                };
                self.best_score = current;
                self.wait_count = 0;
                return (false, Some(message));
            }
            self.wait_count += 1;
            if self.wait_count < self.patience {
                return (false, None);
            }
            (
                EarlyStoppingReason::PatienceExhausted,
                format!(
                    "Monitored metric {monitor} did not improve in the last {} records. Best score: {:.3}. \
                     Signaling Trainer to stop.",
                    self.wait_count, self.best_score
                ),
            )
        };
        self.stop_reason = Some(reason);
        (true, Some(message))
    }

    fn check(&mut self, cx: &mut dyn MonitorContext) -> Result<(), Error> {
        let metrics = cx.metrics();
        let Some(&current) = metrics.get(&self.monitor) else {
            let message = format!(
                "EarlyStopping monitors `{}`, which was not logged; logged metrics: {}. Log it, monitor one of these, \
                 or set `.strict(false)` to skip the check while it is missing",
                self.monitor,
                metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            if self.strict {
                return Err(Error::Hook {
                    hook: "EarlyStopping",
                    message,
                });
            }
            tracing::warn!(target: "burn_lightning", "{message}");
            return Ok(());
        };
        let (stop, message) = self.evaluate(current);
        if stop {
            self.stopped_epoch = cx.current_epoch;
            self.stop_message = message.clone();
            cx.request_stop();
        }
        if let Some(message) = message
            && self.verbose
        {
            // One process: rank zero, whatever `log_rank_zero_only` says.
            println!("{message}");
        }
        Ok(())
    }
}

impl<M: LightningModule> Callback<M> for EarlyStopping {
    fn role(&self) -> CallbackRole {
        CallbackRole::Monitor
    }

    fn state_key(&self) -> Cow<'static, str> {
        Cow::Owned(format!(
            "EarlyStopping{{'monitor': '{}', 'mode': '{}'}}",
            self.monitor,
            self.mode.as_str()
        ))
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if !Self::skips(cx)
            && self.checks_on_train_epoch_end(cx)
            && let Err(e) = self.check(cx)
        {
            cx.fail(e);
        }
    }

    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        if !Self::skips(cx)
            && !self.checks_on_train_epoch_end(cx)
            && let Err(e) = self.check(cx)
        {
            cx.fail(e);
        }
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": score_to_json(self.best_score),
            "patience": self.patience,
            "stopping_reason": self.stop_reason.map_or(0, |r| r as u64),
            "stopping_reason_message": self.stop_message,
        }))
    }

    fn load_state_dict(&mut self, state: JsonValue) -> Result<(), Error> {
        const NAME: &str = "EarlyStopping";
        let get = |key: &str| state.get(key).unwrap_or(&JsonValue::Null);
        let count = |key: &str| {
            get(key)
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad_state(NAME, key, get(key)))
        };
        self.wait_count = count("wait_count")?;
        self.stopped_epoch = count("stopped_epoch")?;
        self.patience = count("patience")?;
        self.best_score = score_from_json(get("best_score"), "best_score", NAME)?.unwrap_or(self.mode.worst());
        self.stop_reason = match get("stopping_reason") {
            JsonValue::Null => None,
            value => match value.as_u64() {
                Some(0) => None,
                Some(v) => {
                    Some(EarlyStoppingReason::from_value(v).ok_or_else(|| bad_state(NAME, "stopping_reason", value))?)
                }
                None => return Err(bad_state(NAME, "stopping_reason", value)),
            },
        };
        self.stop_message = get("stopping_reason_message").as_str().map(str::to_string);
        Ok(())
    }
}
