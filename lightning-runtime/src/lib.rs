//! The runtime of `burn-lightning`: the [`Trainer`] and its loops, callbacks, logging,
//! checkpoints and run directories. Users depend on the `burn-lightning` facade crate.
//!
//! Layout, from the bottom up (a folder uses only the folders listed before it; CI checks that
//! no two folders depend on each other, with `scripts/check_layers.py`):
//!
//! - [`core`]: errors, data traits, the trainer's state, the hook list, the metric store, the
//!   checkpoint's data.
//! - [`metrics`]: metric objects in torchmetrics' shape (`Accuracy`, `AUROC`, `MeanMetric`, ...,
//!   `MetricCollection`), their states on the device and how they merge.
//! - [`optim`]: optimizers, schedulers, gradients and clipping, precision.
//! - [`hooks`]: the `LightningModule` and `Callback` traits, the contexts hooks receive, the
//!   optimizer closure, manual optimization.
//! - [`data`] (the short path from tensors to loaders), [`checkpoint`] (the file format, the
//!   writer, restoring, run directories), [`strategies`] (devices, data parallel, MPI),
//!   [`profiler`].
//! - [`callbacks`], then [`loggers`] (TensorBoard, CSV, `report.html`).
//! - [`loops`]: fit, evaluation and predict.
//! - [`trainer`]: the `Trainer`, its builder and `TrainerConfig`.
//! - [`tuner`] and [`cli`].

pub mod callbacks;
pub mod checkpoint;
pub mod cli;
pub mod core;
pub mod data;
pub mod hooks;
pub mod loggers;
pub mod loops;
pub mod metrics;
pub mod optim;
pub mod profiler;
pub mod strategies;
pub mod trainer;
pub mod tuner;

pub use crate::core::checkpoint_data::{Checkpoint, LoopProgress, LossScalerState, OptimizerProgress};
pub use crate::core::component::{ComponentSpec, LoggerFlag};
pub use crate::core::datamodule::{DataModule, IntoLoader, IntoLoaders, Loader, Loaders, Stage};
pub use crate::core::error::{Error, FitError};
pub use crate::core::flags::{Limit, MaxCount, MaxTime, TimeSpan, ValCheckInterval};
pub use crate::core::hook_list::{CallbackRole, Hook, HookOwner, HookSet, LogScope, Optimization};
pub use crate::core::logging::{EpochLogOptions, LogOptions, LogValue, MetricValue, Metrics, Reduce};
pub use crate::core::mode::Mode;
pub use crate::core::state::{RunningStage, TrainerFn, TrainerState, TrainerStatus};
pub use burn;
pub use burn::tensor::{Device, Tensor};
pub use callbacks::{
    BackboneFinetuning, BaseFinetuning, EarlyStopping, EarlyStoppingReason, EpochSummary, FinetuneOptimizer,
    Finetuning, GradientNormMonitor, LayerSummary, LearningRateMonitor, ModelCheckpoint, ModelSummary,
    OnExceptionCheckpoint, Part, PredictionWriter, ProgressBar, SaveLast, StochasticWeightAveraging, Summary, SwaStart,
    Timer, WeightAveraging, WriteInterval, WritePredictions, summarize,
};
pub use checkpoint::{KeyReport, LightningCheckpoint, LoadFromCheckpoint, LoadOptions, Loaded};
pub use cli::{CliError, Command, DataOptions, LightningCli};
pub use data::{
    Combination, CombinedLoader, CombinedMode, Example, InMemoryDataModule, IntoCombined, LoaderOptions, SplitDataset,
    SplitLengths, TensorBatch, TensorBatcher, TensorDataset, check_batch_size, random_split,
};
pub use hooks::closure::OptimizerClosure;
pub use hooks::context::{EpochContext, HookContext, StepContext};
pub use hooks::diagnostics::IntoEpochLogOptions;
pub use hooks::{
    AutomaticOptimization, BatchControl, Callback, Callbacks, ConfigureOptimizers, HasHparams, HookError, HookResult,
    HparamInfo, HparamValue, IntoBatchControl, IntoManualOutput, IntoTrainingOutput, LightningModule,
    ManualOptimization, PredictStep, StepOutput, TestStep, TrainingStep, ValidationStep,
};
#[cfg(feature = "mlflow")]
pub use loggers::mlflow::{LogModel, MlflowLogger};
pub use loggers::{CsvLogger, Logger, LoggerDir, TensorBoardLogger, Version};
pub use optim::precision::{CastFloats, Precision, PrecisionChoice};
pub use optim::{
    Annealing, AutomaticOptimizers, ClipAlgorithm, ConfiguredOptimizers, GradientAccumulationScheduler, GradientClip,
    Gradients, Interval, IntoOptimizerConfig, LearningRate, LrSchedulerConfig, One, OnlyOptimizer, Optimizer,
    OptimizerConfig, OptimizerHandle, OptimizerSource, ParamGroupConfig, ParamInfo, Params, ReduceLrOnPlateau,
    Scheduler, Several, SwaLr, ThresholdMode, grad_norm,
};
pub use profiler::{Profiler, ProfilerChoice};
pub use serde_json::Value as JsonValue;
pub use strategies::accelerator::{Accelerator, Devices};
pub use trainer::ckpt_path::CkptPath;
pub use trainer::config::{FlagInfo, TrainerConfig};
pub use trainer::{Trainer, TrainerBuilder};
pub use tuner::{BatchSizeMode, BatchSizeTunable, LrFind, LrFindMode, LrFinder, ScaleBatchSize, Tuner};

/// Re-exported for generated code: `#[serde(crate = "...")]` needs a path users can reach.
pub use serde;

/// Helpers of the code `#[lightning_module]` generates.
#[doc(hidden)]
pub use hooks::diagnostics::codegen as __codegen;

/// Sets the seed of the device's random generator: the same seed gives the same initial
/// weights (burn initializes parameters lazily, on first use) and the same dropout masks.
pub fn seed_everything(device: &Device, seed: u64) {
    device.seed(seed);
}
