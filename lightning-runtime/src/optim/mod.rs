//! Optimization without hooks: the optimizers the trainer drives (`configure_optimizers` returns
//! an [`OptimizerConfig`], a burn optimizer with a learning rate, optional param groups
//! ([`Params`], [`ParamGroupConfig`]) and an optional scheduler, which the trainer turns into an
//! [`Optimizer`]), learning-rate schedulers,
//! gradients with their clipping, norms and accumulation schedule, and precision (mixed-precision
//! views, the loss scaler).
//!
//! Uses only `core`. The hooks around an optimizer step (the closure, manual optimization) are
//! in `hooks` and `loops`.

pub mod grad_norm;
pub mod gradients;
pub mod optimizer;
pub mod param_groups;
pub mod precision;
pub mod scheduler;

pub use grad_norm::grad_norm;
pub use gradients::{ClipAlgorithm, GradientAccumulationScheduler, GradientClip, Gradients};
pub(crate) use optimizer::sync_learning_rates;
pub use optimizer::{
    AutomaticOptimizers, ConfiguredOptimizers, Interval, IntoOptimizerConfig, LearningRate, One, OnlyOptimizer,
    Optimizer, OptimizerConfig, OptimizerHandle, Several,
};
pub use param_groups::{OptimizerSource, ParamGroupConfig, ParamInfo, Params};
pub use scheduler::{Annealing, LrSchedulerConfig, ReduceLrOnPlateau, Scheduler, SwaLr, ThresholdMode};
