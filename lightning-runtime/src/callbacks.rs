//! Built-in callbacks: [`EpochSummary`] (one line per epoch), [`ModelCheckpoint`] and
//! [`EarlyStopping`].

use crate::context::TrainerFn;
use crate::hooks::{Callback, CallbackRole, LightningModule};
use crate::{EpochContext, Error, HookContext, JsonValue, Stage};
use std::path::PathBuf;
use std::time::Instant;

/// Prints one plain line per training epoch with its metrics and duration, and the results of
/// `validate` and `test`. Added by default; `enable_progress_bar(false)` turns it off.
#[derive(Debug, Default)]
pub struct EpochSummary {
    epoch_started: Option<Instant>,
}

impl EpochSummary {
    /// `name=value` for every metric, without the `_step`/`_epoch` twins of a metric logged
    /// both ways (the bare name already shows the epoch value at this point).
    fn line(metrics: &std::collections::BTreeMap<String, f64>) -> String {
        let twin = |name: &str, suffix: &str| name.strip_suffix(suffix).is_some_and(|base| metrics.contains_key(base));
        metrics
            .iter()
            .filter(|(name, _)| !twin(name, "_step") && !twin(name, "_epoch"))
            .map(|(name, value)| format!("{name}={value:.4}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl<M: LightningModule> Callback<M> for EpochSummary {
    fn role(&self) -> CallbackRole {
        // Runs after the module's `on_train_epoch_end`, so what it logs there is printed.
        CallbackRole::Monitor
    }

    fn on_train_epoch_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        self.epoch_started = Some(Instant::now());
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        let seconds = self.epoch_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        println!(
            "epoch {} | step {} | {} | {seconds:.2}s",
            cx.current_epoch,
            cx.global_step,
            Self::line(&cx.callback_metrics())
        );
    }

    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        if cx.function == TrainerFn::Validating {
            println!("validate | {}", Self::line(&cx.callback_metrics()));
        }
    }

    fn on_test_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        println!("test | {}", Self::line(&cx.callback_metrics()));
    }
}

/// Whether a smaller or a larger monitored value is better.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    #[default]
    Min,
    Max,
}

impl Mode {
    fn better(self, candidate: f64, best: f64) -> bool {
        match self {
            Mode::Min => candidate < best,
            Mode::Max => candidate > best,
        }
    }
}

/// Saves checkpoints at the end of every training epoch (after its validation), as Lightning's
/// `ModelCheckpoint`: to `<run dir>/checkpoints/epoch=E-step=S.ckpt`, keeping the latest one, or
/// the `save_top_k` best by a monitored metric. Added by default unless
/// `enable_checkpointing(false)` or `fast_dev_run`.
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    dirpath: Option<PathBuf>,
    monitor: Option<String>,
    mode: Mode,
    save_top_k: usize,
    save_last: bool,
    /// Saved files and their scores (the score is the step when nothing is monitored).
    kept: Vec<(PathBuf, f64)>,
    best_model_path: Option<PathBuf>,
    best_model_score: Option<f64>,
    last_model_path: Option<PathBuf>,
}

impl Default for ModelCheckpoint {
    fn default() -> Self {
        Self {
            dirpath: None,
            monitor: None,
            mode: Mode::Min,
            save_top_k: 1,
            save_last: false,
            kept: Vec::new(),
            best_model_path: None,
            best_model_score: None,
            last_model_path: None,
        }
    }
}

impl ModelCheckpoint {
    /// Keeps the latest checkpoint in `<run dir>/checkpoints`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes into `dir` instead of `<run dir>/checkpoints`.
    #[must_use]
    pub fn dirpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirpath = Some(dir.into());
        self
    }

    /// Keeps the best checkpoints by the metric `name` (`Mode::Min`: smaller is better).
    #[must_use]
    pub fn monitor(mut self, name: impl Into<String>, mode: Mode) -> Self {
        self.monitor = Some(name.into());
        self.mode = mode;
        self
    }

    /// How many checkpoints to keep (0 keeps none).
    #[must_use]
    pub fn save_top_k(mut self, k: usize) -> Self {
        self.save_top_k = k;
        self
    }

    /// Also writes `last.ckpt` every epoch.
    #[must_use]
    pub fn save_last(mut self, save: bool) -> Self {
        self.save_last = save;
        self
    }

    /// The best checkpoint so far.
    pub fn best_model_path(&self) -> Option<&PathBuf> {
        self.best_model_path.as_ref()
    }

    pub fn best_model_score(&self) -> Option<f64> {
        self.best_model_score
    }

    fn save(&mut self, cx: &mut EpochContext<'_>) -> Result<(), Error> {
        let Some(dir) = self
            .dirpath
            .clone()
            .or_else(|| cx.log_dir().map(|d| d.join("checkpoints")))
        else {
            return Ok(());
        };
        let path = dir.join(format!("epoch={}-step={}.ckpt", cx.current_epoch, cx.global_step));
        if self.save_last {
            let last = dir.join("last.ckpt");
            cx.save_checkpoint(&last);
            self.last_model_path = Some(last);
        }
        if self.save_top_k == 0 {
            return Ok(());
        }
        let score = match &self.monitor {
            None => cx.global_step as f64,
            Some(name) => {
                let metrics = cx.callback_metrics();
                match metrics.get(name) {
                    Some(v) => *v,
                    None => {
                        return Err(Error::Hook {
                            hook: "on_train_epoch_end",
                            message: format!(
                                "ModelCheckpoint monitors `{name}`, which was not logged; logged metrics: {}",
                                metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                }
            }
        };
        // Without a monitor the newest is the best; with one, the mode decides.
        let mode = if self.monitor.is_some() { self.mode } else { Mode::Max };
        let worst = self.kept.iter().copied_worst(mode);
        if self.kept.len() >= self.save_top_k && worst.is_some_and(|(_, w)| !mode.better(score, w)) {
            return Ok(());
        }
        cx.save_checkpoint(&path);
        self.kept.push((path.clone(), score));
        if self.kept.len() > self.save_top_k
            && let Some((evicted, _)) = self.kept.iter().copied_worst(mode)
        {
            self.kept.retain(|(p, _)| *p != evicted);
            cx.remove_checkpoint(evicted);
        }
        if self.best_model_score.is_none_or(|b| mode.better(score, b)) {
            self.best_model_score = Some(score);
            self.best_model_path = Some(path);
        }
        Ok(())
    }
}

trait Worst {
    fn copied_worst(self, mode: Mode) -> Option<(PathBuf, f64)>;
}

impl<'a, I: Iterator<Item = &'a (PathBuf, f64)>> Worst for I {
    fn copied_worst(self, mode: Mode) -> Option<(PathBuf, f64)> {
        self.fold(None, |worst: Option<(PathBuf, f64)>, (path, score)| match worst {
            Some((_, w)) if !mode.better(w, *score) => worst,
            _ => Some((path.clone(), *score)),
        })
    }
}

impl<M: LightningModule> Callback<M> for ModelCheckpoint {
    fn role(&self) -> CallbackRole {
        CallbackRole::Checkpoint
    }

    fn setup(&mut self, _module: &mut M, stage: Stage, _cx: &mut HookContext<'_>) {
        // A new fit writes into a new run directory: what an earlier fit kept is not comparable.
        if stage == Stage::Fit {
            self.kept.clear();
            self.best_model_path = None;
            self.best_model_score = None;
            self.last_model_path = None;
        }
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if let Err(e) = self.save(cx) {
            cx.fail(e);
        }
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({
            "monitor": self.monitor,
            "best_model_path": self.best_model_path,
            "best_model_score": self.best_model_score,
            "last_model_path": self.last_model_path,
            "best_k_models": self.kept.iter().map(|(p, s)| (p.display().to_string(), *s)).collect::<std::collections::BTreeMap<_, _>>(),
        }))
    }
}

/// Stops fitting when a monitored metric stops improving, as Lightning's `EarlyStopping`:
/// checked after each training epoch (after its validation); `patience` counts checks.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    monitor: String,
    mode: Mode,
    patience: usize,
    min_delta: f64,
    wait_count: usize,
    best: Option<f64>,
    stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Stops after 3 checks without improvement of `monitor` (`Mode::Min`: smaller is better).
    pub fn new(monitor: impl Into<String>, mode: Mode) -> Self {
        Self {
            monitor: monitor.into(),
            mode,
            patience: 3,
            min_delta: 0.0,
            wait_count: 0,
            best: None,
            stopped_epoch: None,
        }
    }

    #[must_use]
    pub fn patience(mut self, checks: usize) -> Self {
        self.patience = checks;
        self
    }

    /// The smallest change that counts as an improvement.
    #[must_use]
    pub fn min_delta(mut self, delta: f64) -> Self {
        self.min_delta = delta.abs();
        self
    }

    /// The epoch at which it stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }
}

impl<M: LightningModule> Callback<M> for EarlyStopping {
    fn role(&self) -> CallbackRole {
        CallbackRole::Monitor
    }

    fn setup(&mut self, _module: &mut M, stage: Stage, _cx: &mut HookContext<'_>) {
        if stage == Stage::Fit {
            self.wait_count = 0;
            self.best = None;
            self.stopped_epoch = None;
        }
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        let metrics = cx.callback_metrics();
        let Some(&current) = metrics.get(&self.monitor) else {
            cx.fail(Error::Hook {
                hook: "on_train_epoch_end",
                message: format!(
                    "EarlyStopping monitors `{}`, which was not logged; logged metrics: {}",
                    self.monitor,
                    metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
            return;
        };
        let shifted = match self.mode {
            Mode::Min => current + self.min_delta,
            Mode::Max => current - self.min_delta,
        };
        if current.is_finite() && self.best.is_none_or(|best| self.mode.better(shifted, best)) {
            self.best = Some(current);
            self.wait_count = 0;
            return;
        }
        self.wait_count += 1;
        if self.wait_count >= self.patience || !current.is_finite() {
            self.stopped_epoch = Some(cx.current_epoch);
            cx.stop();
        }
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({
            "wait_count": self.wait_count,
            "best_score": self.best,
            "patience": self.patience,
            "stopped_epoch": self.stopped_epoch,
        }))
    }
}
