//! The optimizers and schedulers `--optimizer` and `--lr_scheduler` choose (LightningCLI's
//! `auto_configure_optimizers`): burn's, under torch's names and with torch's option names and
//! defaults, which LightningCLI users write (`--optimizer Adam --optimizer.lr 0.01
//! --optimizer.weight_decay 1e-4`, `--lr_scheduler StepLR --lr_scheduler.step_size 10`).
//!
//! To register one, add an [`OptimizerKind`] to [`OPTIMIZER_KINDS`] (or a [`SchedulerKind`] to
//! [`SCHEDULER_KINDS`]): its names, its options, and a function that builds it from its options
//! (read with serde from `init_args`; `#[serde(deny_unknown_fields)]` makes a misspelt option an
//! error naming it).

use crate::Error;
use crate::core::component::{ComponentSpec, read_options};
use crate::core::mode::Mode;
use crate::optim::{Interval, LrSchedulerConfig, OptimizerConfig, ReduceLrOnPlateau, ThresholdMode};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::exponential::ExponentialLrSchedulerConfig;
use burn::optim::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdaGradConfig, AdamConfig, AdamWConfig, RmsPropConfig, SgdConfig};
use serde::Deserialize;
use serde_json::Map;

/// An optimizer `--optimizer` can name.
pub struct OptimizerKind {
    /// torch's class name first (`Adam`), then aliases; compared ignoring case, `_`, `-` and a
    /// module path (`torch.optim.Adam`).
    pub names: &'static [&'static str],
    /// Its options, torch's names.
    pub options: &'static [&'static str],
    /// Builds it (with its learning rate) from its options.
    pub build: fn(&ComponentSpec) -> Result<OptimizerConfig, String>,
}

/// A scheduler `--lr_scheduler` can name. Besides its own options, every scheduler takes
/// Lightning's `interval` (`epoch`, the default, or `step`), `frequency` and `name`.
pub struct SchedulerKind {
    /// torch's class name first (`StepLR`), then aliases.
    pub names: &'static [&'static str],
    /// Its own options, torch's names.
    pub options: &'static [&'static str],
    /// Builds it from its own options (Lightning's `interval`, `frequency`, `name` removed).
    pub build: fn(&ComponentSpec) -> Result<LrSchedulerConfig, String>,
}

/// The optimizers `--optimizer` can name.
pub const OPTIMIZER_KINDS: &[OptimizerKind] = &[
    OptimizerKind {
        names: &["Adam"],
        options: &["lr", "betas", "eps", "weight_decay", "amsgrad"],
        build: |spec| {
            let o: AdamOptions = read_options(spec)?;
            let [beta_1, beta_2] = o.betas;
            let config = AdamConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(o.eps)
                .with_amsgrad(o.amsgrad)
                .with_weight_decay((o.weight_decay != 0.0).then(|| WeightDecayConfig::new(o.weight_decay)));
            Ok(OptimizerConfig::new(config, o.lr))
        },
    },
    OptimizerKind {
        names: &["AdamW"],
        options: &["lr", "betas", "eps", "weight_decay", "amsgrad"],
        build: |spec| {
            let o: AdamWOptions = read_options(spec)?;
            let [beta_1, beta_2] = o.betas;
            let config = AdamWConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(o.eps)
                .with_amsgrad(o.amsgrad)
                .with_weight_decay(o.weight_decay);
            Ok(OptimizerConfig::new(config, o.lr))
        },
    },
    OptimizerKind {
        names: &["SGD"],
        options: &["lr", "momentum", "dampening", "weight_decay", "nesterov"],
        build: |spec| {
            let o: SgdOptions = read_options(spec)?;
            if o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0) {
                return Err("`SGD`: `nesterov` needs a `momentum` above 0 and `dampening` 0, as in torch".into());
            }
            let momentum = (o.momentum != 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(o.momentum)
                    .with_dampening(o.dampening)
                    .with_nesterov(o.nesterov)
            });
            let config = SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay((o.weight_decay != 0.0).then(|| WeightDecayConfig::new(o.weight_decay)));
            Ok(OptimizerConfig::new(config, o.lr))
        },
    },
    OptimizerKind {
        names: &["RMSprop"],
        options: &["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
        build: |spec| {
            let o: RmsPropOptions = read_options(spec)?;
            let config = RmsPropConfig::new()
                .with_alpha(o.alpha)
                .with_epsilon(o.eps)
                .with_momentum(o.momentum)
                .with_centered(o.centered)
                .with_weight_decay((o.weight_decay != 0.0).then(|| WeightDecayConfig::new(o.weight_decay)));
            Ok(OptimizerConfig::new(config, o.lr))
        },
    },
    OptimizerKind {
        names: &["Adagrad"],
        options: &["lr", "lr_decay", "weight_decay", "eps"],
        build: |spec| {
            let o: AdagradOptions = read_options(spec)?;
            let config = AdaGradConfig::new()
                .with_lr_decay(o.lr_decay)
                .with_epsilon(o.eps)
                .with_weight_decay((o.weight_decay != 0.0).then(|| WeightDecayConfig::new(o.weight_decay)));
            Ok(OptimizerConfig::new(config, o.lr))
        },
    },
];

/// The schedulers `--lr_scheduler` can name.
pub const SCHEDULER_KINDS: &[SchedulerKind] = &[
    SchedulerKind {
        names: &["StepLR"],
        options: &["step_size", "gamma"],
        build: |spec| {
            let o: StepOptions = read_options(spec)?;
            Ok(LrSchedulerConfig::new(move |lr| {
                StepLrSchedulerConfig::new(lr, o.step_size).with_gamma(o.gamma).init()
            }))
        },
    },
    SchedulerKind {
        names: &["ExponentialLR"],
        options: &["gamma"],
        build: |spec| {
            let o: ExponentialOptions = read_options(spec)?;
            Ok(LrSchedulerConfig::new(move |lr| {
                ExponentialLrSchedulerConfig::new(lr, o.gamma).init()
            }))
        },
    },
    SchedulerKind {
        names: &["CosineAnnealingLR"],
        options: &["T_max", "eta_min"],
        build: |spec| {
            let o: CosineOptions = read_options(spec)?;
            Ok(LrSchedulerConfig::new(move |lr| {
                CosineAnnealingLrSchedulerConfig::new(lr, o.t_max)
                    .with_min_lr(o.eta_min)
                    .init()
            }))
        },
    },
    SchedulerKind {
        names: &["LinearLR"],
        options: &["start_factor", "end_factor", "total_iters"],
        build: |spec| {
            let o: LinearOptions = read_options(spec)?;
            Ok(LrSchedulerConfig::new(move |lr| {
                LinearLrSchedulerConfig::new(lr * o.start_factor, lr * o.end_factor, o.total_iters).init()
            }))
        },
    },
    SchedulerKind {
        names: &["ReduceLROnPlateau"],
        options: &[
            "monitor",
            "mode",
            "factor",
            "patience",
            "threshold",
            "threshold_mode",
            "cooldown",
            "min_lr",
            "eps",
        ],
        build: |spec| {
            let o: PlateauOptions = read_options(spec)?;
            let mode = match o.mode.as_str() {
                "min" => Mode::Min,
                "max" => Mode::Max,
                other => return Err(format!("`mode` is \"min\" or \"max\", not {other:?}")),
            };
            let threshold_mode = match o.threshold_mode.as_str() {
                "rel" => ThresholdMode::Rel,
                "abs" => ThresholdMode::Abs,
                other => return Err(format!("`threshold_mode` is \"rel\" or \"abs\", not {other:?}")),
            };
            let plateau = ReduceLrOnPlateau::new()
                .mode(mode)
                .factor(o.factor)
                .patience(o.patience)
                .threshold(o.threshold)
                .threshold_mode(threshold_mode)
                .cooldown(o.cooldown)
                .min_lr(o.min_lr)
                .eps(o.eps);
            Ok(LrSchedulerConfig::reduce_on_plateau(plateau, o.monitor))
        },
    },
];

/// Every option some optimizer takes (the `--optimizer.<option>` flags).
pub(crate) fn optimizer_options() -> Vec<&'static str> {
    let mut options: Vec<&str> = OPTIMIZER_KINDS
        .iter()
        .flat_map(|kind| kind.options.iter().copied())
        .collect();
    options.sort_unstable();
    options.dedup();
    options
}

/// Every option some scheduler takes, and Lightning's `interval`, `frequency` and `name` (the
/// `--lr_scheduler.<option>` flags).
pub(crate) fn scheduler_options() -> Vec<&'static str> {
    let mut options: Vec<&str> = SCHEDULER_KINDS
        .iter()
        .flat_map(|kind| kind.options.iter().copied())
        .chain(["interval", "frequency", "name"])
        .collect();
    options.sort_unstable();
    options.dedup();
    options
}

/// Builds the optimizer `spec` names; errors name `optimizer` and list what there is.
pub fn build_optimizer(spec: &ComponentSpec) -> Result<OptimizerConfig, Error> {
    let Some(kind) = OPTIMIZER_KINDS.iter().find(|kind| spec.is_one_of(kind.names)) else {
        let known: Vec<&str> = OPTIMIZER_KINDS.iter().map(|kind| kind.names[0]).collect();
        return Err(Error::config(
            "optimizer",
            format!(
                "unknown optimizer `{}`; the optimizers are {}",
                spec.class_path,
                known.join(", ")
            ),
        ));
    };
    (kind.build)(spec)
        .and_then(|config| config.check_learning_rates().map(|()| config))
        .map_err(|message| {
            Error::config(
                "optimizer",
                format!(
                    "{message} (the options of `{}` are {})",
                    kind.names[0],
                    kind.options.join(", ")
                ),
            )
        })
}

/// Builds the scheduler `spec` names, with Lightning's `interval`, `frequency` and `name`.
pub fn build_scheduler(spec: &ComponentSpec) -> Result<LrSchedulerConfig, Error> {
    let Some(kind) = SCHEDULER_KINDS.iter().find(|kind| spec.is_one_of(kind.names)) else {
        let known: Vec<&str> = SCHEDULER_KINDS.iter().map(|kind| kind.names[0]).collect();
        return Err(Error::config(
            "lr_scheduler",
            format!(
                "unknown scheduler `{}`; the schedulers are {}",
                spec.class_path,
                known.join(", ")
            ),
        ));
    };
    let refuse = |message: String| {
        Error::config(
            "lr_scheduler",
            format!(
                "{message} (the options of `{}` are {}, and interval, frequency, name)",
                kind.names[0],
                kind.options.join(", ")
            ),
        )
    };
    let mut own = spec.clone();
    let lightning: LightningSchedulerOptions = {
        let mut keys = Map::new();
        for key in ["interval", "frequency", "name"] {
            if let Some(value) = own.init_args.remove(key) {
                keys.insert(key.to_string(), value);
            }
        }
        serde_json::from_value(serde_json::Value::Object(keys)).map_err(|e| refuse(e.to_string()))?
    };
    let mut scheduler = (kind.build)(&own).map_err(refuse)?;
    scheduler = match lightning.interval.as_deref() {
        None | Some("epoch") => scheduler.interval(Interval::Epoch),
        Some("step") => scheduler.interval(Interval::Step),
        Some(other) => return Err(refuse(format!("`interval` is \"epoch\" or \"step\", not {other:?}"))),
    };
    if let Some(frequency) = lightning.frequency {
        scheduler = scheduler.frequency(frequency);
    }
    if let Some(name) = lightning.name {
        scheduler = scheduler.name(name);
    }
    Ok(scheduler)
}

fn betas() -> [f32; 2] {
    [0.9, 0.999]
}

fn eps_adam() -> f32 {
    1e-8
}

fn lr_adam() -> f64 {
    1e-3
}

fn lr_rmsprop() -> f64 {
    1e-2
}

fn weight_decay_adamw() -> f32 {
    1e-2
}

fn alpha() -> f32 {
    0.99
}

fn eps_adagrad() -> f32 {
    1e-10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdamOptions {
    #[serde(default = "lr_adam")]
    lr: f64,
    #[serde(default = "betas")]
    betas: [f32; 2],
    #[serde(default = "eps_adam")]
    eps: f32,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    amsgrad: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdamWOptions {
    #[serde(default = "lr_adam")]
    lr: f64,
    #[serde(default = "betas")]
    betas: [f32; 2],
    #[serde(default = "eps_adam")]
    eps: f32,
    #[serde(default = "weight_decay_adamw")]
    weight_decay: f32,
    #[serde(default)]
    amsgrad: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SgdOptions {
    #[serde(default = "lr_adam")]
    lr: f64,
    #[serde(default)]
    momentum: f64,
    #[serde(default)]
    dampening: f64,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    nesterov: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RmsPropOptions {
    #[serde(default = "lr_rmsprop")]
    lr: f64,
    #[serde(default = "alpha")]
    alpha: f32,
    #[serde(default = "eps_adam")]
    eps: f32,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    momentum: f32,
    #[serde(default)]
    centered: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdagradOptions {
    #[serde(default = "lr_rmsprop")]
    lr: f64,
    #[serde(default)]
    lr_decay: f64,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default = "eps_adagrad")]
    eps: f32,
}

#[derive(Deserialize)]
struct LightningSchedulerOptions {
    interval: Option<String>,
    frequency: Option<usize>,
    name: Option<String>,
}

fn gamma_step() -> f64 {
    0.1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepOptions {
    step_size: usize,
    #[serde(default = "gamma_step")]
    gamma: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExponentialOptions {
    gamma: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CosineOptions {
    #[serde(rename = "T_max")]
    t_max: usize,
    #[serde(default)]
    eta_min: f64,
}

fn one_third() -> f64 {
    1.0 / 3.0
}

fn one() -> f64 {
    1.0
}

fn five() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearOptions {
    #[serde(default = "one_third")]
    start_factor: f64,
    #[serde(default = "one")]
    end_factor: f64,
    #[serde(default = "five")]
    total_iters: usize,
}

fn min() -> String {
    "min".into()
}

fn rel() -> String {
    "rel".into()
}

fn factor() -> f64 {
    0.1
}

fn ten() -> usize {
    10
}

fn threshold() -> f64 {
    1e-4
}

fn eps_plateau() -> f64 {
    1e-8
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlateauOptions {
    monitor: String,
    #[serde(default = "min")]
    mode: String,
    #[serde(default = "factor")]
    factor: f64,
    #[serde(default = "ten")]
    patience: usize,
    #[serde(default = "threshold")]
    threshold: f64,
    #[serde(default = "rel")]
    threshold_mode: String,
    #[serde(default)]
    cooldown: usize,
    #[serde(default)]
    min_lr: f64,
    #[serde(default = "eps_plateau")]
    eps: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizers_and_schedulers_are_built_by_torchs_names() {
        let adam = build_optimizer(&ComponentSpec::new("torch.optim.Adam").arg("lr", 0.01)).unwrap();
        assert!(adam.updates_every_parameter());
        let unknown = build_optimizer(&ComponentSpec::new("Adamax"))
            .err()
            .unwrap()
            .to_string();
        assert!(unknown.contains("Adam, AdamW, SGD, RMSprop, Adagrad"), "{unknown}");
        let typo = build_optimizer(&ComponentSpec::new("SGD").arg("momentun", 0.9))
            .err()
            .unwrap()
            .to_string();
        assert!(typo.contains("momentun") && typo.contains("nesterov"), "{typo}");
        assert!(build_scheduler(&ComponentSpec::new("StepLR").arg("step_size", 2).arg("interval", "step")).is_ok());
        let missing = build_scheduler(&ComponentSpec::new("StepLR"))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("step_size"), "{missing}");
        assert!(build_scheduler(&ComponentSpec::new("ReduceLROnPlateau").arg("monitor", "val_loss")).is_ok());
    }
}
