//! Built-in callbacks: [`ModelSummary`], [`ModelCheckpoint`] and [`EarlyStopping`]; the
//! progress bar and [`EpochSummary`] (one line per epoch) are in [`progress`](crate::progress).

use crate::filename_template::{FilenameTemplate, TemplateValue};
use crate::hooks::{Callback, CallbackRole, LightningModule};
use crate::state::TrainerState;
use crate::{EpochContext, Error, HookContext, JsonValue, StepContext};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Lightning's `monitor_op` (`torch.lt` or `torch.gt`): false when either side is NaN.
    fn better(self, candidate: f64, best: f64) -> bool {
        match self {
            Mode::Min => candidate < best,
            Mode::Max => candidate > best,
        }
    }

    /// The worst possible score: what a NaN score counts as, and where a best score starts.
    fn worst(self) -> f64 {
        match self {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        }
    }

    /// Lightning's spelling, in state keys.
    fn as_str(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }

    /// Lightning's `order_dict`, in messages.
    fn order(self) -> &'static str {
        match self {
            Mode::Min => "<",
            Mode::Max => ">",
        }
    }
}

/// What the checkpointing and early-stopping callbacks need from a hook's context, at the end
/// of a training batch (`StepContext`), of a training epoch (`EpochContext`) or of a
/// validation run (`HookContext`).
trait MonitorContext: std::ops::Deref<Target = TrainerState> {
    fn metrics(&self) -> BTreeMap<String, f64>;
    fn run_dir(&self) -> Option<PathBuf>;
    fn save(&mut self, path: PathBuf, weights_only: bool);
    fn link(&mut self, target: PathBuf, link: PathBuf);
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
            fn save(&mut self, path: PathBuf, weights_only: bool) {
                match weights_only {
                    true => self.save_checkpoint_weights_only(path),
                    false => self.save_checkpoint(path),
                }
            }
            fn link(&mut self, target: PathBuf, link: PathBuf) {
                self.link_checkpoint(target, link);
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
monitor_context!(StepContext, EpochContext, HookContext);

/// A score in a callback's state: a number, or Lightning's `inf`, `-inf` and `nan` as strings
/// (JSON has no non-finite numbers).
fn score_to_json(score: f64) -> JsonValue {
    match score {
        s if s.is_nan() => JsonValue::from("nan"),
        f64::INFINITY => JsonValue::from("inf"),
        f64::NEG_INFINITY => JsonValue::from("-inf"),
        s => JsonValue::from(s),
    }
}

/// Reads back what [`score_to_json`] wrote (`null` is no score).
fn score_from_json(value: &JsonValue, key: &str, callback: &str) -> Result<Option<f64>, Error> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::Number(n) => Ok(n.as_f64()),
        JsonValue::String(s) => match s.as_str() {
            "nan" => Ok(Some(f64::NAN)),
            "inf" => Ok(Some(f64::INFINITY)),
            "-inf" => Ok(Some(f64::NEG_INFINITY)),
            _ => Err(bad_state(callback, key, value)),
        },
        _ => Err(bad_state(callback, key, value)),
    }
}

fn bad_state(callback: &str, key: &str, value: &JsonValue) -> Error {
    Error::Checkpoint(format!(
        "the {callback} state in the checkpoint has `{key}` = {value}, which it cannot read; \
         the checkpoint was not written by this version, or was edited"
    ))
}

/// A path in a callback's state: Lightning writes `""` for none.
fn path_to_json(path: Option<&Path>) -> JsonValue {
    JsonValue::from(path.map_or(String::new(), |p| p.display().to_string()))
}

fn path_from_json(value: &JsonValue, key: &str, callback: &str) -> Result<Option<PathBuf>, Error> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::String(s) if s.is_empty() => Ok(None),
        JsonValue::String(s) => Ok(Some(PathBuf::from(s))),
        _ => Err(bad_state(callback, key, value)),
    }
}

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

    /// The metric it monitors, if any.
    pub(crate) fn monitor_name(&self) -> Option<&str> {
        self.monitor.as_deref()
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

    /// Lightning's `_should_remove_checkpoint`: not the file just written, and only files in
    /// this callback's directory.
    fn should_remove(&self, previous: &Path, current: &Path) -> bool {
        previous != current
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
                && self.should_remove(&previous, &path)
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
            && self.should_remove(&deleted, &path)
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
            && self.should_remove(&previous, &path)
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
        println!("The run failed ({error}); saved a checkpoint to {}", path.display());
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
