//! [`TrainerConfig`]: every Trainer flag that is data, as one serde type, under Lightning's
//! flag names.
//!
//! The flags are listed once, in `trainer_flags!`: each with its doc comment, its type, its
//! default and the builder method that sets it. From that list come the fields of
//! `TrainerConfig` (its YAML keys), their defaults, the setters of `TrainerConfig` and of
//! [`TrainerBuilder`](crate::TrainerBuilder), and [`TrainerConfig::FLAGS`] (names and docs),
//! which [`LightningCli`](crate::cli::LightningCli) turns into `--trainer.<flag>` options and
//! `PL_TRAINER_<FLAG>` environment variables. A flag added to the list appears everywhere at
//! once; its checks go into [`TrainerConfig::validate`], which the builder runs too.
//!
//! Loggers and callbacks are data by name and options (`logger: csv`, `callbacks:
//! [{class_path: EarlyStopping, init_args: {monitor: val_loss}}]`, built from the registries
//! of `loggers` and `callbacks`); loggers and callbacks of your own, the `Device` and a profiler
//! given as a value stay on the builder. Lightning 1.x flags (`gpus`, ...) are refused with
//! their replacement ([`removed`](super::removed)).
//!
//! The YAML forms are Lightning's: `limit_val_batches: 0.25` or `10`, `max_time:
//! "00:00:10:00"` or `{minutes: 10}`, `max_steps: -1` (no limit), `num_sanity_val_steps: -1`
//! (all), `fast_dev_run: true` or `5`, `accumulate_grad_batches: 4` or `{0: 8, 4: 1}` (epoch:
//! factor, Lightning's `GradientAccumulationScheduler`).

use crate::core::flags::MaxTime;
use crate::optim::GradientAccumulationScheduler;
use crate::trainer::{ClipAlgorithm, Limit, ValCheckInterval};
use crate::{Error, JsonValue};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// The one list of the Trainer's data flags. `$then!` receives, for each flag: its doc
/// comment, an optional `#[serde(..)]` attribute, `name: Type = default;` and the builder
/// method `fn setter(arg: ArgType) => value;`.
macro_rules! trainer_flags {
    ($then:ident) => {
        $then! {
            /// Stop after this many epochs: a count, or `-1` ([`MaxCount::Unlimited`](crate::MaxCount))
            /// for no epoch limit. Unset (null), it is 1000 with a warning, unless `max_steps`,
            /// `max_time` or a [`Timer`](crate::Timer) bounds the run (then no epoch limit), as
            /// Lightning's `_parse_loop_limits`.
            #[serde(with = "optional_max_count")]
            max_epochs: Option<crate::MaxCount> = None;
            fn max_epochs(max_epochs: impl Into<crate::MaxCount>) => Some(max_epochs.into());

            /// Train at least this many epochs, even if something asks to stop.
            #[serde(with = "optional_count")]
            min_epochs: Option<usize> = None;
            fn min_epochs(min_epochs: usize) => Some(min_epochs);

            /// Stop after this many optimizer steps: a count, or `-1`
            /// ([`MaxCount::Unlimited`](crate::MaxCount), the default; null in YAML too) for no
            /// step limit.
            #[serde(with = "max_count")]
            max_steps: crate::MaxCount = crate::MaxCount::Unlimited;
            fn max_steps(max_steps: impl Into<crate::MaxCount>) => max_steps.into();

            /// Take at least this many optimizer steps, even if something asks to stop.
            #[serde(with = "optional_count")]
            min_steps: Option<usize> = None;
            fn min_steps(min_steps: usize) => Some(min_steps);

            /// Batches per training epoch: a count (`10`), a fraction (`0.25`), 0 to skip training.
            limit_train_batches: crate::Limit = crate::Limit::All;
            fn limit_train_batches(limit_train_batches: impl Into<crate::Limit>) => limit_train_batches.into();

            /// Batches per validation run: a count, a fraction, 0 to turn validation off.
            limit_val_batches: crate::Limit = crate::Limit::All;
            fn limit_val_batches(limit_val_batches: impl Into<crate::Limit>) => limit_val_batches.into();

            /// Batches of `test`: a count or a fraction.
            limit_test_batches: crate::Limit = crate::Limit::All;
            fn limit_test_batches(limit_test_batches: impl Into<crate::Limit>) => limit_test_batches.into();

            /// Batches of `predict`: a count or a fraction.
            limit_predict_batches: crate::Limit = crate::Limit::All;
            fn limit_predict_batches(limit_predict_batches: impl Into<crate::Limit>) => limit_predict_batches.into();

            /// Validate every fraction of an epoch (`0.25`), every N training batches (`100`), or
            /// every so much training time (`"00:00:15:00"`, `{minutes: 15}`, a `Duration`):
            /// then checkpoints are saved after validation, not at the epoch's end (as Lightning).
            val_check_interval: crate::ValCheckInterval = crate::ValCheckInterval::Fraction(1.0);
            fn val_check_interval(val_check_interval: impl Into<crate::ValCheckInterval>) => val_check_interval.into();

            /// Validate every N epochs; `None` (null) validates by batch count only
            /// (`val_check_interval`).
            #[serde(with = "optional_count")]
            check_val_every_n_epoch: Option<usize> = Some(1);
            fn check_val_every_n_epoch(check_val_every_n_epoch: Option<usize>) => check_val_every_n_epoch;

            /// Validation batches run before training to catch bugs early (default 2, 0 to skip,
            /// `usize::MAX` or `-1` for all).
            #[serde(with = "sanity_steps")]
            num_sanity_val_steps: usize = 2;
            fn num_sanity_val_steps(num_sanity_val_steps: usize) => num_sanity_val_steps;

            /// Runs `n` batches of each loop once, without sanity check, checkpoints or files: a
            /// smoke test (`true` is 1 batch).
            #[serde(with = "fast_dev_run")]
            fast_dev_run: Option<usize> = None;
            fn fast_dev_run(fast_dev_run: usize) => Some(fast_dev_run);

            /// Stops training once it has run this long (Lightning's `max_time`): `"DD:HH:MM:SS"`,
            /// a `Duration`, or a `TimeSpan` (`{days, hours, minutes, seconds}` in YAML). Checked
            /// after every training batch by a [`Timer`](crate::Timer) (added unless one is
            /// given); the stop works as `cx.stop()` does: the epoch's validation runs,
            /// checkpoints are saved, and `min_epochs`/`min_steps` are honoured.
            max_time: Option<crate::MaxTime> = None;
            fn max_time(max_time: impl Into<crate::MaxTime>) => Some(max_time.into());

            /// Where `lightning_logs/version_N` goes (default: the current directory).
            default_root_dir: Option<std::path::PathBuf> = None;
            fn default_root_dir(default_root_dir: impl AsRef<std::path::Path>) => Some(default_root_dir.as_ref().to_path_buf());

            /// Seeds the device's generator at the start of each run: same seed, same initial
            /// weights, same losses (Lightning's `seed_everything`, here a trainer flag).
            seed: Option<u64> = None;
            fn seed(seed: u64) => Some(seed);

            /// Clip gradients at this value (by global norm unless `gradient_clip_algorithm` says
            /// value); 0 or null: no clipping.
            gradient_clip_val: Option<f64> = None;
            fn gradient_clip_val(gradient_clip_val: f64) => Some(gradient_clip_val);

            /// How `gradient_clip_val` clips: `norm` or `value`.
            gradient_clip_algorithm: crate::ClipAlgorithm = crate::ClipAlgorithm::Norm;
            fn gradient_clip_algorithm(gradient_clip_algorithm: crate::ClipAlgorithm) => gradient_clip_algorithm;

            /// Sums the gradients of this many batches (each loss divided by it) before every
            /// optimizer step, as Lightning's `accumulate_grad_batches` (default 1): a number, or a
            /// per-epoch [`GradientAccumulationScheduler`](crate::GradientAccumulationScheduler)
            /// (`{epoch: factor}` in YAML). The optimizer also steps on the last batch of each
            /// epoch; `global_step` and `log_every_n_steps` count optimizer steps,
            /// `val_check_interval` counts batches. Automatic optimization only.
            accumulate_grad_batches: crate::GradientAccumulationScheduler = crate::GradientAccumulationScheduler::default();
            fn accumulate_grad_batches(accumulate_grad_batches: impl Into<crate::GradientAccumulationScheduler>) => accumulate_grad_batches.into();

            /// Adds a [`ModelCheckpoint`](crate::ModelCheckpoint) unless one is given (default
            /// true).
            enable_checkpointing: bool = true;
            fn enable_checkpointing(enable_checkpointing: bool) => enable_checkpointing;

            /// Shows a [`ProgressBar`](crate::ProgressBar) (default true): bars on a terminal, one
            /// line per epoch otherwise. A `ProgressBar` or [`EpochSummary`](crate::EpochSummary)
            /// given with `.callback(..)` replaces the default one.
            enable_progress_bar: bool = true;
            fn enable_progress_bar(enable_progress_bar: bool) => enable_progress_bar;

            /// Whether logged values go to loggers, and to which (Lightning's `logger`): `true`
            /// (default: a TensorBoard logger in the run directory when none is given), `false`,
            /// a logger by name (`tensorboard`, `csv`), with options (`{class_path: CSVLogger,
            /// init_args: {name: exp, flush_logs_every_n_steps: 10}}`), or a list of them. The
            /// loggers are built from `crate::loggers::registry`, `save_dir` defaulting to
            /// `default_root_dir`, after those given to the builder with `logger(..)`. The builder
            /// method is `enable_logger`.
            logger: crate::core::component::LoggerFlag = crate::core::component::LoggerFlag::Enabled(true);
            fn enable_logger(enable_logger: bool) => crate::core::component::LoggerFlag::Enabled(enable_logger);

            /// Callbacks by name and options (Lightning's `callbacks`): `[{class_path:
            /// EarlyStopping, init_args: {monitor: val_loss, patience: 3}}, {class_path:
            /// ModelCheckpoint, init_args: {monitor: val_loss, mode: min}}]`, or a name alone
            /// (`LearningRateMonitor`). Built from `crate::callbacks::registry` after those given
            /// with `callback(..)`; a `ModelCheckpoint` or progress bar here replaces the default
            /// one. The builder method is `callbacks_config`.
            #[serde(with = "crate::core::component::callback_specs")]
            callbacks: Vec<crate::core::component::ComponentSpec> = Vec::new();
            fn callbacks_config(callbacks: impl IntoIterator<Item = crate::core::component::ComponentSpec>) => callbacks.into_iter().collect();

            /// Prints the module's summary at the start of `fit`
            /// ([`ModelSummary`](crate::ModelSummary); default true).
            enable_model_summary: bool = true;
            fn enable_model_summary(enable_model_summary: bool) => enable_model_summary;

            /// Writes `report.html` into the run directory at the end of `fit` (and again after a
            /// `validate`/`test` that logs more): a chart per logged metric, the hyperparameters
            /// and the model summary (default true; nothing under `fast_dev_run`). See
            /// [`crate::loggers::report`].
            enable_report: bool = true;
            fn enable_report(enable_report: bool) => enable_report;

            /// Step values reach the loggers every this many training batches (default 50).
            log_every_n_steps: usize = 50;
            fn log_every_n_steps(log_every_n_steps: usize) => log_every_n_steps;

            /// Logs the gradients' `p`-norms (per parameter and in total, Lightning's
            /// `grad_{p}_norm/...` keys) on the steps that log, with a
            /// [`GradientNormMonitor`](crate::GradientNormMonitor): Lightning 1.x's
            /// `track_grad_norm` (`-1` or null: off).
            #[serde(with = "grad_norm_type")]
            track_grad_norm: Option<f64> = None;
            fn track_grad_norm(track_grad_norm: f64) => Some(track_grad_norm);

            /// On SIGINT, SIGTERM or SIGHUP, a run stops at the next batch boundary (after
            /// `on_exception`, pending checkpoints and the loggers); then the process exits with
            /// 130, 143 or 129
            /// (default true), or, with `false`, the entry point returns
            /// [`Error::Interrupted`](crate::Error::Interrupted).
            exit_on_signal: bool = true;
            fn exit_on_signal(exit_on_signal: bool) => exit_on_signal;

            /// Seconds a run may take, after SIGINT, SIGTERM or SIGHUP, to reach the batch boundary where
            /// it stops (default 10). A run stuck longer (a dataloader that blocks, a hook that
            /// never returns) is ended without `on_exception`: the queued checkpoints are
            /// written, the loggers flushed, and the process exits with 130, 143 or 129.
            signal_timeout: f64 = 10.0;
            fn signal_timeout(seconds: f64) => seconds;

            /// A loss or a gradient that is not finite ends the run with an error naming the
            /// step, the hook and (for a gradient) the parameter (Lightning's `detect_anomaly`;
            /// default false, as in Lightning: it reads the loss and the gradients' norms every
            /// step). Without it, the loss is read on the steps that log anyway, and the first one
            /// that is not finite is a warning.
            detect_anomaly: bool = false;
            fn detect_anomaly(detect_anomaly: bool) => detect_anomaly;

            /// Profiles every run (Lightning's `profiler`): `"simple"` prints the time per hook
            /// and loop phase at the end of `fit` (and `validate`, `test`, `predict`) and writes
            /// it to `<run dir>/fit-profiler.txt`; `"advanced"` also writes a Chrome trace,
            /// `<run dir>/fit-trace.json`, that Perfetto opens. The builder also takes a
            /// [`Profiler`](crate::Profiler); an unknown name is an error of `build()`. Off by
            /// default, and then costs nothing. See [`profiler`](crate::profiler) for how it
            /// shares `tracing` with your own subscriber.
            profiler: Option<String> = None;
            fn profiler(profiler: impl Into<crate::ProfilerChoice>) => Some(profiler.into().into_name());

            /// Trains and validates on the same few batches every epoch, to check that the model
            /// can overfit them (Lightning's `overfit_batches`; default 0: off): a count (`10`) or
            /// a fraction of the training loader (`0.01`). Sets `limit_train_batches` and
            /// `limit_val_batches` to it. burn's loaders cannot turn their shuffling off, so the
            /// batches of one pass of the training loader (and of the validation loader) are
            /// collected once and replayed, in the same order, at every epoch: they stay in
            /// memory. With a shuffled loader they are a random subset rather than the dataset's
            /// first items. An error with `fast_dev_run`.
            overfit_batches: crate::Limit = crate::Limit::Batches(0);
            fn overfit_batches(overfit_batches: impl Into<crate::Limit>) => overfit_batches.into();

            /// Promises that a rerun with the same `seed` gives bit-identical weights (Lightning's
            /// `deterministic`; default false). `build()` fails on a backend that cannot promise
            /// it (CUDA and wgpu: autotuned kernels and atomic reductions; LibTorch on a GPU). On
            /// the CPU (flex) it holds for a given number of rayon threads; see
            /// [`crate::strategies::accelerator`].
            deterministic: bool = false;
            fn deterministic(deterministic: bool) => deterministic;

            /// Requests the training and validation dataloaders again from the datamodule (or
            /// the module's hooks) every N epochs (Lightning's
            /// `reload_dataloaders_every_n_epochs`; default 0: once per fit). The training loader
            /// is reloaded before `on_train_epoch_start` of epochs N, 2N, ...; the validation
            /// loader before the first validation of an epoch at least N epochs after it was last
            /// requested.
            reload_dataloaders_every_n_epochs: usize = 0;
            fn reload_dataloaders_every_n_epochs(reload_dataloaders_every_n_epochs: usize) => reload_dataloaders_every_n_epochs;

            /// The hardware (Lightning's `accelerator`; default `"auto"`): `"cpu"` (flex),
            /// `"gpu"`, `"cuda"`, `"wgpu"`, `"tch"`, or `"auto"` (burn's default device). A backend
            /// whose cargo feature was not compiled in, or an unknown name, is an error of
            /// `build()`. With the builder's `device(..)`, only `"auto"` may be given (the device
            /// wins).
            accelerator: crate::Accelerator = crate::Accelerator::Auto;
            fn accelerator(accelerator: impl Into<crate::Accelerator>) => accelerator.into();

            /// Which devices (Lightning's `devices`; default `"auto"`): a count (`2`), an index
            /// list (`[0, 1]`, `"0,1"`), or `-1` for all. Several devices train data-parallel in
            /// this process (see [`strategy`](crate::strategies::ddp)); on the CPU, `devices(N)` runs N
            /// replicas on its one device. More devices than exist is an error of `build()`.
            devices: crate::Devices = crate::Devices::Auto;
            fn devices(devices: impl Into<crate::Devices>) => devices.into();

            /// How several devices train (Lightning's `strategy`; default `"auto"`): `"ddp"`
            /// (data-parallel, one model replica per device, gradients averaged; see
            /// [`strategy`](crate::strategies::ddp)), `"single_device"`, or `"auto"` (`"ddp"` with several
            /// devices). Other Lightning strategies (`"ddp_spawn"`, `"fsdp"`, ...) are errors
            /// listing these.
            strategy: String = "auto".to_string();
            fn strategy(strategy: impl Into<String>) => strategy.into();

            /// Number of machines (Lightning's `num_nodes`; default 1). Above one, or whenever
            /// `mpirun`/`srun` starts several processes, each process is one rank of data-parallel
            /// training across processes, which needs the `mpi` feature: the launcher must start
            /// `devices * num_nodes` processes (see [`process_group`](crate::strategies::process_group)).
            num_nodes: usize = 1;
            fn num_nodes(num_nodes: usize) => num_nodes;

            /// The precision of training (Lightning's `precision`): `"32-true"` (default),
            /// `"64-true"`, `"16-true"`, `"bf16-true"`, `"16-mixed"`, `"bf16-mixed"`, Lightning's
            /// aliases (`64`, `32`, `16`, `"bf16"`) or a [`Precision`](crate::Precision). `build()`
            /// refuses a value that is not a precision, and a precision the device's backend
            /// cannot run. Batches are yours to cast: see [`precision`](crate::optim::precision).
            #[serde(with = "precision_text")]
            precision: String = "32-true".to_string();
            fn precision(precision: impl Into<crate::PrecisionChoice>) => precision.into().into_text();
        }
    };
}
pub(crate) use trainer_flags;

/// A Trainer flag's name and doc comment, for help texts ([`TrainerConfig::FLAGS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagInfo {
    /// Lightning's name of the flag: the YAML key and the `--trainer.<name>` option.
    pub name: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
}

macro_rules! define_config {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde($($serde:tt)*)])?
        $field:ident: $fty:ty = $default:expr;
        fn $setter:ident($arg:ident: $aty:ty) => $conv:expr;
    )*) => {
        /// Every Trainer flag that is data, under Lightning's names, with Lightning's defaults:
        /// what `config.yaml`'s `trainer:` section holds. Build a trainer from it with
        /// [`TrainerBuilder::config`](crate::TrainerBuilder::config); set flags with the same
        /// methods as the builder's (`TrainerConfig::default().max_epochs(3)`). Unknown keys
        /// are errors when deserializing. See [the module](self) for the YAML forms.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        #[non_exhaustive]
        pub struct TrainerConfig {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])?
                pub $field: $fty,
            )*
        }

        impl Default for TrainerConfig {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl TrainerConfig {
            /// Every flag, in declaration order: name and doc comment.
            pub const FLAGS: &'static [FlagInfo] = &[
                $(FlagInfo { name: stringify!($field), doc: concat!($($doc, "\n"),*) },)*
            ];

            $(
                $(#[doc = $doc])*
                #[must_use]
                pub fn $setter(mut self, $arg: $aty) -> Self {
                    self.$field = $conv;
                    self
                }
            )*
        }
    };
}

trainer_flags!(define_config);

/// The flags whose checks also give the value the trainer runs with (see
/// [`TrainerConfig::check`]).
pub(crate) struct CheckedFlags {
    pub limit_train_batches: Limit,
    pub limit_val_batches: Limit,
    pub limit_test_batches: Limit,
    pub limit_predict_batches: Limit,
    pub profiler: Option<crate::Profiler>,
    pub overfit_batches: Limit,
    pub precision: crate::Precision,
}

impl TrainerConfig {
    /// Checks the flags that do not depend on the module (the builder also checks those that
    /// do, such as clipping under manual optimization). Errors name the flag and what to change.
    pub fn validate(&self) -> Result<(), Error> {
        self.check().map(drop)
    }

    /// [`validate`](Self::validate), keeping the values the checks parse for the builder.
    pub(crate) fn check(&self) -> Result<CheckedFlags, Error> {
        let checked = CheckedFlags {
            limit_train_batches: self.limit_train_batches.validate("limit_train_batches")?,
            limit_val_batches: self.limit_val_batches.validate("limit_val_batches")?,
            limit_test_batches: self.limit_test_batches.validate("limit_test_batches")?,
            limit_predict_batches: self.limit_predict_batches.validate("limit_predict_batches")?,
            profiler: self.profiler.as_deref().map(str::parse).transpose()?,
            overfit_batches: crate::trainer::validate_overfit_batches(self.overfit_batches, self.fast_dev_run)?,
            precision: crate::PrecisionChoice::Text(self.precision.clone()).resolve()?,
        };
        crate::strategies::accelerator::validate_devices(&self.devices)?;
        crate::strategies::ddp::Strategy::parse(&self.strategy)?;
        if !(self.signal_timeout.is_finite() && self.signal_timeout >= 0.0) {
            return Err(Error::config(
                "signal_timeout",
                format!(
                    "{} is not a number of seconds; give 0 or more (10 by default)",
                    self.signal_timeout
                ),
            ));
        }
        if self.num_nodes == 0 {
            return Err(Error::config("num_nodes", "it must be at least 1"));
        }
        match &self.val_check_interval {
            ValCheckInterval::Fraction(f) if self.check_val_every_n_epoch.is_none() => {
                return Err(Error::config(
                    "val_check_interval",
                    format!(
                        "a fraction ({f}) needs epochs to be a fraction of, but `check_val_every_n_epoch` is None; \
                         give a number of training batches (`val_check_interval(100)`), or set `check_val_every_n_epoch`"
                    ),
                ));
            }
            ValCheckInterval::Fraction(f) if !(*f > 0.0 && *f <= 1.0) => {
                return Err(Error::config(
                    "val_check_interval",
                    format!(
                        "the fraction {f} is outside (0, 1]; use a fraction of the epoch in (0, 1] or a number of training batches"
                    ),
                ));
            }
            ValCheckInterval::Batches(0) | ValCheckInterval::Negative(_) => {
                return Err(Error::config(
                    "val_check_interval",
                    "it must be at least 1 batch; to turn validation off, set `limit_val_batches(0)`",
                ));
            }
            ValCheckInterval::Time(time) if time.duration_of("val_check_interval")?.is_zero() => {
                return Err(Error::config(
                    "val_check_interval",
                    "a time of 0 validates after every batch; give a positive time, or `val_check_interval(1)` \
                     to validate after every batch",
                ));
            }
            _ => {}
        }
        if self.check_val_every_n_epoch == Some(0) {
            return Err(Error::config(
                "check_val_every_n_epoch",
                "0 epochs never comes; use 1 or more, or `None` to validate by batch count with `val_check_interval`",
            ));
        }
        if self.log_every_n_steps == 0 {
            return Err(Error::config(
                "log_every_n_steps",
                "0 steps never comes; use 1 or more, or `enable_logger(false)` to log nothing",
            ));
        }
        if self.fast_dev_run == Some(0) {
            return Err(Error::config(
                "fast_dev_run",
                "0 batches runs nothing; use 1 or more, or leave it unset",
            ));
        }
        let max_epochs = self
            .max_epochs
            .map(|max| max.validate("max_epochs"))
            .transpose()?
            .flatten();
        let max_steps = self.max_steps.validate("max_steps")?;
        let nothing_to_train = matches!((max_epochs, max_steps), (Some(0), None | Some(0)) | (None, Some(0)));
        if nothing_to_train && self.fast_dev_run.is_none() {
            return Err(Error::config(
                if max_epochs == Some(0) {
                    "max_epochs"
                } else {
                    "max_steps"
                },
                "with zero epochs and zero steps there is nothing to train; set `max_epochs` or `max_steps` to at least 1",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_epochs, max_epochs)
            && min > max
        {
            return Err(Error::config(
                "min_epochs",
                format!("{min} is more than max_epochs ({max}); lower it or raise max_epochs"),
            ));
        }
        if let (Some(min), Some(max)) = (self.min_steps, max_steps)
            && min > max
        {
            return Err(Error::config(
                "min_steps",
                format!("{min} is more than max_steps ({max}); lower it or raise max_steps"),
            ));
        }
        if let Some(v) = self.gradient_clip_val
            && v != 0.0
            && !(v > 0.0 && v.is_finite())
        {
            return Err(Error::config(
                "gradient_clip_val",
                format!("{v} is not a positive number; use a positive value, or leave it unset"),
            ));
        }
        self.accumulate_grad_batches.validate()?;
        if let Some(max_time) = &self.max_time {
            max_time.duration()?;
        }
        if let Some(norm_type) = self.track_grad_norm {
            crate::callbacks::GradientNormMonitor::check(norm_type)?;
        }
        Ok(checked)
    }

    /// The flags as a JSON object (what `--print_config` prints under `trainer:`).
    pub fn to_json(&self) -> JsonValue {
        serde_json::to_value(self).unwrap_or(JsonValue::Null)
    }
}

/// `precision`: one of Lightning's strings, or its integer aliases (`16`, `32`, `64`); checked
/// by `validate()`.
mod precision_text {
    use super::*;

    pub fn serialize<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::String(text) => Ok(text),
            JsonValue::Number(n) => Ok(n.to_string()),
            other => Err(D::Error::custom(format!(
                "expected a precision such as \"32-true\" or \"bf16-mixed\", found {other}"
            ))),
        }
    }
}

/// `max_steps`: a count, or `-1` / null for no limit (serialized as `-1`, as Lightning writes it).
mod max_count {
    use super::*;
    use crate::MaxCount;

    pub fn serialize<S: Serializer>(value: &MaxCount, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(value.to_i64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MaxCount, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null => Ok(MaxCount::Unlimited),
            JsonValue::Number(n) if n.as_i64() == Some(-1) => Ok(MaxCount::Unlimited),
            JsonValue::Number(n) if n.as_u64().is_some() => Ok(MaxCount::Count(n.as_u64().map_or(0, |n| n as usize))),
            other => Err(D::Error::custom(format!(
                "expected a whole number of at least 0, or -1 for no limit, found {other}"
            ))),
        }
    }
}

/// `max_epochs`: unset (null, Lightning's `None`: 1000 unless something else bounds the run),
/// a count, or `-1` for no limit.
mod optional_max_count {
    use super::*;
    use crate::MaxCount;

    pub fn serialize<S: Serializer>(value: &Option<MaxCount>, serializer: S) -> Result<S::Ok, S::Error> {
        value.map(MaxCount::to_i64).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<MaxCount>, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null => Ok(None),
            value => max_count::deserialize(value).map(Some).map_err(D::Error::custom),
        }
    }
}

/// `Option<usize>` where null or `-1` mean "not set".
mod optional_count {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<usize>, serializer: S) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null => Ok(None),
            JsonValue::Number(n) if n.as_i64() == Some(-1) => Ok(None),
            JsonValue::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().map(|n| n as usize)),
            other => Err(D::Error::custom(format!(
                "expected a whole number of at least 0 (or null / -1 for none), found {other}"
            ))),
        }
    }
}

/// `num_sanity_val_steps`: a count, `-1` for all (serialized back as `-1`).
mod sanity_steps {
    use super::*;

    pub fn serialize<S: Serializer>(value: &usize, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            usize::MAX => serializer.serialize_i64(-1),
            n => serializer.serialize_u64(n as u64),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Number(n) if n.as_i64() == Some(-1) => Ok(usize::MAX),
            JsonValue::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().map_or(0, |n| n as usize)),
            other => Err(D::Error::custom(format!(
                "expected a number of batches (0 to skip, -1 for all), found {other}"
            ))),
        }
    }
}

/// `fast_dev_run`: `false`, `true` (1 batch) or a number of batches.
mod fast_dev_run {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<usize>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            None => serializer.serialize_bool(false),
            Some(n) => serializer.serialize_u64(*n as u64),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null | JsonValue::Bool(false) => Ok(None),
            JsonValue::Bool(true) => Ok(Some(1)),
            JsonValue::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().map(|n| n as usize)),
            other => Err(D::Error::custom(format!(
                "expected true, false or a number of batches, found {other}"
            ))),
        }
    }
}

/// `track_grad_norm`: a `p` (a number or `"inf"`), or null / `-1` for off.
mod grad_norm_type {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(p) if p.is_infinite() => serializer.serialize_str("inf"),
            other => other.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null => Ok(None),
            JsonValue::Number(n) if n.as_f64() == Some(-1.0) => Ok(None),
            JsonValue::Number(n) => Ok(n.as_f64()),
            JsonValue::String(s) if s == "inf" => Ok(Some(f64::INFINITY)),
            other => Err(D::Error::custom(format!(
                "expected a norm type (a number or \"inf\"), or -1 for off, found {other}"
            ))),
        }
    }
}

/// A YAML/JSON number as a [`Limit`] or [`ValCheckInterval`] reads it: a whole number (signed,
/// to report negatives) or a fraction.
enum Number {
    Whole(i64),
    Fraction(f64),
}

fn number<E: serde::de::Error>(value: JsonValue, what: &str) -> Result<Number, E> {
    match &value {
        JsonValue::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Number::Whole(i))
            } else if let Some(u) = n.as_u64() {
                Ok(Number::Whole(i64::try_from(u).unwrap_or(i64::MAX)))
            } else {
                Ok(Number::Fraction(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        other => Err(E::custom(format!("expected {what}, found {other}"))),
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            // Lightning's default, `None`, is every batch.
            Limit::All => serializer.serialize_none(),
            Limit::Batches(n) => serializer.serialize_u64(n as u64),
            Limit::Fraction(f) => serializer.serialize_f64(f),
            Limit::Negative(n) => serializer.serialize_i64(n),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    /// A whole number of batches (`10`), a fraction (`0.25`), or null for all.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = JsonValue::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Limit::All);
        }
        Ok(
            match number(value, "a number of batches (10) or a fraction of them (0.25)")? {
                Number::Whole(n) => usize::try_from(n).map_or(Limit::Negative(n), Limit::Batches),
                Number::Fraction(f) => Limit::Fraction(f),
            },
        )
    }
}

impl Serialize for ValCheckInterval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ValCheckInterval::Fraction(f) => serializer.serialize_f64(*f),
            ValCheckInterval::Batches(n) => serializer.serialize_u64(*n as u64),
            ValCheckInterval::Time(time) => time.serialize(serializer),
            ValCheckInterval::Negative(n) => serializer.serialize_i64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ValCheckInterval {
    /// A fraction of the epoch (`0.25`), a number of training batches (`100`), or a time
    /// (`"00:00:15:00"`, `{minutes: 15}`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = JsonValue::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(ValCheckInterval::default());
        }
        if value.is_string() || value.is_object() {
            return MaxTime::deserialize(value)
                .map(ValCheckInterval::Time)
                .map_err(D::Error::custom);
        }
        Ok(
            match number(
                value,
                "a fraction of the epoch (0.25) or a number of training batches (100)",
            )? {
                Number::Whole(n) => usize::try_from(n).map_or(ValCheckInterval::Negative(n), ValCheckInterval::Batches),
                Number::Fraction(f) => ValCheckInterval::Fraction(f),
            },
        )
    }
}

impl Serialize for ClipAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            ClipAlgorithm::Norm => "norm",
            ClipAlgorithm::Value => "value",
        })
    }
}

impl<'de> Deserialize<'de> for ClipAlgorithm {
    /// `"norm"` or `"value"`; null is `"norm"`, as in Lightning.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null => Ok(ClipAlgorithm::Norm),
            JsonValue::String(s) if s == "norm" => Ok(ClipAlgorithm::Norm),
            JsonValue::String(s) if s == "value" => Ok(ClipAlgorithm::Value),
            other => Err(D::Error::custom(format!(
                "expected \"norm\" or \"value\", found {other}"
            ))),
        }
    }
}

impl Serialize for MaxTime {
    /// `"DD:HH:MM:SS"` (a duration with a fraction of a second as `{seconds: s}`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxTime::Text(text) => serializer.serialize_str(text),
            MaxTime::Duration(d) if d.subsec_nanos() == 0 => {
                let s = d.as_secs();
                let text = format!(
                    "{:02}:{:02}:{:02}:{:02}",
                    s / 86_400,
                    s / 3600 % 24,
                    s / 60 % 60,
                    s % 60
                );
                serializer.serialize_str(&text)
            }
            MaxTime::Duration(d) => {
                let map = serde_json::json!({ "seconds": d.as_secs_f64() });
                map.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for MaxTime {
    /// `"DD:HH:MM:SS"`, or a map of `days`, `hours`, `minutes`, `seconds` (Lightning's dict
    /// form), none of them negative.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            // Read into a duration now, so equal limits compare equal; text that is not
            // "DD:HH:MM:SS" stays text for `validate` to report.
            JsonValue::String(text) => {
                let text = MaxTime::Text(text);
                Ok(text.duration().map_or(text, MaxTime::Duration))
            }
            JsonValue::Object(map) => {
                let mut seconds = 0.0;
                for (unit, value) in &map {
                    let scale = match unit.as_str() {
                        "days" => 86_400.0,
                        "hours" => 3600.0,
                        "minutes" => 60.0,
                        "seconds" => 1.0,
                        other => {
                            return Err(D::Error::custom(format!(
                                "unknown unit `{other}`; use days, hours, minutes and seconds"
                            )));
                        }
                    };
                    let amount = value
                        .as_f64()
                        .ok_or_else(|| D::Error::custom(format!("`{unit}` must be a number, found {value}")))?;
                    if !(amount >= 0.0 && amount.is_finite()) {
                        return Err(D::Error::custom(format!(
                            "`{unit}: {amount}` is negative; a time limit is 0 or more"
                        )));
                    }
                    seconds += amount * scale;
                }
                Ok(MaxTime::Duration(Duration::from_secs_f64(seconds)))
            }
            other => Err(D::Error::custom(format!(
                "expected \"DD:HH:MM:SS\" or {{days, hours, minutes, seconds}}, found {other}"
            ))),
        }
    }
}

impl Serialize for GradientAccumulationScheduler {
    /// A number when every epoch has the same factor, else `{epoch: factor}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let schedule = self.schedule();
        match schedule.iter().collect::<Vec<_>>()[..] {
            [(0, factor)] => serializer.serialize_i64(*factor),
            _ => serializer.collect_map(schedule.iter().map(|(epoch, factor)| (epoch.to_string(), *factor))),
        }
    }
}

impl<'de> Deserialize<'de> for GradientAccumulationScheduler {
    /// A number of batches, or `{epoch: factor}`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Number(n) if n.as_i64().is_some() => {
                let factor = n.as_i64().unwrap_or(1);
                Ok(Self::from(i32::try_from(factor).unwrap_or(i32::MAX)))
            }
            JsonValue::Object(map) => {
                let mut pairs = Vec::new();
                for (epoch, factor) in &map {
                    let epoch: usize = epoch.trim().parse().map_err(|_| {
                        D::Error::custom(format!("the key `{epoch}` is not an epoch number (0, 1, ...)"))
                    })?;
                    let factor = factor.as_u64().filter(|f| *f >= 1).ok_or_else(|| {
                        D::Error::custom(format!(
                            "epoch {epoch}'s factor {factor} is not a whole number of at least 1"
                        ))
                    })?;
                    pairs.push((epoch, factor as usize));
                }
                Ok(Self::new(pairs))
            }
            other => Err(D::Error::custom(format!(
                "expected a number of batches (4) or a schedule {{epoch: factor}}, found {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(yaml: &str) -> Result<TrainerConfig, String> {
        let value: JsonValue = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn lightning_yaml_forms_read() {
        let config = from_yaml(
            "limit_val_batches: 0.25\nlimit_train_batches: 10\nmax_time: {minutes: 10}\nmax_steps: -1\n\
             num_sanity_val_steps: -1\nfast_dev_run: true\naccumulate_grad_batches: {0: 8, 4: 1}\n\
             gradient_clip_algorithm: value\nlogger: false\n",
        )
        .unwrap();
        assert_eq!(config.limit_val_batches, Limit::Fraction(0.25));
        assert_eq!(config.limit_train_batches, Limit::Batches(10));
        assert_eq!(config.max_time, Some(MaxTime::Duration(Duration::from_secs(600))));
        assert_eq!(config.max_steps, crate::MaxCount::Unlimited);
        assert_eq!(config.num_sanity_val_steps, usize::MAX);
        assert_eq!(config.fast_dev_run, Some(1));
        assert_eq!(config.accumulate_grad_batches.factor(5), 1);
        assert_eq!(config.accumulate_grad_batches.factor(3), 8);
        assert_eq!(config.gradient_clip_algorithm, ClipAlgorithm::Value);
        assert!(!config.logger.enabled());
        let text = from_yaml("max_time: \"00:00:10:00\"").unwrap();
        assert_eq!(text.max_time.unwrap().duration().unwrap(), Duration::from_secs(600));
    }

    #[test]
    fn round_trips_through_yaml() {
        let config = TrainerConfig::default()
            .max_epochs(3)
            .limit_val_batches(0.5)
            .max_time(Duration::from_secs(90))
            .accumulate_grad_batches(GradientAccumulationScheduler::new([(0, 4), (2, 1)]))
            .num_sanity_val_steps(usize::MAX)
            .track_grad_norm(f64::INFINITY)
            .profiler("simple");
        let yaml = serde_saphyr::to_string(&config).unwrap();
        let read = from_yaml(&yaml).unwrap();
        assert_eq!(serde_saphyr::to_string(&read).unwrap(), yaml);
        assert_eq!(read.max_time.unwrap().duration().unwrap(), Duration::from_secs(90));
        assert_eq!(read.limit_val_batches, Limit::Fraction(0.5));
        assert_eq!(read.accumulate_grad_batches, config.accumulate_grad_batches);
        assert_eq!(
            from_yaml(&serde_saphyr::to_string(&TrainerConfig::default()).unwrap()).unwrap(),
            TrainerConfig::default()
        );
    }

    #[test]
    fn bad_values_name_what_to_write() {
        let negative = from_yaml("max_time: {minutes: -10}").unwrap_err();
        assert!(negative.contains("negative"), "{negative}");
        let unknown = from_yaml("max_epoch: 3").unwrap_err();
        assert!(unknown.contains("max_epoch"), "{unknown}");
        let limit = from_yaml("limit_val_batches: lots").unwrap_err();
        assert!(limit.contains("fraction"), "{limit}");
        let invalid = TrainerConfig::default().limit_val_batches(1.5).validate().unwrap_err();
        assert!(invalid.to_string().contains("limit_val_batches"), "{invalid}");
        let zero = TrainerConfig::default().max_epochs(0).validate().unwrap_err();
        assert!(zero.to_string().contains("max_epochs"), "{zero}");
    }

    #[test]
    fn max_epochs_tells_unset_from_unlimited() {
        use crate::MaxCount;
        assert_eq!(from_yaml("{}").unwrap().max_epochs, None);
        assert_eq!(from_yaml("max_epochs: null").unwrap().max_epochs, None);
        assert_eq!(
            from_yaml("max_epochs: -1").unwrap().max_epochs,
            Some(MaxCount::Unlimited)
        );
        assert_eq!(from_yaml("max_epochs: 5").unwrap().max_epochs, Some(MaxCount::Count(5)));
        assert_eq!(from_yaml("max_steps: null").unwrap().max_steps, MaxCount::Unlimited);
        assert!(from_yaml("max_epochs: -2").unwrap_err().contains("-1 for no limit"));
        // Each form survives a round trip through YAML (`config.yaml` of a run).
        for max_epochs in [None, Some(MaxCount::Unlimited), Some(MaxCount::Count(3))] {
            let config = TrainerConfig {
                max_epochs,
                ..TrainerConfig::default()
            };
            let read = from_yaml(&serde_saphyr::to_string(&config).unwrap()).unwrap();
            assert_eq!(read.max_epochs, max_epochs);
        }
        // The builder's forms: a count, -1, the enum; another negative number is an error.
        assert_eq!(
            TrainerConfig::default().max_epochs(-1).max_epochs,
            Some(MaxCount::Unlimited)
        );
        assert_eq!(TrainerConfig::default().max_steps(-1).max_steps, MaxCount::Unlimited);
        assert_eq!(
            TrainerConfig::default().max_epochs(7usize).max_epochs,
            Some(MaxCount::Count(7))
        );
        let negative = TrainerConfig::default()
            .max_epochs(-3)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            negative.contains("max_epochs") && negative.contains("-1 for no limit"),
            "{negative}"
        );
    }

    #[test]
    fn every_flag_has_a_doc_and_a_yaml_key() {
        let keys = TrainerConfig::default().to_json();
        for flag in TrainerConfig::FLAGS {
            assert!(!flag.doc.trim().is_empty(), "{} has no doc", flag.name);
            assert!(keys.get(flag.name).is_some(), "{} is not serialized", flag.name);
        }
        assert_eq!(keys.as_object().unwrap().len(), TrainerConfig::FLAGS.len());
    }
}
