//! The runtime of `burn-lightning`: the [`Trainer`] and its loops, callbacks, logging,
//! checkpoints and run directories. Users depend on the `burn-lightning` facade crate.
//!
//! Layout: [`hooks`] (the traits generated from the hook table, and the glue types hooks
//! return), [`state`] (the trainer's state), [`context`] (what a hook can read and log), [`logging`], [`optim`], [`data`],
//! [`trainer`] (builder, flags and loops), [`callbacks`], [`progress`] (the progress bar), [`checkpoint`], [`run_dir`],
//! [`report`], [`tuner`] (the learning-rate and batch-size finders).

pub mod accelerator;
pub mod callbacks;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod context;
pub mod data;
mod diagnostics;
pub mod error;
mod filename_template;
pub mod hooks;
pub mod loggers;
pub mod logging;
pub mod monitors;
pub mod optim;
pub mod optimization;
pub mod precision;
pub mod process_group;
pub mod profiler;
pub mod progress;
pub mod report;
pub mod resume;
pub mod run_dir;
mod signals;
pub mod state;
pub mod strategy;
pub mod summary;
pub mod tensor_data;
pub mod timer;
pub mod trainer;
pub mod tuner;

pub use accelerator::{Accelerator, Devices};
pub use burn;
pub use burn::tensor::{Device, Tensor};
pub use callbacks::{
    EarlyStopping, EarlyStoppingReason, EpochSummary, Mode, ModelCheckpoint, ModelSummary, OnExceptionCheckpoint,
    SaveLast,
};
pub use checkpoint::{Checkpoint, KeyReport, LightningCheckpoint, LoadFromCheckpoint, LoadOptions, Loaded};
pub use cli::{CliError, Command, LightningCli};
pub use config::{FlagInfo, TrainerConfig};
pub use context::{EpochContext, HookContext, StepContext};
pub use data::{DataModule, IntoLoader, Loader, Loaders, Stage};
pub use error::Error;
pub use hooks::{
    AutomaticOptimization, BatchControl, Callback, CallbackRole, Callbacks, ConfigureOptimizers, HasHparams, Hook,
    HookError, HookOwner, HookResult, HookSet, HparamInfo, HparamValue, IntoBatchControl, IntoManualOutput,
    IntoTrainingOutput, LightningModule, LogScope, ManualOptimization, Optimization, PredictStep, StepOutput, TestStep,
    TrainingStep, ValidationStep,
};
pub use loggers::{CsvLogger, Logger, LoggerDir, TensorBoardLogger, Version};
pub use logging::{EpochLogOptions, LogOptions, LogValue, MetricValue, Metrics, Reduce};
pub use monitors::{GradientNormMonitor, LearningRateMonitor, grad_norm};
pub use optim::{
    AutomaticOptimizers, ConfiguredOptimizers, GradientAccumulationScheduler, GradientClip, Gradients, Interval,
    IntoOptimizerConfig, LearningRate, LrSchedulerConfig, One, OnlyOptimizer, Optimizer, OptimizerConfig,
    OptimizerHandle, ReduceLrOnPlateau, Scheduler, Several, ThresholdMode,
};
pub use optimization::OptimizerClosure;
pub use precision::{CastFloats, Precision, PrecisionChoice};
pub use profiler::{Profiler, ProfilerChoice};
pub use progress::ProgressBar;
pub use resume::{CkptPath, LoopProgress, LossScalerState, OptimizerProgress};
pub use serde_json::Value as JsonValue;
pub use state::{RunningStage, TrainerFn, TrainerState, TrainerStatus};
pub use summary::{LayerSummary, Summary, summarize};
pub use tensor_data::{
    Example, InMemoryDataModule, LoaderOptions, SplitDataset, SplitLengths, TensorBatch, TensorBatcher, TensorDataset,
    random_split,
};
pub use timer::{MaxTime, TimeSpan, Timer};
pub use trainer::{ClipAlgorithm, FitError, Limit, Trainer, TrainerBuilder, ValCheckInterval};
pub use tuner::{BatchSizeMode, BatchSizeTunable, LrFind, LrFindMode, LrFinder, ScaleBatchSize, Tuner};

/// Re-exported for generated code: `#[serde(crate = "...")]` needs a path users can reach.
pub use serde;

/// Helpers of the code `#[lightning_module]` generates.
#[doc(hidden)]
pub use diagnostics::codegen as __codegen;

/// Sets the seed of the device's random generator: the same seed gives the same initial
/// weights (burn initializes parameters lazily, on first use) and the same dropout masks.
pub fn seed_everything(device: &Device, seed: u64) {
    device.seed(seed);
}
