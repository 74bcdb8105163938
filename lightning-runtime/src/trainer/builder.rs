//! [`TrainerBuilder`]: the flags of a [`TrainerConfig`], the loggers, callbacks and device, checked
//! into the [`Config`] the loops read.

use super::Trainer;
use super::config::TrainerConfig;
use crate::callbacks::ModelCheckpoint;
use crate::core::flags::{Limit, MaxTime, ValCheckInterval};
use crate::hooks::{Callback, Callbacks, LightningModule};
use crate::loggers::Logger;
use crate::loops::Config;
use crate::optim::{ClipAlgorithm, GradientClip};
use crate::{Device, Error};
use std::path::PathBuf;

/// Builds a [`Trainer`]; every flag has Lightning's default. The flags that are data live in a
/// [`TrainerConfig`] (set them one by one with the methods below, or all at once with
/// [`config`](Self::config)); loggers, callbacks and the device are set here only.
pub struct TrainerBuilder<M: LightningModule> {
    config: TrainerConfig,
    device: Option<Device>,
    loggers: Vec<Box<dyn Logger>>,
    callbacks: Callbacks<M>,
    grad_scaler_growth_interval: usize,
    /// What replaces `configure_optimizers`' optimizer or scheduler (LightningCli's `--optimizer`).
    optimizer_override: Option<crate::loops::OptimizerOverride>,
    return_predictions: bool,
}

/// The builder's setter of every flag of [`trainer_flags!`](crate::trainer::config): one method per flag,
/// with the flag's doc.
macro_rules! builder_setters {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde($($serde:tt)*)])?
        $field:ident: $fty:ty = $default:expr;
        fn $setter:ident($arg:ident: $aty:ty) => $conv:expr;
    )*) => {$(
        $(#[doc = $doc])*
        #[must_use]
        pub fn $setter(mut self, $arg: $aty) -> Self {
            self.config.$field = $conv;
            self
        }
    )*};
}

impl<M: LightningModule> TrainerBuilder<M> {
    pub(super) fn new() -> Self {
        Self {
            config: TrainerConfig::default(),
            device: None,
            loggers: Vec::new(),
            callbacks: Vec::new(),
            grad_scaler_growth_interval: crate::optim::precision::GROWTH_INTERVAL,
            optimizer_override: None,
            return_predictions: true,
        }
    }

    /// Replaces what `configure_optimizers` returns (LightningCli's `--optimizer` and
    /// `--lr_scheduler`).
    pub(crate) fn optimizer_override(mut self, replacement: crate::loops::OptimizerOverride) -> Self {
        self.optimizer_override = Some(replacement);
        self
    }

    /// Optimizer steps without an inf/NaN gradient after which `16-mixed` doubles its loss scale
    /// (torch's `growth_interval`, 2000). For tests.
    #[doc(hidden)]
    #[must_use]
    pub fn grad_scaler_growth_interval(mut self, steps: usize) -> Self {
        self.grad_scaler_growth_interval = steps.max(1);
        self
    }

    crate::trainer::config::trainer_flags!(builder_setters);

    /// Replaces every data flag by those of `config` (loggers, callbacks and the device stay):
    /// a trainer from a YAML file or [`LightningCli`](crate::cli::LightningCli)'s options.
    #[must_use]
    pub fn config(mut self, config: TrainerConfig) -> Self {
        self.config = config;
        self
    }

    /// The data flags as set so far.
    pub fn trainer_config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The device to run on (default: burn's default device for the enabled backends).
    #[must_use]
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// Adds a logger (Lightning's `logger=[...]`): logged values go to every logger given, and
    /// the first one's directory is the run directory. Without one, a TensorBoard logger writes
    /// into `<default_root_dir>/lightning_logs/version_N`.
    #[must_use]
    pub fn logger(mut self, logger: impl Logger + 'static) -> Self {
        self.loggers.push(Box::new(logger));
        self
    }

    /// Whether `predict` keeps every prediction and returns them (default true; Lightning's
    /// `trainer.predict(return_predictions=...)`, whose default is true too except under
    /// strategies that spawn processes). With `false`, `predict` returns an empty `Vec` (Lightning
    /// returns `None`) and keeps no prediction, unless a [`PredictionWriter`](crate::PredictionWriter)
    /// writes at the epoch's end: then they are kept until it has written them. A run over more
    /// data than fits in memory writes each batch with a writer instead.
    #[must_use]
    pub fn return_predictions(mut self, return_predictions: bool) -> Self {
        self.return_predictions = return_predictions;
        self
    }

    /// Adds a callback (run in the order added; checkpointing callbacks last).
    #[must_use]
    pub fn callback(mut self, callback: impl Callback<M> + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Checks the flags and builds the trainer. Errors name the flag and what to change.
    pub fn build(self) -> Result<Trainer<M>, Error> {
        let flags = self.config;
        let checked = flags.check()?;
        let mut devices = validate_device(self.device, &flags.accelerator, &flags.devices)?;
        // Under `mpirun`/`srun`: one process per device, each taking its local rank's.
        let process_group = crate::strategies::process_group::join(&flags.devices, flags.num_nodes, &flags.strategy)?;
        let process_group = process_group.map(|(group, index)| {
            let device = devices.swap_remove(index % devices.len());
            devices = vec![device];
            group
        });
        crate::strategies::ddp::check_strategy(&flags.strategy, devices.len())?;
        let device = devices.remove(0);
        let replica_devices = devices;
        let ranks = replica_devices.len() + 1;
        if ranks > 1 || process_group.is_some() {
            let ranks = process_group.as_ref().map_or(ranks, |group| group.world_size);
            if M::OPTIMIZATION == crate::Optimization::Manual {
                return Err(Error::config(
                    "devices",
                    format!(
                        "{ranks} devices train data-parallel, which is built for automatic optimization only; \
                         use one device (`devices(1)`) under manual optimization"
                    ),
                ));
            }
            if !checked.overfit_batches.is_off() {
                return Err(Error::config(
                    "overfit_batches",
                    format!(
                        "it is not built for data-parallel training ({ranks} devices); use one device (`devices(1)`) \
                         to overfit"
                    ),
                ));
            }
        }
        if flags.deterministic {
            crate::strategies::accelerator::check_deterministic(&device)?;
        }
        let gradient_clip = match flags.gradient_clip_val {
            None | Some(0.0) => None,
            Some(v) => Some(match flags.gradient_clip_algorithm {
                ClipAlgorithm::Norm => GradientClip::Norm(v),
                ClipAlgorithm::Value => GradientClip::Value(v),
            }),
        };
        if gradient_clip.is_some() && M::OPTIMIZATION == crate::Optimization::Manual {
            return Err(Error::config(
                "gradient_clip_val",
                "it does not apply under manual optimization; call `grads.clip(self, GradientClip::Norm(..))` in `training_step` instead",
            ));
        }
        if flags.accumulate_grad_batches.accumulates() && M::OPTIMIZATION == crate::Optimization::Manual {
            return Err(Error::config(
                "accumulate_grad_batches",
                "it does not apply under manual optimization; sum the gradients yourself (`grads.accumulate(self, more)`) and call `optimizer_step` every N batches",
            ));
        }
        let precision = checked.precision;
        precision.check(&device)?;
        if precision.is_mixed() && M::OPTIMIZATION == crate::Optimization::Manual {
            return Err(Error::config(
                "precision",
                format!(
                    "`{precision}` is not available under manual optimization yet; use `{}` (or `32-true`)",
                    if precision == crate::Precision::F16Mixed {
                        "16-true"
                    } else {
                        "bf16-true"
                    }
                ),
            ));
        }
        let mut callbacks = self.callbacks;
        // Callbacks the configuration names (`callbacks:`), after those given in code; one of a
        // kind replaces the default added below.
        for spec in &flags.callbacks {
            callbacks.push(crate::callbacks::registry::build::<M>(spec)?);
        }
        // Several processes: only rank zero reports and writes (Lightning's `rank_zero_only`).
        let quiet_rank = process_group.as_ref().is_some_and(|group| group.rank != 0);
        if quiet_rank {
            callbacks.retain(|callback| {
                callback.role() != crate::CallbackRole::Checkpoint
                    && !matches!(&*callback.name(), "ProgressBar" | "EpochSummary" | "ModelSummary")
            });
        }
        // Options of the built-in callbacks that cannot run together fail here, before any work.
        for callback in callbacks.iter_mut() {
            let callback: &mut dyn std::any::Any = &mut **callback;
            if let Some(checkpoint) = callback.downcast_mut::<ModelCheckpoint>() {
                checkpoint.check()?;
            }
        }
        if !flags.enable_progress_bar && callbacks.iter().any(|c| c.name() == "ProgressBar") {
            return Err(Error::config(
                "enable_progress_bar",
                "it is false but a `ProgressBar` was given with `.callback(..)`; remove one of the two",
            ));
        }
        if flags.enable_progress_bar
            && !quiet_rank
            && !callbacks
                .iter()
                .any(|c| matches!(&*c.name(), "ProgressBar" | "EpochSummary"))
        {
            callbacks.push(Box::new(crate::callbacks::progress::ProgressBar::new()));
        }
        if let Some(max_time) = &flags.max_time {
            let duration = max_time.duration()?;
            if !callbacks.iter().any(|c| c.name() == "Timer") {
                callbacks.push(Box::new(crate::callbacks::timer::Timer::new(Some(duration))));
            }
        }
        let max_steps = flags.max_steps.validate("max_steps")?;
        let max_epochs = match flags.max_epochs {
            Some(max_epochs) => max_epochs.validate("max_epochs")?,
            // Lightning's `_parse_loop_limits`: unset, with nothing else bounding the run (no
            // `max_steps`, no `Timer`, which `max_time` adds), 1000 epochs with a warning.
            None if max_steps.is_none() && !callbacks.iter().any(|c| c.name() == "Timer") => {
                tracing::warn!(target: "burn_lightning",
                    "`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit, set `max_epochs=-1`.");
                Some(1000)
            }
            None => None,
        };
        if let Some(norm_type) = flags.track_grad_norm {
            callbacks.push(Box::new(crate::callbacks::GradientNormMonitor::new(norm_type)));
        }
        if flags.enable_model_summary && !quiet_rank && !callbacks.iter().any(|c| c.name() == "ModelSummary") {
            callbacks.push(Box::new(crate::callbacks::ModelSummary::default()));
        }
        let fast_dev_run = flags.fast_dev_run;
        let default_root_dir = flags.default_root_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        // Loggers the configuration names (`logger: csv`), after those given in code.
        let mut loggers = self.loggers;
        for spec in flags.logger.specs() {
            loggers.push(crate::loggers::registry::build(spec, &default_root_dir)?);
        }
        let logging = flags.logger.enabled();
        if flags.enable_checkpointing
            && !quiet_rank
            && fast_dev_run.is_none()
            && !callbacks.iter().any(|c| c.role() == crate::CallbackRole::Checkpoint)
        {
            callbacks.push(Box::new(ModelCheckpoint::default()));
        }
        crate::loops::run::merge_callbacks(&mut callbacks, Vec::new());
        let config = Config {
            max_epochs,
            min_epochs: flags.min_epochs.unwrap_or(0),
            max_steps,
            min_steps: flags.min_steps.unwrap_or(0),
            limit_train_batches: checked.limit_train_batches,
            limit_val_batches: checked.limit_val_batches,
            limit_test_batches: checked.limit_test_batches,
            limit_predict_batches: checked.limit_predict_batches,
            return_predictions: self.return_predictions,
            // A time is read once here ("DD:HH:MM:SS" was checked by `check`).
            val_check_interval: match &flags.val_check_interval {
                ValCheckInterval::Time(time) => {
                    ValCheckInterval::Time(MaxTime::Duration(time.duration_of("val_check_interval")?))
                }
                other => other.clone(),
            },
            check_val_every_n_epoch: flags.check_val_every_n_epoch,
            num_sanity_val_steps: flags.num_sanity_val_steps,
            fast_dev_run,
            default_root_dir,
            seed: flags.seed,
            device,
            replica_devices,
            process_group,
            gradient_clip,
            accumulate_grad_batches: flags.accumulate_grad_batches,
            log_every_n_steps: flags.log_every_n_steps,
            exit_on_signal: flags.exit_on_signal,
            signal_timeout: std::time::Duration::from_secs_f64(flags.signal_timeout),
            detect_anomaly: flags.detect_anomaly,
            default_logger: logging && !quiet_rank,
            enable_report: flags.enable_report && !quiet_rank,
            profiler: checked.profiler,
            overfit_batches: checked.overfit_batches,
            reload_dataloaders_every_n_epochs: flags.reload_dataloaders_every_n_epochs,
            tuning: None,
            precision,
            grad_scaler_growth_interval: self.grad_scaler_growth_interval,
            optimizer_override: self.optimizer_override,
        };
        if !logging || quiet_rank {
            loggers.clear();
        }
        Ok(Trainer::from_parts(
            config.with_fast_dev_run().with_overfit_batches(),
            callbacks,
            loggers,
        ))
    }
}

/// `overfit_batches`: a count or a fraction as the `limit_*_batches` flags take (0: off); an
/// error with `fast_dev_run`, which Lightning lets override part of it.
pub(crate) fn validate_overfit_batches(overfit_batches: Limit, fast_dev_run: Option<usize>) -> Result<Limit, Error> {
    let overfit_batches = overfit_batches.validate("overfit_batches")?;
    if let Some(n) = fast_dev_run
        && !overfit_batches.is_off()
    {
        return Err(Error::config(
            "overfit_batches",
            format!(
                "it contradicts `fast_dev_run` ({n}): both choose the batches to run; keep `overfit_batches` to check \
                 the model can overfit, or `fast_dev_run` for a smoke test"
            ),
        ));
    }
    Ok(overfit_batches)
}

/// The devices of the run, rank zero's first: `device(..)`, else what `accelerator` and
/// `devices` name, else burn's default. `device(..)` with an accelerator or devices other than
/// `"auto"` is an error.
pub(crate) fn validate_device(
    device: Option<Device>,
    accelerator: &crate::Accelerator,
    devices: &crate::Devices,
) -> Result<Vec<Device>, Error> {
    let chosen = crate::strategies::accelerator::resolve_devices(accelerator, devices)?;
    match (device, chosen) {
        (Some(device), None) => Ok(vec![device]),
        (Some(device), Some(_)) => Err(Error::config(
            if *accelerator == crate::Accelerator::Auto {
                "devices"
            } else {
                "accelerator"
            },
            format!(
                "it names a device, and `device({device:?})` was given too; keep one of the two (`device(..)` wins only \
                 over \"auto\")"
            ),
        )),
        (None, Some(devices)) => Ok(devices),
        (None, None) => Ok(vec![Device::default()]),
    }
}
