//! [`LearningRateMonitor`]: Lightning's callback of that name.

use crate::hooks::{Callback, LightningModule};
use crate::optim::Interval;
use crate::{EpochContext, Error, StepContext};
use std::collections::BTreeMap;

/// Logs the learning rate of every param group of every optimizer (Lightning's
/// `LearningRateMonitor`), under Lightning's keys: `lr-{class}` (`lr-Adam`, `lr-AdamW`,
/// `lr-SGD`: torch's class name of the burn optimizer `configure_optimizers` configured;
/// `lr-Optimizer` for a type-erased `ModuleOptimizer`), `lr-Adam-1` for a second optimizer of a
/// class, `lr-AdamW/pg1`, `lr-AdamW/pg2` for param groups (or their names), or the scheduler's
/// `name`. When a fine-tuning callback adds a group, `lr-Adam` becomes `lr-Adam/pg1` and
/// `lr-Adam/pg2` appears, as in Lightning. With [`log_weight_decay`](Self::log_weight_decay),
/// each group's weight decay too, under `{key}-weight_decay`.
///
/// As in Lightning, values go straight to the loggers at the current step and into
/// `callback_metrics`: with the default interval, the rates of step-wise schedulers at the
/// start of every training batch that logs (every `log_every_n_steps`), those of epoch-wise
/// schedulers at the start of every epoch, and those of optimizers without a scheduler at both.
/// Reading a learning rate does not touch the device. A run without a logger is an error at
/// `on_train_start`, as in Lightning.
#[derive(Clone, Debug, Default)]
pub struct LearningRateMonitor {
    logging_interval: Option<Interval>,
    log_weight_decay: bool,
}

impl LearningRateMonitor {
    /// Logs at the interval of each optimizer's scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Logs every optimizer's rate at this interval only (Lightning's `logging_interval`):
    /// every logging step or every epoch, whatever its scheduler's interval.
    pub fn logging_interval(mut self, interval: Interval) -> Self {
        self.logging_interval = Some(interval);
        self
    }

    /// Also logs each param group's weight decay, under `{key}-weight_decay` (Lightning's
    /// `log_weight_decay`). A type-erased `ModuleOptimizer`'s is not known and not logged.
    pub fn log_weight_decay(mut self, log: bool) -> Self {
        self.log_weight_decay = log;
        self
    }

    /// The rates due at `at` (Lightning's `_extract_stats`): with an explicit logging
    /// interval, every optimizer's; else those whose scheduler steps at `at`, and those
    /// without a scheduler.
    fn due(&self, rates: &[crate::optim::LearningRate], at: Interval) -> BTreeMap<String, f64> {
        let mut due = BTreeMap::new();
        for rate in rates
            .iter()
            .filter(|rate| self.logging_interval.is_some() || rate.interval.is_none_or(|i| i == at))
        {
            due.insert(rate.name.clone(), rate.lr);
            if self.log_weight_decay
                && let Some(weight_decay) = rate.weight_decay
            {
                due.insert(format!("{}-weight_decay", rate.name), weight_decay);
            }
        }
        due
    }
}

impl<M: LightningModule> Callback<M> for LearningRateMonitor {
    fn on_train_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if !cx.has_logger() {
            cx.fail(Error::config(
                "logger",
                "`LearningRateMonitor` needs a logger to write to: keep the default logger or add one with \
                 `.logger(...)`, or remove the callback",
            ));
        }
    }

    fn on_train_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if self.logging_interval == Some(Interval::Epoch) || !cx.logs_this_step() {
            return;
        }
        let due = self.due(cx.learning_rates(), Interval::Step);
        cx.send_to_loggers(due);
    }

    fn on_train_epoch_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if self.logging_interval == Some(Interval::Step) {
            return;
        }
        let due = self.due(cx.learning_rates(), Interval::Epoch);
        cx.send_to_loggers(due);
    }
}
