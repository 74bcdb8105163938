//! Built-in callbacks: [`ModelSummary`], [`ModelCheckpoint`] and [`EarlyStopping`]; the
//! progress bar and [`EpochSummary`] (one line per epoch) are in [`progress`](crate::progress).

use crate::hooks::{Callback, CallbackRole, LightningModule};
use crate::state::TrainerState;
use crate::{EpochContext, Error, HookContext, JsonValue};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::progress::EpochSummary;

/// Prints the module's summary at the start of `fit` (Lightning's `ModelSummary` callback): its
/// layers down to `max_depth` (default 1), their types and parameter counts, and the totals.
/// Added by default; `enable_model_summary(false)` turns it off.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    max_depth: usize,
}

impl Default for ModelSummary {
    fn default() -> Self {
        Self { max_depth: 1 }
    }
}

impl ModelSummary {
    /// Layers down to `max_depth` (0: totals only; `usize::MAX`: every level).
    pub fn new(max_depth: usize) -> Self {
        Self { max_depth }
    }
}

impl<M: LightningModule> Callback<M> for ModelSummary {
    fn on_fit_start(&mut self, module: &mut M, cx: &mut HookContext<'_>) {
        cx.print(crate::summary::summarize(module, self.max_depth).to_string());
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

    /// Lightning's spelling, in state keys.
    fn as_str(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }
}

/// What the checkpointing and early-stopping callbacks need from a hook's context, at the end
/// of a training epoch (`EpochContext`) or of a validation run (`HookContext`).
trait MonitorContext: std::ops::Deref<Target = TrainerState> {
    fn metrics(&self) -> BTreeMap<String, f64>;
    fn run_dir(&self) -> Option<PathBuf>;
    fn save(&mut self, path: PathBuf);
    fn remove(&mut self, path: PathBuf);
    fn taken(&self, path: &Path) -> bool;
    fn request_stop(&mut self);
}

macro_rules! monitor_context {
    ($($ty:ident),*) => {$(
        impl MonitorContext for $ty<'_> {
            fn metrics(&self) -> BTreeMap<String, f64> {
                self.callback_metrics()
            }
            fn run_dir(&self) -> Option<PathBuf> {
                self.log_dir().map(Path::to_path_buf)
            }
            fn save(&mut self, path: PathBuf) {
                self.save_checkpoint(path);
            }
            fn remove(&mut self, path: PathBuf) {
                self.remove_checkpoint(path);
            }
            fn taken(&self, path: &Path) -> bool {
                self.checkpoint_exists(path)
            }
            fn request_stop(&mut self) {
                self.stop();
            }
        }
    )*};
}
monitor_context!(EpochContext, HookContext);

/// Saves checkpoints as Lightning's `ModelCheckpoint`: to
/// `<run dir>/checkpoints/epoch=E-step=S.ckpt` (`-v1`, `-v2`, ... when the name is taken),
/// keeping the latest one, or the `save_top_k` best by a monitored metric. It saves at the end
/// of each training epoch when validation runs once per epoch at its end (or not at all), and
/// otherwise after each validation run (`val_check_interval(0.25)`: four times an epoch;
/// `check_val_every_n_epoch(Some(2))`: every other epoch), never during the sanity check.
/// Added by default unless `enable_checkpointing(false)` or `fast_dev_run`.
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    dirpath: Option<PathBuf>,
    monitor: Option<String>,
    mode: Mode,
    save_top_k: usize,
    save_last: bool,
    every_n_epochs: usize,
    save_on_train_epoch_end: Option<bool>,
    /// Saved files and their scores (the score is the step when nothing is monitored).
    kept: Vec<(PathBuf, f64)>,
    best_model_path: Option<PathBuf>,
    best_model_score: Option<f64>,
    last_model_path: Option<PathBuf>,
    last_global_step_saved: Option<usize>,
}

impl Default for ModelCheckpoint {
    fn default() -> Self {
        Self {
            dirpath: None,
            monitor: None,
            mode: Mode::Min,
            save_top_k: 1,
            save_last: false,
            every_n_epochs: 1,
            save_on_train_epoch_end: None,
            kept: Vec::new(),
            best_model_path: None,
            best_model_score: None,
            last_model_path: None,
            last_global_step_saved: None,
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

    /// Also writes `last.ckpt` every time it saves.
    #[must_use]
    pub fn save_last(mut self, save: bool) -> Self {
        self.save_last = save;
        self
    }

    /// Saves every `n` epochs (default 1).
    #[must_use]
    pub fn every_n_epochs(mut self, n: usize) -> Self {
        self.every_n_epochs = n;
        self
    }

    /// `Some(true)`: save at the end of each training epoch; `Some(false)`: after each validation
    /// run; `None` (default): as Lightning decides from the validation flags.
    #[must_use]
    pub fn save_on_train_epoch_end(mut self, at_epoch_end: Option<bool>) -> Self {
        self.save_on_train_epoch_end = at_epoch_end;
        self
    }

    /// The best checkpoint so far.
    pub fn best_model_path(&self) -> Option<&PathBuf> {
        self.best_model_path.as_ref()
    }

    pub fn best_model_score(&self) -> Option<f64> {
        self.best_model_score
    }

    /// The `last.ckpt` written last, with `save_last`.
    pub fn last_model_path(&self) -> Option<&PathBuf> {
        self.last_model_path.as_ref()
    }

    /// Lightning's `_should_skip_saving_checkpoint`.
    fn skips(&self, cx: &TrainerState) -> bool {
        cx.fast_dev_run || !cx.fitting() || cx.sanity_checking() || self.last_global_step_saved == Some(cx.global_step)
    }

    fn saves_on_train_epoch_end(&self, cx: &TrainerState) -> bool {
        self.save_on_train_epoch_end.unwrap_or(cx.validates_at_epoch_end)
    }

    fn due(&self, cx: &TrainerState) -> bool {
        self.every_n_epochs >= 1 && (cx.current_epoch + 1).is_multiple_of(self.every_n_epochs)
    }

    /// `stem.ckpt`, or `stem-vN.ckpt` with the first N whose name is not taken (a file on disk,
    /// or a checkpoint this run is writing), unless taken by `replaced`, which goes away.
    fn free_name(dir: &Path, stem: &str, replaced: Option<&Path>, cx: &dyn MonitorContext) -> PathBuf {
        let mut path = dir.join(format!("{stem}.ckpt"));
        let mut version = 1;
        while cx.taken(&path) && Some(path.as_path()) != replaced {
            path = dir.join(format!("{stem}-v{version}.ckpt"));
            version += 1;
        }
        path
    }

    fn save(&mut self, cx: &mut dyn MonitorContext) -> Result<(), Error> {
        let Some(dir) = self
            .dirpath
            .clone()
            .or_else(|| cx.run_dir().map(|d| d.join("checkpoints")))
        else {
            return Ok(());
        };
        let (epoch, step) = (cx.current_epoch, cx.global_step);
        self.last_global_step_saved = Some(step);
        self.save_best(cx, &dir, epoch, step)?;
        if self.save_last {
            let previous = self.last_model_path.clone();
            let last = Self::free_name(&dir, "last", previous.as_deref(), &*cx);
            cx.save(last.clone());
            if let Some(previous) = previous
                && previous != last
            {
                cx.remove(previous);
            }
            self.last_model_path = Some(last);
        }
        Ok(())
    }

    fn save_best(&mut self, cx: &mut dyn MonitorContext, dir: &Path, epoch: usize, step: usize) -> Result<(), Error> {
        if self.save_top_k == 0 {
            return Ok(());
        }
        let score = match &self.monitor {
            None => step as f64,
            Some(name) => {
                let metrics = cx.metrics();
                match metrics.get(name) {
                    // Lightning ranks a NaN score last.
                    Some(v) if v.is_nan() => match self.mode {
                        Mode::Min => f64::INFINITY,
                        Mode::Max => f64::NEG_INFINITY,
                    },
                    Some(v) => *v,
                    None => {
                        let message = format!(
                            "ModelCheckpoint monitors `{name}`, which was not logged; logged metrics: {}. \
                             Log it with `cx.log(\"{name}\", value)`, or monitor one of these",
                            metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                        );
                        // Before the first validation a validation metric cannot be there yet.
                        if cx.validation_has_run {
                            return Err(Error::Hook {
                                hook: "ModelCheckpoint",
                                message,
                            });
                        }
                        tracing::warn!(target: "burn_lightning", "{message}");
                        return Ok(());
                    }
                }
            }
        };
        // Without a monitor the newest is the best; with one, the mode decides.
        let mode = if self.monitor.is_some() { self.mode } else { Mode::Max };
        let worst = self.kept.iter().copied_worst(mode);
        let full = self.kept.len() >= self.save_top_k;
        if full && worst.as_ref().is_some_and(|(_, w)| !mode.better(score, *w)) {
            return Ok(());
        }
        let replaced = if full { worst.map(|(p, _)| p) } else { None };
        let path = Self::free_name(dir, &format!("epoch={epoch}-step={step}"), replaced.as_deref(), &*cx);
        cx.save(path.clone());
        self.kept.push((path.clone(), score));
        if self.kept.len() > self.save_top_k
            && let Some((evicted, _)) = self.kept.iter().copied_worst(mode)
        {
            self.kept.retain(|(p, _)| *p != evicted);
            if evicted != path {
                cx.remove(evicted);
            }
        }
        if self
            .best_model_score
            .is_none_or(|b| mode.better(score, b) || self.monitor.is_none())
        {
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

    /// Lightning's state key: two checkpoint callbacks with other monitors keep separate states.
    fn state_key(&self) -> Cow<'static, str> {
        let monitor = self.monitor.as_ref().map_or("None".to_string(), |m| format!("'{m}'"));
        Cow::Owned(format!(
            "ModelCheckpoint{{'monitor': {monitor}, 'mode': '{}', 'every_n_train_steps': 0, 'every_n_epochs': {}, 'train_time_interval': None}}",
            self.mode.as_str(),
            self.every_n_epochs
        ))
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if !self.skips(cx)
            && self.saves_on_train_epoch_end(cx)
            && self.due(cx)
            && let Err(e) = self.save(cx)
        {
            cx.fail(e);
        }
    }

    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        if !self.skips(cx)
            && !self.saves_on_train_epoch_end(cx)
            && self.due(cx)
            && let Err(e) = self.save(cx)
        {
            cx.fail(e);
        }
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({
            "monitor": self.monitor,
            "best_model_path": self.best_model_path,
            "best_model_score": self.best_model_score,
            "last_model_path": self.last_model_path,
            "best_k_models": self.kept.iter().map(|(p, s)| (p.display().to_string(), *s)).collect::<BTreeMap<_, _>>(),
        }))
    }
}

/// Stops fitting when a monitored metric stops improving, as Lightning's `EarlyStopping`:
/// checked at the end of each training epoch when validation runs once per epoch at its end,
/// otherwise after each validation run (never during the sanity check, nor under
/// `fast_dev_run`); `patience` counts checks.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    monitor: String,
    mode: Mode,
    patience: usize,
    min_delta: f64,
    strict: bool,
    check_finite: bool,
    check_on_train_epoch_end: Option<bool>,
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
            strict: true,
            check_finite: true,
            check_on_train_epoch_end: None,
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

    /// `Some(true)`: check at the end of each training epoch; `Some(false)`: after each
    /// validation run; `None` (default): as Lightning decides from the validation flags.
    #[must_use]
    pub fn check_on_train_epoch_end(mut self, at_epoch_end: Option<bool>) -> Self {
        self.check_on_train_epoch_end = at_epoch_end;
        self
    }

    /// The epoch at which it stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    fn checks_on_train_epoch_end(&self, cx: &TrainerState) -> bool {
        self.check_on_train_epoch_end.unwrap_or(cx.validates_at_epoch_end)
    }

    /// Lightning's `_should_skip_check`, and early stopping is off under `fast_dev_run`.
    fn skips(cx: &TrainerState) -> bool {
        !cx.fitting() || cx.sanity_checking() || cx.fast_dev_run
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
        let shifted = match self.mode {
            Mode::Min => current + self.min_delta,
            Mode::Max => current - self.min_delta,
        };
        let stop = if self.check_finite && !current.is_finite() {
            true
        } else if self.best.is_none_or(|best| self.mode.better(shifted, best)) {
            self.best = Some(current);
            self.wait_count = 0;
            false
        } else {
            self.wait_count += 1;
            self.wait_count >= self.patience
        };
        if stop {
            self.stopped_epoch = Some(cx.current_epoch);
            cx.request_stop();
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
            "best_score": self.best,
            "patience": self.patience,
            "stopped_epoch": self.stopped_epoch,
        }))
    }
}

/// Saves a checkpoint when a run fails or is interrupted (Lightning's `OnExceptionCheckpoint`):
/// in `on_exception`, to `<dirpath>/<filename>.ckpt` (default `on_exception.ckpt`), with the
/// weights and optimizer state of that moment. With SIGINT or SIGTERM the run stops at a batch
/// boundary first, so the checkpoint holds a consistent state.
///
/// It is a checkpointing callback, as in Lightning: with it, the trainer adds no default
/// [`ModelCheckpoint`]; add one too to also checkpoint during training.
#[derive(Clone, Debug)]
pub struct OnExceptionCheckpoint {
    dirpath: PathBuf,
    filename: String,
}

impl OnExceptionCheckpoint {
    /// Saves `<dirpath>/on_exception.ckpt`.
    pub fn new(dirpath: impl Into<PathBuf>) -> Self {
        Self {
            dirpath: dirpath.into(),
            filename: "on_exception".to_string(),
        }
    }

    /// The file name, without `.ckpt`.
    pub fn filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = filename.into();
        self
    }

    /// Where the checkpoint goes.
    pub fn path(&self) -> PathBuf {
        self.dirpath.join(format!("{}.ckpt", self.filename))
    }
}

impl<M: LightningModule> Callback<M> for OnExceptionCheckpoint {
    fn role(&self) -> CallbackRole {
        CallbackRole::Checkpoint
    }

    fn on_exception(&mut self, _module: &mut M, _error: &Error, cx: &mut HookContext<'_>) {
        cx.save_checkpoint(self.path());
    }
}
