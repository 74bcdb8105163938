//! Lightning 1.x flags that Lightning 2 removed (`gpus`, `auto_lr_find`,
//! `resume_from_checkpoint`, ...): each says what replaces it, wherever it is written.
//!
//! - In code, `Trainer::builder().gpus(2)` does not compile: the method exists only to carry a
//!   bound no type satisfies, whose `#[diagnostic::on_unimplemented]` message names the
//!   replacement (as [`crate::hooks::diagnostics`] does for other misuse). `TrainerConfig` has
//!   the same methods.
//! - In a config file or on the command line ([`LightningCli`](crate::cli::LightningCli)),
//!   `trainer: gpus: 2`, `--trainer.gpus 2` or `PL_TRAINER_GPUS=2` is an error with the
//!   replacement, written as that user writes flags ([`RemovedFlag::message`]).

use super::TrainerBuilder;
use super::config::TrainerConfig;
use crate::hooks::LightningModule;
use crate::hooks::diagnostics::Never;

/// A Lightning 1.x Trainer flag and what replaces it.
#[derive(Clone, Copy, Debug)]
pub struct RemovedFlag {
    /// The 1.x name (`gpus`).
    pub name: &'static str,
    /// What to write instead, with flags as `[[flag value]]` (see [`message`](Self::message)).
    pub instead: &'static str,
}

/// How flags are written where the removed one was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagStyle {
    /// `--trainer.accelerator gpu`.
    CommandLine,
    /// `accelerator: gpu` (under `trainer:`).
    Yaml,
}

impl RemovedFlag {
    /// `gpus` is a Lightning 1.x flag ... : what the error says, with flags written in `style`.
    pub fn message(&self, written: &str, style: FlagStyle) -> String {
        format!(
            "`{written}` is a Lightning 1.x flag, removed in Lightning 2.0; instead, {}",
            flag_refs(self.instead, style)
        )
    }
}

/// `[[accelerator gpu]]` written as `--trainer.accelerator gpu` or `accelerator: gpu`.
fn flag_refs(text: &str, style: FlagStyle) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("]]") else { break };
        let inner = &rest[start + 2..start + end];
        let (flag, value) = inner.split_once(' ').unwrap_or((inner, "VALUE"));
        match style {
            // A value with spaces or braces is one shell word in quotes.
            FlagStyle::CommandLine if value.contains([' ', '{', '[']) => {
                out.push_str(&format!("`--trainer.{flag} '{value}'`"));
            }
            FlagStyle::CommandLine => out.push_str(&format!("`--trainer.{flag} {value}`")),
            FlagStyle::Yaml => out.push_str(&format!("`{flag}: {value}`")),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The removed flag called `name`, if it is one.
pub fn removed_flag(name: &str) -> Option<&'static RemovedFlag> {
    REMOVED_FLAGS.iter().find(|flag| flag.name == name)
}

/// Each removed flag: its run-time entry, and a trait whose message is the compile-time error of
/// the builder's (and `TrainerConfig`'s) method of that name.
macro_rules! removed_flags {
    ($(
        $flag:ident: $trait_:ident,
        instead = $instead:literal,
        message = $message:literal,
        label = $label:literal;
    )*) => {
        /// Every Lightning 1.x flag that is refused, with what replaces it.
        pub const REMOVED_FLAGS: &[RemovedFlag] = &[$(RemovedFlag { name: stringify!($flag), instead: $instead },)*];

        $(
            #[diagnostic::on_unimplemented(message = $message, label = $label)]
            #[doc(hidden)]
            pub trait $trait_ {}

            #[diagnostic::do_not_recommend]
            impl $trait_ for Never {}
        )*

        impl<M: LightningModule> TrainerBuilder<M> {
            $(
                /// Not available: a Lightning 1.x flag, removed in Lightning 2.0.
                #[doc(hidden)]
                #[must_use]
                pub fn $flag<V>(self, value: V) -> Self
                where
                    Self: $trait_,
                {
                    let _ = value;
                    self
                }
            )*
        }

        impl TrainerConfig {
            $(
                /// Not available: a Lightning 1.x flag, removed in Lightning 2.0.
                #[doc(hidden)]
                #[must_use]
                // The lifetime makes the bound depend on a parameter: a bound on a concrete
                // type alone that does not hold would be an error here, not at the call.
                pub fn $flag<'a, V>(self, value: V) -> Self
                where
                    &'a TrainerConfig: $trait_,
                {
                    let _ = value;
                    self
                }
            )*
        }
    };
}

removed_flags! {
    gpus: GpusIsALightning1Flag,
    instead = "set [[accelerator gpu]] and [[devices N]] (a count, or a list of indices)",
    message = "`gpus` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.accelerator(\"gpu\").devices(n)`";

    tpu_cores: TpuCoresIsALightning1Flag,
    instead = "Lightning 2 sets [[accelerator tpu]] and [[devices N]]; burn has no TPU backend: the accelerators are cpu, gpu, cuda, wgpu and tch",
    message = "`tpu_cores` is a Lightning 1.x flag, removed in Lightning 2.0 (burn has no TPU backend)",
    label = "use `.accelerator(..)` and `.devices(n)` with one of burn's backends";

    ipus: IpusIsALightning1Flag,
    instead = "Lightning 2 moved IPUs out of the Trainer; burn has no IPU backend: the accelerators are cpu, gpu, cuda, wgpu and tch",
    message = "`ipus` is a Lightning 1.x flag, removed in Lightning 2.0 (burn has no IPU backend)",
    label = "use `.accelerator(..)` and `.devices(n)` with one of burn's backends";

    num_processes: NumProcessesIsALightning1Flag,
    instead = "set [[accelerator cpu]] and [[devices N]]",
    message = "`num_processes` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.accelerator(\"cpu\").devices(n)`";

    auto_select_gpus: AutoSelectGpusIsALightning1Flag,
    instead = "set [[devices auto]] (or a count, or a list of indices)",
    message = "`auto_select_gpus` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.devices(\"auto\")`";

    distributed_backend: DistributedBackendIsALightning1Flag,
    instead = "set [[strategy ddp]]",
    message = "`distributed_backend` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.strategy(\"ddp\")`";

    auto_lr_find: AutoLrFindIsALightning1Flag,
    instead = "run the tuner: `--tune lr` on the command line, or `Tuner::new(&mut trainer).lr_find(..)` in code (Lightning 2's `Tuner(trainer).lr_find(model)`)",
    message = "`auto_lr_find` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `Tuner::new(&mut trainer).lr_find(&model, &mut data, LrFind::new())`";

    auto_scale_batch_size: AutoScaleBatchSizeIsALightning1Flag,
    instead = "run the tuner: `--tune batch_size` on the command line, or `Tuner::new(&mut trainer).scale_batch_size(..)` in code (Lightning 2's `Tuner(trainer).scale_batch_size(model)`)",
    message = "`auto_scale_batch_size` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `Tuner::new(&mut trainer).scale_batch_size(&model, &mut data, ScaleBatchSize::new())`";

    resume_from_checkpoint: ResumeFromCheckpointIsALightning1Flag,
    instead = "give the checkpoint to `fit`: `--ckpt_path PATH` on the command line, `ckpt_path: PATH` at the top of a config file (Lightning 2's `trainer.fit(model, ckpt_path=..)`)",
    message = "`resume_from_checkpoint` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `trainer.fit_from(model, data, path)`";

    progress_bar_refresh_rate: ProgressBarRefreshRateIsALightning1Flag,
    instead = "add a progress bar with its `refresh_rate` ([[callbacks {class_path: TQDMProgressBar, init_args: {refresh_rate: N}}]]), or set [[enable_progress_bar false]] for 0",
    message = "`progress_bar_refresh_rate` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.callback(ProgressBar::new().refresh_rate(n))`, or `.enable_progress_bar(false)`";

    weights_summary: WeightsSummaryIsALightning1Flag,
    instead = "set [[enable_model_summary false]] for None, or add a `ModelSummary` callback with `max_depth` (`-1` for \"full\")",
    message = "`weights_summary` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.enable_model_summary(false)`, or `.callback(ModelSummary::new(depth))`";

    terminate_on_nan: TerminateOnNanIsALightning1Flag,
    instead = "set [[detect_anomaly true]] (a loss or gradient that is not finite ends the run with an error naming it)",
    message = "`terminate_on_nan` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.detect_anomaly(true)`";

    amp_backend: AmpBackendIsALightning1Flag,
    instead = "choose the precision alone: [[precision 16-mixed]] or [[precision bf16-mixed]] (there is one mixed-precision backend)",
    message = "`amp_backend` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.precision(\"16-mixed\")`";

    amp_level: AmpLevelIsALightning1Flag,
    instead = "choose the precision alone: [[precision 16-mixed]] or [[precision bf16-mixed]] (there are no apex levels)",
    message = "`amp_level` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.precision(\"16-mixed\")`";

    flush_logs_every_n_steps: FlushLogsEveryNStepsIsALightning1Flag,
    instead = "it is the CSV logger's option in Lightning 2: [[logger {class_path: CSVLogger, init_args: {flush_logs_every_n_steps: N}}]]",
    message = "`flush_logs_every_n_steps` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.logger(CsvLogger::new(dir).flush_logs_every_n_steps(n))`";

    checkpoint_callback: CheckpointCallbackIsALightning1Flag,
    instead = "set [[enable_checkpointing false]], or add a `ModelCheckpoint` to `callbacks`",
    message = "`checkpoint_callback` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.enable_checkpointing(..)`";

    reload_dataloaders_every_epoch: ReloadDataloadersEveryEpochIsALightning1Flag,
    instead = "set [[reload_dataloaders_every_n_epochs 1]]",
    message = "`reload_dataloaders_every_epoch` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.reload_dataloaders_every_n_epochs(1)`";

    stochastic_weight_avg: StochasticWeightAvgIsALightning1Flag,
    instead = "Lightning 2 adds a `StochasticWeightAveraging` callback, which is not built here",
    message = "`stochastic_weight_avg` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "Lightning 2's `StochasticWeightAveraging` callback is not built here";

    log_gpu_memory: LogGpuMemoryIsALightning1Flag,
    instead = "Lightning 2 adds a `DeviceStatsMonitor` callback, which is not built here",
    message = "`log_gpu_memory` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "Lightning 2's `DeviceStatsMonitor` callback is not built here";

    replace_sampler_ddp: ReplaceSamplerDdpIsALightning1Flag,
    instead = "leave it out: with several devices each rank trains on its own shard of the training loader",
    message = "`replace_sampler_ddp` is a Lightning 1.x flag, removed in Lightning 2.0 (`use_distributed_sampler`)",
    label = "each rank trains on its own shard of the training loader: leave it out";

    move_metrics_to_cpu: MoveMetricsToCpuIsALightning1Flag,
    instead = "leave it out: logged values are read to the host only when they are written",
    message = "`move_metrics_to_cpu` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "logged values are read to the host only when written: leave it out";

    weights_save_path: WeightsSavePathIsALightning1Flag,
    instead = "set [[default_root_dir PATH]], or a `ModelCheckpoint`'s `dirpath`",
    message = "`weights_save_path` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.default_root_dir(path)`, or `ModelCheckpoint::new().dirpath(path)`";

    truncated_bptt_steps: TruncatedBpttStepsIsALightning1Flag,
    instead = "split the sequence yourself in a manual `training_step` (`#[lightning_module(manual_optimization)]`), as Lightning 2 does",
    message = "`truncated_bptt_steps` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "split the sequence in a manual `training_step`";

    row_log_interval: RowLogIntervalIsALightning1Flag,
    instead = "set [[log_every_n_steps N]]",
    message = "`row_log_interval` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.log_every_n_steps(n)`";

    val_percent_check: ValPercentCheckIsALightning1Flag,
    instead = "set [[limit_val_batches 0.25]] (a fraction, or a count of batches)",
    message = "`val_percent_check` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.limit_val_batches(fraction)`";

    train_percent_check: TrainPercentCheckIsALightning1Flag,
    instead = "set [[limit_train_batches 0.25]] (a fraction, or a count of batches)",
    message = "`train_percent_check` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.limit_train_batches(fraction)`";

    early_stop_callback: EarlyStopCallbackIsALightning1Flag,
    instead = "add an `EarlyStopping` callback with its `monitor` to `callbacks`",
    message = "`early_stop_callback` is a Lightning 1.x flag, removed in Lightning 2.0",
    label = "use `.callback(EarlyStopping::new(\"val_loss\", Mode::Min))`";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_flags_name_their_replacement_as_the_user_writes_flags() {
        let gpus = removed_flag("gpus").unwrap();
        assert_eq!(
            gpus.message("--trainer.gpus", FlagStyle::CommandLine),
            "`--trainer.gpus` is a Lightning 1.x flag, removed in Lightning 2.0; instead, set \
             `--trainer.accelerator gpu` and `--trainer.devices N` (a count, or a list of indices)"
        );
        assert!(
            gpus.message("trainer.gpus", FlagStyle::Yaml)
                .contains("set `accelerator: gpu` and `devices: N`")
        );
        assert!(removed_flag("max_epochs").is_none());
        for flag in REMOVED_FLAGS {
            assert!(
                !TrainerConfig::FLAGS.iter().any(|f| f.name == flag.name),
                "{} is a flag",
                flag.name
            );
        }
    }
}
