//! # burn-lightning
//!
//! PyTorch Lightning's way of organising training code, for Rust, on [burn](https://burn.dev).
//!
//! Annotate a burn module with `#[lightning_module]` and the methods the trainer should call with
//! `#[hook]`. At compile time the macros check every hook's signature against Lightning's hook
//! table, build the static dispatch table (a hook you do not write costs nothing), generate the
//! hyperparameter struct and document the module. A [`Trainer`] then runs `fit`, `validate`,
//! `test` and `predict` with Lightning's hook order, flags, logging, callbacks and checkpoints.
//!
//! ```ignore
//! use burn_lightning::prelude::*;
//!
//! #[lightning_module]
//! #[derive(Module, Debug)]
//! pub struct LitMnist {
//!     l1: Linear,
//!     l2: Linear,
//!     /// Adam's learning rate.
//!     #[hparam(default = 1e-3)]
//!     lr: f64,
//! }
//!
//! #[lightning_module]
//! impl LitMnist {
//!     #[hook]
//!     fn training_step(&self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
//!         let loss = self.loss(batch);
//!         cx.log("train_loss", &loss);
//!         loss
//!     }
//!
//!     #[hook]
//!     fn configure_optimizers(&self) -> OptimizerConfig {
//!         OptimizerConfig::new(AdamConfig::new(), self.lr)
//!     }
//! }
//!
//! let mut trainer = Trainer::builder().max_epochs(5).build()?;
//! let model = trainer.fit(model, &mut datamodule)?;
//! let metrics = trainer.test(&mut model, &mut datamodule)?;
//! ```
//!
//! Hook calls are traced with `tracing` (target `burn_lightning::hooks`): with a subscriber and
//! `RUST_LOG=burn_lightning::hooks=trace` you see every call, in order.

pub use burn_lightning_macros::{DataOptions, hook, lightning_module};
pub use burn_lightning_runtime::*;

/// What most training code needs: the macros, the module and callback traits, the trainer with
/// its flags, contexts and state, data, logging and optimization types, and burn's prelude.
///
/// `use burn_lightning::prelude::*;` is enough for a `#[lightning_module]`, a `DataModule`, a
/// generic `impl<M: LightningModule> Callback<M>` and the trainer's builder.
pub mod prelude {
    pub use crate::{
        Accelerator, CombinedLoader, CombinedMode, Devices, InMemoryDataModule, TensorBatch, TensorDataset,
    };
    pub use crate::{
        BackboneFinetuning, BaseFinetuning, ParamGroupConfig, Params, StochasticWeightAveraging, WeightAveraging,
    };
    pub use crate::{
        BatchControl, Callback, CallbackRole, Callbacks, Checkpoint, CkptPath, ClipAlgorithm, ConfiguredOptimizers,
        CsvLogger, DataModule, EarlyStopping, EarlyStoppingReason, EpochContext, EpochLogOptions, EpochSummary, Error,
        FitError, GradientClip, GradientNormMonitor, Gradients, HasHparams, Hook, HookContext, Interval, JsonValue,
        LearningRateMonitor, LightningCli, LightningModule, Limit, LoadFromCheckpoint, LoadOptions, Loader, Loaders,
        LogOptions, Logger, LrSchedulerConfig, MaxCount, Metrics, Mode, ModelCheckpoint, ModelSummary,
        OnExceptionCheckpoint, Optimizer, OptimizerClosure, OptimizerConfig, OptimizerHandle, Profiler, ProgressBar,
        Reduce, ReduceLrOnPlateau, RunningStage, SaveLast, Scheduler, Stage, StepContext, StepOutput,
        TensorBoardLogger, Timer, Trainer, TrainerBuilder, TrainerConfig, TrainerFn, TrainerState, TrainerStatus,
        ValCheckInterval, grad_norm, hook, lightning_module, seed_everything, summarize,
    };
    pub use crate::{BatchSizeMode, BatchSizeTunable, LrFind, LrFindMode, LrFinder, ScaleBatchSize, Tuner};
    pub use crate::{CastFloats, Precision};
    pub use crate::{ComponentSpec, DataOptions};
    pub use crate::{PredictionWriter, WriteInterval, WritePredictions};
    pub use burn_lightning_runtime::burn::prelude::*;
    pub use burn_lightning_runtime::burn::tensor::FloatDType;
}

#[doc(hidden)]
pub mod __private {
    //! Paths generated code uses. Not a public API.
    pub use burn_lightning_runtime::*;
}
