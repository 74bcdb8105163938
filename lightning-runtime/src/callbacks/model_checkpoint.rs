//! [`ModelCheckpoint`]: Lightning's checkpointing callback, with all of its options.

use super::monitor::{MonitorContext, bad_state, path_from_json, path_to_json, score_from_json, score_to_json};
use crate::checkpoint::filename::{FilenameTemplate, TemplateValue};
use crate::core::mode::Mode;
use crate::core::state::TrainerState;
use crate::hooks::{Callback, CallbackRole, LightningModule};
use crate::{EpochContext, Error, HookContext, JsonValue, StepContext};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `ModelCheckpoint::save_last` writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SaveLast {
    /// No `last.ckpt` (Lightning's `None`/`False`).
    #[default]
    No,
    /// `last.ckpt`, a full checkpoint, every time a checkpoint is saved (`True`).
    Yes,
    /// `last.ckpt` as a symbolic link to the newest checkpoint (`"link"`); a copy where links
    /// cannot be made.
    Link,
}

impl From<bool> for SaveLast {
    fn from(save: bool) -> Self {
        if save { SaveLast::Yes } else { SaveLast::No }
    }
}

/// What a checkpoint's name is made from: `callback_metrics`, and `epoch` and `step` as
/// integers (Lightning's `_monitor_candidates`).
struct Candidates {
    metrics: BTreeMap<String, f64>,
    epoch: i64,
    step: i64,
}

impl Candidates {
    fn of(cx: &dyn MonitorContext) -> Self {
        let metrics = cx.metrics();
        // A logged `epoch` or `step` wins, cast to an integer, as Lightning's `.int()`.
        let epoch = metrics.get("epoch").map_or(cx.current_epoch as i64, |v| *v as i64);
        let step = metrics.get("step").map_or(cx.global_step as i64, |v| *v as i64);
        Self { metrics, epoch, step }
    }

    fn template_values(&self) -> BTreeMap<String, TemplateValue> {
        let mut values: BTreeMap<String, TemplateValue> = self
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), TemplateValue::Float(*v)))
            .collect();
        values.insert("epoch".into(), TemplateValue::Int(self.epoch));
        values.insert("step".into(), TemplateValue::Int(self.step));
        values
    }
}

/// Saves checkpoints as Lightning's `ModelCheckpoint`, with all of its options: into
/// `dirpath` (default `<run dir>/checkpoints`), named by the `filename` template (default
/// `"{epoch}-{step}"`, rendering `epoch=E-step=S.ckpt`; `-v1`, `-v2`, ... when the name is
/// taken), keeping the newest checkpoint, or the `save_top_k` best by a monitored metric (-1:
/// all; 0: none), plus `last.ckpt` with `save_last`.
///
/// When: at the end of each training epoch when validation runs once per epoch at its end (or
/// not at all), otherwise after each validation run (`val_check_interval(0.25)`: four times an
/// epoch; `check_val_every_n_epoch(Some(2))`: every other epoch), every `every_n_epochs`
/// epochs; or every `every_n_train_steps` optimizer steps, or every `train_time_interval`, at the
/// end of a training batch. Never during the sanity check, under `fast_dev_run`, or twice at one
/// step. Added by default unless `enable_checkpointing(false)` or `fast_dev_run`.
///
/// After `fit`, `trainer.checkpoint_callback()` reads `best_model_path()`,
/// `best_model_score()`, `best_k_models()`, `last_model_path()`, ...
///
/// Differences from Lightning, on purpose: paths are kept as given (Lightning makes an explicit
/// `dirpath` absolute); `every_n_train_steps` under manual optimization saves the weights after
/// the optimizer step (Lightning's test-only pre-step code path is not reproduced); a
/// `{name:d}` field of a float metric renders the value truncated (Python raises).
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    dirpath: Option<PathBuf>,
    filename: Option<String>,
    monitor: Option<String>,
    mode: Mode,
    verbose: bool,
    save_last: SaveLast,
    save_top_k: i64,
    save_on_exception: bool,
    save_weights_only: bool,
    auto_insert_metric_name: bool,
    every_n_train_steps: Option<usize>,
    train_time_interval: Option<Duration>,
    every_n_epochs: Option<usize>,
    save_on_train_epoch_end: Option<bool>,
    enable_version_counter: bool,
    /// The parsed `filename`, once checked.
    template: Option<FilenameTemplate>,
    /// Where checkpoints go, once known: `dirpath`, else `<run dir>/checkpoints`.
    resolved_dir: Option<PathBuf>,
    /// Saved files and their scores, in the order saved (Lightning's `best_k_models` dict).
    best_k_models: Vec<(PathBuf, f64)>,
    kth_best_model_path: Option<PathBuf>,
    kth_value: f64,
    best_model_path: Option<PathBuf>,
    best_model_score: Option<f64>,
    current_score: Option<f64>,
    last_model_path: Option<PathBuf>,
    /// The newest file written (the target of `save_last = Link`).
    last_checkpoint_saved: Option<PathBuf>,
    /// Lightning starts at 0: no checkpoint before the first optimizer step.
    last_global_step_saved: usize,
    last_time_checked: Option<Instant>,
    /// A step or time trigger came before the monitored metric was there: save after the next
    /// validation run.
    defer_save_until_validation: bool,
}

impl Default for ModelCheckpoint {
    fn default() -> Self {
        Self {
            dirpath: None,
            filename: None,
            monitor: None,
            mode: Mode::Min,
            verbose: false,
            save_last: SaveLast::No,
            save_top_k: 1,
            save_on_exception: false,
            save_weights_only: false,
            auto_insert_metric_name: true,
            every_n_train_steps: None,
            train_time_interval: None,
            every_n_epochs: None,
            save_on_train_epoch_end: None,
            enable_version_counter: true,
            template: None,
            resolved_dir: None,
            best_k_models: Vec::new(),
            kth_best_model_path: None,
            kth_value: Mode::Min.worst(),
            best_model_path: None,
            best_model_score: None,
            current_score: None,
            last_model_path: None,
            last_checkpoint_saved: None,
            last_global_step_saved: 0,
            last_time_checked: None,
            defer_save_until_validation: false,
        }
    }
}

impl ModelCheckpoint {
    /// Lightning's `CHECKPOINT_JOIN_CHAR`: between the name and its `v1` version.
    pub const CHECKPOINT_JOIN_CHAR: &'static str = "-";
    /// Lightning's `CHECKPOINT_EQUALS_CHAR`: between a metric's name and its value.
    pub const CHECKPOINT_EQUALS_CHAR: &'static str = "=";
    /// Lightning's `CHECKPOINT_NAME_LAST`.
    pub const CHECKPOINT_NAME_LAST: &'static str = "last";
    /// Lightning's `FILE_EXTENSION`.
    pub const FILE_EXTENSION: &'static str = ".ckpt";
    /// Lightning's `STARTING_VERSION`.
    pub const STARTING_VERSION: usize = 1;

    /// Keeps the newest checkpoint in `<run dir>/checkpoints`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes into `dir` instead of `<run dir>/checkpoints`.
    #[must_use]
    pub fn dirpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirpath = Some(dir.into());
        self
    }

    /// The file name template (without `.ckpt`): `"{epoch}-{val_loss:.2f}"` renders
    /// `epoch=2-val_loss=0.12`. Fields are metrics of `callback_metrics` plus `epoch` and
    /// `step`, formatted by Python's format spec; a missing metric renders as 0; a `/` in a
    /// rendered name makes a subdirectory, as in Lightning. Default `"{epoch}-{step}"`.
    #[must_use]
    pub fn filename(mut self, template: impl Into<String>) -> Self {
        self.filename = Some(template.into());
        self
    }

    /// Keeps the best checkpoints by the metric `name` (`Mode::Min`: smaller is better).
    #[must_use]
    pub fn monitor(mut self, name: impl Into<String>, mode: Mode) -> Self {
        self.monitor = Some(name.into());
        self.mode = mode;
        self
    }

    /// Prints what it saves and why (Lightning's `verbose`).
    #[must_use]
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// How many checkpoints to keep: `k` best by the monitored metric, -1 all, 0 none. Without
    /// a monitor only -1, 0 and 1 (the newest) are valid.
    #[must_use]
    pub fn save_top_k(mut self, k: i64) -> Self {
        self.save_top_k = k;
        self
    }

    /// Also writes `last.ckpt` whenever it saves: `true`, or [`SaveLast::Link`] for a link to
    /// the newest checkpoint.
    #[must_use]
    pub fn save_last(mut self, save: impl Into<SaveLast>) -> Self {
        self.save_last = save.into();
        self
    }

    /// Saves a checkpoint (and `last.ckpt`) when the run fails (Lightning's `save_on_exception`).
    #[must_use]
    pub fn save_on_exception(mut self, save: bool) -> Self {
        self.save_on_exception = save;
        self
    }

    /// Writes checkpoints with the weights only: no optimizer or callback states (such a
    /// checkpoint loads a module, but cannot resume training).
    #[must_use]
    pub fn save_weights_only(mut self, weights_only: bool) -> Self {
        self.save_weights_only = weights_only;
        self
    }

    /// Whether each `{name}` of the template renders as `name=value` (default true). Turn it
    /// off for metric names with `/`, and write the names yourself.
    #[must_use]
    pub fn auto_insert_metric_name(mut self, insert: bool) -> Self {
        self.auto_insert_metric_name = insert;
        self
    }

    /// Saves every `n` optimizer steps, at the end of a training batch (0: never). Exclusive of
    /// `every_n_epochs` and `train_time_interval`; with it set, no saving at epoch ends.
    #[must_use]
    pub fn every_n_train_steps(mut self, n: usize) -> Self {
        self.every_n_train_steps = Some(n);
        self
    }

    /// Saves when this much time has passed since the last check, at the end of a training
    /// batch. Exclusive of `every_n_train_steps` and `every_n_epochs`.
    #[must_use]
    pub fn train_time_interval(mut self, interval: Duration) -> Self {
        self.train_time_interval = Some(interval);
        self
    }

    /// Saves every `n` epochs (default 1; 0: not at epoch ends).
    #[must_use]
    pub fn every_n_epochs(mut self, n: usize) -> Self {
        self.every_n_epochs = Some(n);
        self
    }

    /// `Some(true)`: save at the end of each training epoch; `Some(false)`: after each validation
    /// run; `None` (default): as Lightning decides from the validation flags.
    #[must_use]
    pub fn save_on_train_epoch_end(mut self, at_epoch_end: Option<bool>) -> Self {
        self.save_on_train_epoch_end = at_epoch_end;
        self
    }

    /// Whether a taken name gets a `-vN` version (default true); `false` overwrites the file.
    #[must_use]
    pub fn enable_version_counter(mut self, enable: bool) -> Self {
        self.enable_version_counter = enable;
        self
    }

    /// The best checkpoint so far (without a monitor: the newest).
    pub fn best_model_path(&self) -> Option<&Path> {
        self.best_model_path.as_deref()
    }

    /// The monitored value of the best checkpoint (a NaN counts as the worst: `inf` in
    /// `Mode::Min`, `-inf` in `Mode::Max`); `None` without a monitor.
    pub fn best_model_score(&self) -> Option<f64> {
        self.best_model_score
    }

    /// The kept checkpoints and their monitored values, in the order they were saved.
    pub fn best_k_models(&self) -> &[(PathBuf, f64)] {
        &self.best_k_models
    }

    /// The worst of the kept checkpoints, once `save_top_k` are kept.
    pub fn kth_best_model_path(&self) -> Option<&Path> {
        self.kth_best_model_path.as_deref()
    }

    /// The monitored value of [`kth_best_model_path`](Self::kth_best_model_path) (the worst
    /// possible value until then).
    pub fn kth_value(&self) -> f64 {
        self.kth_value
    }

    /// The monitored value at the last checkpoint saved by it.
    pub fn current_score(&self) -> Option<f64> {
        self.current_score
    }

    /// The `last.ckpt` written last, with `save_last`.
    pub fn last_model_path(&self) -> Option<&Path> {
        self.last_model_path.as_deref()
    }

    /// The `dirpath` it was given, if any.
    pub(crate) fn explicit_dirpath(&self) -> Option<&Path> {
        self.dirpath.as_deref()
    }

    /// The directory it saves into, once known (at the start of training).
    pub fn dirpath_resolved(&self) -> Option<&Path> {
        self.resolved_dir.as_deref().or(self.dirpath.as_deref())
    }

    /// `every_n_train_steps` and `every_n_epochs` as Lightning resolves them: without any
    /// trigger, every epoch; with a step or time trigger, not at epoch ends.
    fn triggers(&self) -> (usize, usize) {
        match (self.every_n_train_steps, self.every_n_epochs, self.train_time_interval) {
            (None, None, None) => (0, 1),
            (steps, epochs, _) => (steps.unwrap_or(0), epochs.unwrap_or(0)),
        }
    }

    /// Lightning's `__validate_init_configuration`, and the `filename` template: errors name
    /// the option and say what to change. The trainer checks at `build` and at `setup`.
    pub fn check(&mut self) -> Result<(), Error> {
        if self.save_top_k < -1 {
            return Err(Error::config(
                "save_top_k",
                format!(
                    "ModelCheckpoint(save_top_k={}) must be -1 (keep all), 0 (keep none) or a positive count",
                    self.save_top_k
                ),
            ));
        }
        let (steps, epochs) = self.triggers();
        let triggered = [steps >= 1, epochs >= 1, self.train_time_interval.is_some()];
        if triggered.iter().filter(|t| **t).count() > 1 {
            return Err(Error::config(
                if steps >= 1 {
                    "every_n_train_steps"
                } else {
                    "every_n_epochs"
                },
                format!(
                    "ModelCheckpoint(every_n_train_steps={steps}, every_n_epochs={epochs}, train_time_interval={:?}) \
                     sets more than one trigger; they are mutually exclusive: keep one, or add a second ModelCheckpoint",
                    self.train_time_interval
                ),
            ));
        }
        if self.monitor.is_none() && !matches!(self.save_top_k, -1..=1) {
            return Err(Error::config(
                "save_top_k",
                format!(
                    "ModelCheckpoint(save_top_k={}) without a monitor has no quantity to rank checkpoints by; \
                     set `.monitor(name, mode)`, or use -1 (keep all), 0 or 1 (keep the newest)",
                    self.save_top_k
                ),
            ));
        }
        let template = self.filename.as_deref().unwrap_or("{epoch}-{step}");
        self.template = Some(FilenameTemplate::parse(template, "filename")?);
        Ok(())
    }

    /// Lightning's `format_checkpoint_name`: the template (or `name`) rendered, with the
    /// version, in the checkpoint directory.
    fn format_checkpoint_name(
        &self,
        dir: &Path,
        candidates: &Candidates,
        last: bool,
        version: Option<usize>,
    ) -> PathBuf {
        let values = candidates.template_values();
        let mut name = match (last, &self.template) {
            (true, _) => Self::CHECKPOINT_NAME_LAST.to_string(),
            (false, Some(template)) => template.render(&values, self.auto_insert_metric_name),
            (false, None) => format!("epoch={}-step={}", candidates.epoch, candidates.step),
        };
        if let Some(version) = version {
            name = format!("{name}{}v{version}", Self::CHECKPOINT_JOIN_CHAR);
        }
        dir.join(format!("{name}{}", Self::FILE_EXTENSION))
    }

    /// The name, with the first free version when taken (a file on disk, or a checkpoint this
    /// run is writing), unless taken by `replaced`, which goes away.
    fn free_name(
        &self,
        cx: &dyn MonitorContext,
        dir: &Path,
        candidates: &Candidates,
        last: bool,
        replaced: Option<&Path>,
    ) -> PathBuf {
        let mut path = self.format_checkpoint_name(dir, candidates, last, None);
        if self.enable_version_counter {
            let mut version = Self::STARTING_VERSION;
            while cx.taken(&path) && Some(path.as_path()) != replaced {
                path = self.format_checkpoint_name(dir, candidates, last, Some(version));
                version += 1;
            }
        }
        path
    }

    /// Lightning's `_should_skip_saving_checkpoint`.
    fn skips(&self, cx: &TrainerState) -> bool {
        cx.fast_dev_run || !cx.fitting() || cx.sanity_checking() || self.last_global_step_saved == cx.global_step
    }

    fn saves_on_train_epoch_end(&self, cx: &TrainerState) -> bool {
        self.save_on_train_epoch_end.unwrap_or(cx.validates_at_epoch_end)
    }

    fn epoch_due(&self, cx: &TrainerState) -> bool {
        let (_, every_n_epochs) = self.triggers();
        every_n_epochs >= 1 && (cx.current_epoch + 1).is_multiple_of(every_n_epochs)
    }

    /// The checkpoint directory: `dirpath`, else `<run dir>/checkpoints` (none without a run
    /// directory: `fast_dev_run`).
    fn dir(&mut self, cx: &dyn MonitorContext) -> Option<PathBuf> {
        if self.resolved_dir.is_none() {
            self.resolved_dir = self
                .dirpath
                .clone()
                .or_else(|| cx.run_dir().map(|d| d.join("checkpoints")));
        }
        self.resolved_dir.clone()
    }

    fn save_checkpoint(&mut self, cx: &mut dyn MonitorContext, path: PathBuf) {
        cx.save(path.clone(), self.save_weights_only);
        self.last_global_step_saved = cx.global_step;
        self.last_checkpoint_saved = Some(path);
    }

    /// Lightning's `_should_remove_checkpoint`: not the file just written, not the checkpoint
    /// the fit resumed from (`resumed_from`), and only files in this callback's directory.
    fn should_remove(&self, previous: &Path, current: &Path, resumed_from: Option<&Path>) -> bool {
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        previous != current
            && resumed_from.is_none_or(|resumed| absolute(resumed) != absolute(previous))
            && self
                .resolved_dir
                .as_deref()
                .is_some_and(|dir| previous.starts_with(dir))
    }

    /// Lightning's `_save_topk_checkpoint`.
    fn save_topk(&mut self, cx: &mut dyn MonitorContext, candidates: &Candidates) -> Result<(), Error> {
        if self.save_top_k == 0 {
            return Ok(());
        }
        let Some(dir) = self.dir(&*cx) else { return Ok(()) };
        let Some(monitor) = self.monitor.clone() else {
            let best = self.best_model_path.clone();
            let path = self.free_name(&*cx, &dir, candidates, false, best.as_deref());
            let previous = self.best_model_path.replace(path.clone());
            self.save_checkpoint(cx, path.clone());
            if let Some(previous) = previous
                && self.save_top_k == 1
                && self.should_remove(&previous, &path, cx.ckpt_path.as_deref())
            {
                cx.remove(previous);
            }
            return Ok(());
        };
        let current = candidates.metrics.get(&monitor).copied();
        if current.is_none() {
            let message = format!(
                "ModelCheckpoint monitors `{monitor}`, which was not logged; logged metrics: {}. \
                 Log it with `cx.log(\"{monitor}\", value)`, or monitor one of these",
                candidates.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            // Before the first validation a validation metric cannot be there yet.
            if cx.validation_has_run {
                return Err(Error::Hook {
                    hook: "ModelCheckpoint",
                    message,
                });
            }
            tracing::warn!(target: "burn_lightning", "{message}");
        }
        if let Some(current) = current
            && self.in_top_k(current)
        {
            self.update_best_and_save(cx, &dir, current, candidates);
        } else if self.verbose {
            println!(
                "Epoch {}, global step {}: '{monitor}' was not in top {}",
                candidates.epoch, candidates.step, self.save_top_k
            );
        }
        Ok(())
    }

    /// Lightning's `check_monitor_top_k`: a NaN is never better than the k-th.
    fn in_top_k(&self, current: f64) -> bool {
        if self.save_top_k == -1 || (self.best_k_models.len() as i64) < self.save_top_k {
            return true;
        }
        let kth = self.kth_best_model_path.as_deref().and_then(|kth| self.score_of(kth));
        kth.is_some_and(|kth| self.mode.better(current, kth))
    }

    fn score_of(&self, path: &Path) -> Option<f64> {
        self.best_k_models.iter().find(|(p, _)| p == path).map(|(_, s)| *s)
    }

    /// The first of the kept checkpoints with the greatest (or smallest) score, as Python's
    /// `max(d, key=d.get)`.
    fn extreme(&self, greatest: bool) -> Option<(PathBuf, f64)> {
        let mut found: Option<&(PathBuf, f64)> = None;
        for entry in &self.best_k_models {
            let replace = found.is_none_or(|(_, s)| if greatest { entry.1 > *s } else { entry.1 < *s });
            if replace {
                found = Some(entry);
            }
        }
        found.cloned()
    }

    /// Lightning's `_update_best_and_save`.
    fn update_best_and_save(&mut self, cx: &mut dyn MonitorContext, dir: &Path, current: f64, candidates: &Candidates) {
        let k = if self.save_top_k == -1 {
            self.best_k_models.len() + 1
        } else {
            self.save_top_k as usize
        };
        let mut deleted = None;
        if self.best_k_models.len() == k
            && k > 0
            && let Some(kth) = self.kth_best_model_path.clone()
        {
            self.best_k_models.retain(|(p, _)| *p != kth);
            deleted = Some(kth);
        }
        // A NaN is saved as the worst score, so that any later finite score ranks above it.
        let current = if current.is_nan() { self.mode.worst() } else { current };
        let path = self.free_name(&*cx, dir, candidates, false, deleted.as_deref());
        self.current_score = Some(current);
        match self.best_k_models.iter_mut().find(|(p, _)| *p == path) {
            Some(entry) => entry.1 = current,
            None => self.best_k_models.push((path.clone(), current)),
        }
        if self.best_k_models.len() == k
            && let Some((kth, value)) = self.extreme(self.mode == Mode::Min)
        {
            self.kth_best_model_path = Some(kth);
            self.kth_value = value;
        }
        if let Some((best, score)) = self.extreme(self.mode == Mode::Max) {
            self.best_model_path = Some(best);
            self.best_model_score = Some(score);
        }
        if self.verbose {
            println!(
                "Epoch {}, global step {}: '{}' reached {current:.5} (best {:.5}), saving model to '{}' as top {k}",
                candidates.epoch,
                candidates.step,
                self.monitor.as_deref().unwrap_or_default(),
                self.best_model_score.unwrap_or(current),
                path.display()
            );
        }
        self.save_checkpoint(cx, path.clone());
        if let Some(deleted) = deleted
            && self.should_remove(&deleted, &path, cx.ckpt_path.as_deref())
        {
            cx.remove(deleted);
        }
    }

    /// Lightning's `_save_last_checkpoint`.
    fn save_last_checkpoint(&mut self, cx: &mut dyn MonitorContext, candidates: &Candidates) {
        if self.save_last == SaveLast::No {
            return;
        }
        let Some(dir) = self.dir(&*cx) else { return };
        let previous_last = self.last_model_path.clone();
        let path = self.free_name(&*cx, &dir, candidates, true, previous_last.as_deref());
        let previous = self.last_model_path.replace(path.clone());
        match self.last_checkpoint_saved.clone() {
            Some(target) if self.save_last == SaveLast::Link && self.save_top_k != 0 => {
                if target != path {
                    cx.link(target, path.clone());
                }
            }
            _ => self.save_checkpoint(cx, path.clone()),
        }
        if let Some(previous) = previous
            && self.should_remove(&previous, &path, cx.ckpt_path.as_deref())
        {
            cx.remove(previous);
        }
    }

    /// What `on_train_epoch_end` and `on_validation_end` do once it is their turn.
    fn save_due(&mut self, cx: &mut dyn MonitorContext) -> Result<(), Error> {
        let candidates = Candidates::of(&*cx);
        if self.epoch_due(cx) {
            self.save_topk(cx, &candidates)?;
        }
        // `last.ckpt` follows a save at this step (a link is refreshed every time).
        if self.last_global_step_saved == cx.global_step
            || (self.save_last == SaveLast::Link && self.last_checkpoint_saved.is_some())
        {
            self.save_last_checkpoint(cx, &candidates);
        }
        Ok(())
    }

    /// Lightning's `on_train_batch_end`: the step and time triggers.
    fn save_on_batch_end(&mut self, cx: &mut dyn MonitorContext) -> Result<(), Error> {
        let (every_n_train_steps, _) = self.triggers();
        let skip_batch = every_n_train_steps < 1 || !cx.global_step.is_multiple_of(every_n_train_steps);
        let mut skip_time = true;
        let mut now = None;
        if let Some(interval) = self.train_time_interval {
            let time = Instant::now();
            skip_time = self
                .last_time_checked
                .is_none_or(|checked| time.duration_since(checked) < interval);
            now = Some(time);
        }
        if skip_batch && skip_time {
            return Ok(());
        }
        if !skip_time {
            self.last_time_checked = now;
        }
        let candidates = Candidates::of(&*cx);
        if let Some(monitor) = &self.monitor {
            // The metric is not there yet (a validation metric), or validation is about to
            // refresh it: save after the validation run.
            let last_batch = cx.num_training_batches.is_some_and(|n| cx.batch_idx + 1 >= n);
            let validation_follows = last_batch && cx.validation_enabled && !self.saves_on_train_epoch_end(cx);
            if !candidates.metrics.contains_key(monitor) || validation_follows {
                self.defer_save_until_validation = true;
                return Ok(());
            }
        }
        if self.skips(cx) {
            return Ok(());
        }
        self.save_topk(cx, &candidates)?;
        self.save_last_checkpoint(cx, &candidates);
        Ok(())
    }

    fn state_key_of(&self) -> String {
        let monitor = self.monitor.as_ref().map_or("None".to_string(), |m| format!("'{m}'"));
        let (steps, epochs) = self.triggers();
        let interval = self.train_time_interval.map_or("None".to_string(), python_timedelta);
        format!(
            "ModelCheckpoint{{'monitor': {monitor}, 'mode': '{}', 'every_n_train_steps': {steps}, 'every_n_epochs': {epochs}, 'train_time_interval': {interval}}}",
            self.mode.as_str(),
        )
    }
}

/// Python's `repr` of a `datetime.timedelta`, as in Lightning's state keys.
fn python_timedelta(duration: Duration) -> String {
    let days = duration.as_secs() / 86_400;
    let seconds = duration.as_secs() % 86_400;
    let microseconds = duration.subsec_micros();
    let parts: Vec<String> = [
        ("days", days),
        ("seconds", seconds),
        ("microseconds", microseconds.into()),
    ]
    .into_iter()
    .filter(|(_, v)| *v != 0)
    .map(|(name, v)| format!("{name}={v}"))
    .collect();
    if parts.is_empty() {
        "datetime.timedelta(0)".into()
    } else {
        format!("datetime.timedelta({})", parts.join(", "))
    }
}

impl<M: LightningModule> Callback<M> for ModelCheckpoint {
    fn role(&self) -> CallbackRole {
        CallbackRole::Checkpoint
    }

    /// Lightning's state key: two checkpoint callbacks with other monitors keep separate states.
    fn state_key(&self) -> Cow<'static, str> {
        Cow::Owned(self.state_key_of())
    }

    fn setup(&mut self, _module: &mut M, _stage: crate::Stage, cx: &mut HookContext<'_>) {
        if let Err(e) = self.check() {
            cx.fail(e);
        }
    }

    fn on_train_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        self.dir(cx);
        self.last_time_checked = Some(Instant::now());
    }

    #[inline]
    fn on_train_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: Option<&crate::hooks::StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        // Nothing to do per step unless a step or time trigger is set.
        if self.every_n_train_steps.is_none_or(|n| n == 0) && self.train_time_interval.is_none() {
            return;
        }
        if let Err(e) = self.save_on_batch_end(cx) {
            cx.fail(e);
        }
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if !self.skips(cx)
            && self.saves_on_train_epoch_end(cx)
            && let Err(e) = self.save_due(cx)
        {
            cx.fail(e);
        }
    }

    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        if self.skips(cx) || self.saves_on_train_epoch_end(cx) {
            return;
        }
        let result = if self.defer_save_until_validation {
            // A step or time trigger waited for the validation metric.
            self.defer_save_until_validation = false;
            let candidates = Candidates::of(cx);
            self.save_topk(cx, &candidates)
                .map(|()| self.save_last_checkpoint(cx, &candidates))
        } else {
            self.save_due(cx)
        };
        if let Err(e) = result {
            cx.fail(e);
        }
    }

    fn on_train_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        // `save_last` writes `last.ckpt` at the end when nothing was saved before.
        if self.save_last != SaveLast::No && self.last_checkpoint_saved.is_none() && !cx.fast_dev_run {
            let candidates = Candidates::of(cx);
            self.save_last_checkpoint(cx, &candidates);
        }
    }

    fn on_exception(&mut self, _module: &mut M, error: &Error, cx: &mut HookContext<'_>) {
        if !self.save_on_exception
            || cx.fast_dev_run
            || cx.sanity_checking()
            || self.last_global_step_saved == cx.global_step
        {
            return;
        }
        let Some(dir) = self.dir(cx) else { return };
        let candidates = Candidates::of(cx);
        let path = self.format_checkpoint_name(&dir, &candidates, false, None);
        self.save_checkpoint(cx, path.clone());
        self.save_last_checkpoint(cx, &candidates);
        // On the way out after a hangup or a closed pipe, stdout may be gone: no panic for it.
        let _ = writeln!(
            std::io::stdout(),
            "The run failed ({error}); saved a checkpoint to {}",
            path.display()
        );
    }

    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({
            "monitor": self.monitor,
            "best_model_score": self.best_model_score.map(score_to_json),
            "best_model_path": path_to_json(self.best_model_path.as_deref()),
            "current_score": self.current_score.map(score_to_json),
            "dirpath": self.dirpath_resolved().map(|d| d.display().to_string()),
            "best_k_models": self
                .best_k_models
                .iter()
                .map(|(p, s)| (p.display().to_string(), score_to_json(*s)))
                .collect::<serde_json::Map<_, _>>(),
            "kth_best_model_path": path_to_json(self.kth_best_model_path.as_deref()),
            "kth_value": score_to_json(self.kth_value),
            "last_model_path": path_to_json(self.last_model_path.as_deref()),
        }))
    }

    /// Lightning's `load_state_dict`: everything when the state was saved from the same
    /// directory, else (with a warning) only `best_model_path`.
    fn load_state_dict(&mut self, state: JsonValue) -> Result<(), Error> {
        const NAME: &str = "ModelCheckpoint";
        let get = |key: &str| state.get(key).unwrap_or(&JsonValue::Null);
        let saved_dir = path_from_json(get("dirpath"), "dirpath", NAME)?;
        let own_dir = self.dirpath_resolved().map(Path::to_path_buf);
        if saved_dir.is_none() || saved_dir == own_dir {
            self.best_model_score = score_from_json(get("best_model_score"), "best_model_score", NAME)?;
            self.current_score = score_from_json(get("current_score"), "current_score", NAME)?;
            self.kth_best_model_path = path_from_json(get("kth_best_model_path"), "kth_best_model_path", NAME)?;
            if let Some(kth) = score_from_json(get("kth_value"), "kth_value", NAME)? {
                self.kth_value = kth;
            }
            self.best_k_models = match get("best_k_models") {
                JsonValue::Null => Vec::new(),
                JsonValue::Object(models) => models
                    .iter()
                    .map(|(path, score)| {
                        let score = score_from_json(score, "best_k_models", NAME)?.unwrap_or(f64::NAN);
                        Ok((PathBuf::from(path), score))
                    })
                    .collect::<Result<_, Error>>()?,
                other => return Err(bad_state(NAME, "best_k_models", other)),
            };
            self.last_model_path = path_from_json(get("last_model_path"), "last_model_path", NAME)?;
        } else {
            tracing::warn!(
                target: "burn_lightning",
                "the ModelCheckpoint dirpath has changed from {saved_dir:?} to {own_dir:?}, so `best_model_score`, \
                 `kth_best_model_path`, `kth_value`, `last_model_path` and `best_k_models` are not restored; \
                 only `best_model_path` is"
            );
        }
        self.best_model_path = path_from_json(get("best_model_path"), "best_model_path", NAME)?;
        Ok(())
    }
}
