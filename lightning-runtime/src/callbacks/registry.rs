//! The callbacks a configuration can name: the trainer's `callbacks` flag
//! (`--trainer.callbacks '[{class_path: EarlyStopping, init_args: {monitor: val_loss}}]'`, or the
//! same list under `trainer: callbacks:` in YAML) builds them from here, with Lightning's
//! option names.
//!
//! To register a callback kind, add a [`CallbackKind`] to [`callback_kinds`]: its names, its
//! options, and a function that builds it from its options (read with serde from `init_args`;
//! `#[serde(deny_unknown_fields)]` makes a misspelt option an error naming it).

use super::{
    EarlyStopping, GradientNormMonitor, LearningRateMonitor, ModelCheckpoint, ModelSummary, OnExceptionCheckpoint,
    ProgressBar, SaveLast, StochasticWeightAveraging, SwaStart, Timer, WeightAveraging,
};
use crate::Error;
use crate::core::component::{ComponentSpec, read_options};
use crate::core::mode::Mode;
use crate::hooks::{Callback, LightningModule};
use crate::optim::{Annealing, Interval};
use serde::Deserialize;
use std::path::PathBuf;

/// A kind of callback a configuration can name.
pub struct CallbackKind<M> {
    /// The names it is chosen by: Lightning's class name first, then aliases; compared ignoring
    /// case, `_`, `-` and a module path.
    pub names: &'static [&'static str],
    /// Its options (`init_args`), for messages.
    pub options: &'static [&'static str],
    /// Builds it from its spec's options; an error is a message naming the option at fault.
    pub build: BuildCallback<M>,
}

/// How a [`CallbackKind`] builds its callback from a spec.
pub type BuildCallback<M> = fn(&ComponentSpec) -> Result<Box<dyn Callback<M>>, String>;

/// Every callback kind a configuration can name, for modules of type `M`.
pub fn callback_kinds<M: LightningModule>() -> Vec<CallbackKind<M>> {
    vec![
        CallbackKind {
            names: &["ModelCheckpoint", "checkpoint"],
            options: &[
                "dirpath",
                "filename",
                "monitor",
                "mode",
                "verbose",
                "save_last",
                "save_top_k",
                "save_weights_only",
                "auto_insert_metric_name",
                "every_n_train_steps",
                "train_time_interval",
                "every_n_epochs",
                "save_on_train_epoch_end",
                "enable_version_counter",
                "save_on_exception",
            ],
            build: |spec| Ok(Box::new(model_checkpoint(spec)?)),
        },
        CallbackKind {
            names: &["EarlyStopping", "early_stopping"],
            options: &[
                "monitor",
                "min_delta",
                "patience",
                "verbose",
                "mode",
                "strict",
                "check_finite",
                "stopping_threshold",
                "divergence_threshold",
                "check_on_train_epoch_end",
                "log_rank_zero_only",
            ],
            build: |spec| Ok(Box::new(early_stopping(spec)?)),
        },
        CallbackKind {
            names: &["LearningRateMonitor", "lr_monitor"],
            options: &["logging_interval"],
            build: |spec| {
                let options: LrMonitorOptions = read_options(spec)?;
                let monitor = match options.logging_interval.as_deref() {
                    None => LearningRateMonitor::new(),
                    Some("step") => LearningRateMonitor::new().logging_interval(Interval::Step),
                    Some("epoch") => LearningRateMonitor::new().logging_interval(Interval::Epoch),
                    Some(other) => {
                        return Err(format!(
                            "`logging_interval` is \"step\", \"epoch\" or null, not {other:?}"
                        ));
                    }
                };
                Ok(Box::new(monitor))
            },
        },
        CallbackKind {
            names: &["Timer"],
            options: &["duration", "interval", "verbose"],
            build: |spec| {
                let options: TimerOptions = read_options(spec)?;
                let duration = options
                    .duration
                    .map(|duration| duration.duration().map_err(|e| e.to_string()))
                    .transpose()?;
                let timer = Timer::new(duration)
                    .interval(interval(options.interval.as_deref())?)
                    .verbose(options.verbose);
                Ok(Box::new(timer))
            },
        },
        CallbackKind {
            names: &["OnExceptionCheckpoint"],
            options: &["dirpath", "filename"],
            build: |spec| {
                let options: OnExceptionOptions = read_options(spec)?;
                let mut callback = OnExceptionCheckpoint::new(options.dirpath);
                if let Some(filename) = options.filename {
                    callback = callback.filename(filename);
                }
                Ok(Box::new(callback))
            },
        },
        CallbackKind {
            names: &["ModelSummary", "summary"],
            options: &["max_depth"],
            build: |spec| {
                let options: SummaryOptions = read_options(spec)?;
                // Lightning's `-1`: every level.
                let depth = usize::try_from(options.max_depth).unwrap_or(usize::MAX);
                Ok(Box::new(ModelSummary::new(depth)))
            },
        },
        CallbackKind {
            names: &["TQDMProgressBar", "ProgressBar", "progress_bar"],
            options: &["refresh_rate"],
            build: |spec| {
                let options: ProgressOptions = read_options(spec)?;
                Ok(Box::new(ProgressBar::new().refresh_rate(options.refresh_rate)))
            },
        },
        CallbackKind {
            names: &["GradientNormMonitor", "grad_norm"],
            options: &["norm_type"],
            build: |spec| {
                let options: GradNormOptions = read_options(spec)?;
                GradientNormMonitor::check(options.norm_type).map_err(|e| e.to_string())?;
                Ok(Box::new(GradientNormMonitor::new(options.norm_type)))
            },
        },
        CallbackKind {
            names: &["StochasticWeightAveraging", "swa"],
            options: &["swa_lrs", "swa_epoch_start", "annealing_epochs", "annealing_strategy"],
            build: |spec| {
                let options: SwaOptions = read_options(spec)?;
                let swa = match options.swa_lrs {
                    SwaLrs::One(lr) => StochasticWeightAveraging::new(lr),
                    SwaLrs::PerGroup(lrs) => StochasticWeightAveraging::per_group(lrs),
                };
                let start = match options.swa_epoch_start {
                    EpochOrFraction::Epoch(epoch) => SwaStart::Epoch(epoch),
                    EpochOrFraction::Fraction(fraction) => SwaStart::Fraction(fraction),
                };
                let strategy = match options.annealing_strategy.as_str() {
                    "cos" => Annealing::Cos,
                    "linear" => Annealing::Linear,
                    other => return Err(format!("`annealing_strategy` is \"cos\" or \"linear\", not {other:?}")),
                };
                Ok(Box::new(
                    swa.swa_epoch_start(start)
                        .annealing_epochs(options.annealing_epochs)
                        .annealing_strategy(strategy),
                ))
            },
        },
        CallbackKind {
            names: &["EMAWeightAveraging", "ema"],
            options: &[
                "decay",
                "update_every_n_steps",
                "update_starting_at_step",
                "update_starting_at_epoch",
                "use_buffers",
            ],
            build: |spec| {
                let options: EmaOptions = read_options(spec)?;
                let mut ema = WeightAveraging::ema(options.decay)
                    .update_every_n_steps(options.update_every_n_steps)
                    .use_buffers(options.use_buffers);
                if let Some(step) = options.update_starting_at_step {
                    ema = ema.update_starting_at_step(step);
                }
                if let Some(epoch) = options.update_starting_at_epoch {
                    ema = ema.update_starting_at_epoch(epoch);
                }
                Ok(Box::new(ema))
            },
        },
    ]
}

/// Builds the callback `spec` names; an unknown name is an error listing the kinds there are.
pub fn build<M: LightningModule>(spec: &ComponentSpec) -> Result<Box<dyn Callback<M>>, Error> {
    let kinds = callback_kinds::<M>();
    let Some(kind) = kinds.iter().find(|kind| spec.is_one_of(kind.names)) else {
        let known: Vec<&str> = kinds.iter().map(|kind| kind.names[0]).collect();
        return Err(Error::config(
            "callbacks",
            format!(
                "unknown callback `{}`; the callbacks are {}",
                spec.class_path,
                known.join(", ")
            ),
        ));
    };
    (kind.build)(spec).map_err(|message| {
        Error::config(
            "callbacks",
            format!(
                "{message} (the options of `{}` are {})",
                kind.names[0],
                kind.options.join(", ")
            ),
        )
    })
}

/// `"min"` or `"max"`.
fn mode(text: Option<&str>) -> Result<Mode, String> {
    match text {
        None | Some("min") => Ok(Mode::Min),
        Some("max") => Ok(Mode::Max),
        Some(other) => Err(format!("`mode` is \"min\" or \"max\", not {other:?}")),
    }
}

/// `"step"` or `"epoch"`.
fn interval(text: Option<&str>) -> Result<Interval, String> {
    match text {
        None | Some("step") => Ok(Interval::Step),
        Some("epoch") => Ok(Interval::Epoch),
        Some(other) => Err(format!("`interval` is \"step\" or \"epoch\", not {other:?}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointOptions {
    dirpath: Option<PathBuf>,
    filename: Option<String>,
    monitor: Option<String>,
    mode: Option<String>,
    verbose: Option<bool>,
    save_last: Option<serde_json::Value>,
    save_top_k: Option<i64>,
    save_weights_only: Option<bool>,
    auto_insert_metric_name: Option<bool>,
    every_n_train_steps: Option<usize>,
    train_time_interval: Option<crate::callbacks::MaxTime>,
    every_n_epochs: Option<usize>,
    save_on_train_epoch_end: Option<bool>,
    enable_version_counter: Option<bool>,
    save_on_exception: Option<bool>,
}

fn model_checkpoint(spec: &ComponentSpec) -> Result<ModelCheckpoint, String> {
    let o: CheckpointOptions = read_options(spec)?;
    let mut checkpoint = ModelCheckpoint::new();
    if let Some(dirpath) = o.dirpath {
        checkpoint = checkpoint.dirpath(dirpath);
    }
    if let Some(filename) = o.filename {
        checkpoint = checkpoint.filename(filename);
    }
    if let Some(monitor) = o.monitor {
        checkpoint = checkpoint.monitor(monitor, mode(o.mode.as_deref())?);
    } else if o.mode.is_some() {
        mode(o.mode.as_deref())?;
    }
    if let Some(verbose) = o.verbose {
        checkpoint = checkpoint.verbose(verbose);
    }
    match o.save_last {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {}
        Some(serde_json::Value::Bool(true)) => checkpoint = checkpoint.save_last(SaveLast::Yes),
        Some(serde_json::Value::String(link)) if link == "link" => checkpoint = checkpoint.save_last(SaveLast::Link),
        Some(other) => return Err(format!("`save_last` is true, false or \"link\", not {other}")),
    }
    if let Some(k) = o.save_top_k {
        checkpoint = checkpoint.save_top_k(k);
    }
    if let Some(weights_only) = o.save_weights_only {
        checkpoint = checkpoint.save_weights_only(weights_only);
    }
    if let Some(insert) = o.auto_insert_metric_name {
        checkpoint = checkpoint.auto_insert_metric_name(insert);
    }
    if let Some(n) = o.every_n_train_steps {
        checkpoint = checkpoint.every_n_train_steps(n);
    }
    if let Some(interval) = o.train_time_interval {
        checkpoint = checkpoint.train_time_interval(interval.duration().map_err(|e| e.to_string())?);
    }
    if let Some(n) = o.every_n_epochs {
        checkpoint = checkpoint.every_n_epochs(n);
    }
    if o.save_on_train_epoch_end.is_some() {
        checkpoint = checkpoint.save_on_train_epoch_end(o.save_on_train_epoch_end);
    }
    if let Some(enable) = o.enable_version_counter {
        checkpoint = checkpoint.enable_version_counter(enable);
    }
    if let Some(save) = o.save_on_exception {
        checkpoint = checkpoint.save_on_exception(save);
    }
    Ok(checkpoint)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EarlyStoppingOptions {
    monitor: String,
    min_delta: Option<f64>,
    patience: Option<usize>,
    verbose: Option<bool>,
    mode: Option<String>,
    strict: Option<bool>,
    check_finite: Option<bool>,
    stopping_threshold: Option<f64>,
    divergence_threshold: Option<f64>,
    check_on_train_epoch_end: Option<bool>,
    log_rank_zero_only: Option<bool>,
}

fn early_stopping(spec: &ComponentSpec) -> Result<EarlyStopping, String> {
    let o: EarlyStoppingOptions = read_options(spec)?;
    let mut stopping = EarlyStopping::new(o.monitor, mode(o.mode.as_deref())?);
    if let Some(delta) = o.min_delta {
        stopping = stopping.min_delta(delta);
    }
    if let Some(patience) = o.patience {
        stopping = stopping.patience(patience);
    }
    if let Some(verbose) = o.verbose {
        stopping = stopping.verbose(verbose);
    }
    if let Some(strict) = o.strict {
        stopping = stopping.strict(strict);
    }
    if let Some(check) = o.check_finite {
        stopping = stopping.check_finite(check);
    }
    if let Some(threshold) = o.stopping_threshold {
        stopping = stopping.stopping_threshold(threshold);
    }
    if let Some(threshold) = o.divergence_threshold {
        stopping = stopping.divergence_threshold(threshold);
    }
    if o.check_on_train_epoch_end.is_some() {
        stopping = stopping.check_on_train_epoch_end(o.check_on_train_epoch_end);
    }
    if let Some(only) = o.log_rank_zero_only {
        stopping = stopping.log_rank_zero_only(only);
    }
    Ok(stopping)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LrMonitorOptions {
    logging_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerOptions {
    duration: Option<crate::callbacks::MaxTime>,
    interval: Option<String>,
    #[serde(default = "yes")]
    verbose: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnExceptionOptions {
    dirpath: PathBuf,
    filename: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryOptions {
    #[serde(default = "one")]
    max_depth: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressOptions {
    #[serde(default = "four")]
    refresh_rate: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GradNormOptions {
    norm_type: f64,
}

/// SWA's `swa_lrs`: one rate, or one per param group.
#[derive(Deserialize)]
#[serde(untagged)]
enum SwaLrs {
    One(f64),
    PerGroup(Vec<f64>),
}

/// SWA's `swa_epoch_start`: an epoch (an integer) or a fraction of `max_epochs` (a float).
#[derive(Deserialize)]
#[serde(untagged)]
enum EpochOrFraction {
    Epoch(usize),
    Fraction(f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwaOptions {
    swa_lrs: SwaLrs,
    #[serde(default = "eight_tenths")]
    swa_epoch_start: EpochOrFraction,
    #[serde(default = "ten")]
    annealing_epochs: usize,
    #[serde(default = "cos")]
    annealing_strategy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmaOptions {
    #[serde(default = "ema_decay")]
    decay: f64,
    #[serde(default = "one_step")]
    update_every_n_steps: usize,
    update_starting_at_step: Option<usize>,
    update_starting_at_epoch: Option<usize>,
    #[serde(default = "yes")]
    use_buffers: bool,
}

fn eight_tenths() -> EpochOrFraction {
    EpochOrFraction::Fraction(0.8)
}

fn ten() -> usize {
    10
}

fn cos() -> String {
    "cos".into()
}

/// Lightning's `EMAWeightAveraging` default.
fn ema_decay() -> f64 {
    0.999
}

fn one_step() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}

fn four() -> u8 {
    4
}
