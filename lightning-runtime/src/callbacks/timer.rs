//! `max_time` and the `Timer` callback (Lightning's): a wall-clock limit on training, checked
//! after every training batch (or epoch), that stops the run the way a stop request does (the
//! epoch's validation runs and checkpoints are saved), and the time each stage took.

use crate::core::state::RunningStage;
use crate::hooks::{Callback, LightningModule};
use crate::optim::Interval;
use crate::{EpochContext, HookContext, JsonValue, StepContext};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When each stage started and ended.
#[derive(Debug, Default)]
struct Times {
    started: [Option<Instant>; 3],
    ended: [Option<Instant>; 3],
}

/// The stages a [`Timer`] times.
fn slot(stage: RunningStage) -> Option<usize> {
    match stage {
        RunningStage::Training => Some(0),
        RunningStage::Validating | RunningStage::SanityChecking => Some(1),
        RunningStage::Testing => Some(2),
        RunningStage::Predicting => None,
    }
}

/// Lightning's `Timer`: stops fitting once training has taken `duration` (checked after every
/// training batch, or every epoch with `Interval::Epoch`), and measures how long training,
/// validation and testing took. The trainer adds one for `max_time` unless one is given. Clones
/// share their measurements: keep one to read them after the run.
#[derive(Clone, Debug)]
pub struct Timer {
    duration: Option<Duration>,
    interval: Interval,
    verbose: bool,
    times: Arc<Mutex<Times>>,
}

impl Timer {
    /// Stops training after `duration` (`None`: only measures).
    pub fn new(duration: Option<Duration>) -> Self {
        Self {
            duration,
            interval: Interval::Step,
            verbose: true,
            times: Arc::default(),
        }
    }

    /// Checks the limit after every training batch (`Interval::Step`, the default) or epoch.
    #[must_use]
    pub fn interval(mut self, interval: Interval) -> Self {
        self.interval = interval;
        self
    }

    /// Whether it says so when the limit is reached (default true).
    #[must_use]
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The limit.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// How long `stage` has run (up to now while it runs; the sanity check counts as
    /// validation).
    pub fn time_elapsed(&self, stage: RunningStage) -> Duration {
        let Some(i) = slot(stage) else {
            return Duration::ZERO;
        };
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        match (times.started[i], times.ended[i]) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            (Some(start), None) => start.elapsed(),
            (None, _) => Duration::ZERO,
        }
    }

    /// What is left of the limit for training.
    pub fn time_remaining(&self) -> Option<Duration> {
        self.duration
            .map(|d| d.saturating_sub(self.time_elapsed(RunningStage::Training)))
    }

    fn mark(&self, stage: RunningStage, start: bool) {
        let Some(i) = slot(stage) else { return };
        let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        if start {
            times.started[i] = Some(Instant::now());
            times.ended[i] = None;
        } else {
            times.ended[i] = Some(Instant::now());
        }
    }

    /// Lightning's `_check_time_remaining`: whether the limit is past (then the trainer must
    /// stop), saying so through `print` (the trainer's output, which keeps progress bars whole).
    fn check(&self, print: impl FnOnce(&str)) -> bool {
        let Some(limit) = self.duration else { return false };
        let elapsed = self.time_elapsed(RunningStage::Training);
        if elapsed >= limit {
            if self.verbose {
                print(&format!(
                    "Time limit reached. Elapsed time is {elapsed:.3?}. Signaling Trainer to stop."
                ));
            }
            return true;
        }
        false
    }
}

impl<M: LightningModule> Callback<M> for Timer {
    fn on_train_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        self.mark(RunningStage::Training, true);
    }
    fn on_train_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.mark(RunningStage::Training, false);
    }
    fn on_validation_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        self.mark(cx.stage, true);
    }
    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        self.mark(cx.stage, false);
    }
    fn on_test_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        self.mark(RunningStage::Testing, true);
    }
    fn on_test_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.mark(RunningStage::Testing, false);
    }
    fn on_train_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: Option<&crate::StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if self.interval == Interval::Step && self.check(|line| cx.print(line)) {
            cx.stop();
        }
    }
    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if self.interval == Interval::Epoch && self.check(|line| cx.print(line)) {
            cx.stop();
        }
    }
    fn state_dict(&mut self) -> Option<JsonValue> {
        let elapsed = |stage| self.time_elapsed(stage).as_secs_f64();
        Some(serde_json::json!({
            "time_elapsed": {
                "train": elapsed(RunningStage::Training),
                "validate": elapsed(RunningStage::Validating),
                "test": elapsed(RunningStage::Testing),
            }
        }))
    }
}
