//! The built-in callbacks, one file each: [`ModelCheckpoint`], [`EarlyStopping`],
//! [`OnExceptionCheckpoint`], [`Timer`], [`LearningRateMonitor`], [`GradientNormMonitor`], the
//! progress bar ([`ProgressBar`] and its plain form [`EpochSummary`]), [`ModelSummary`], weight
//! averaging ([`WeightAveraging`], [`StochasticWeightAveraging`], sharing `averaging`),
//! fine-tuning ([`BaseFinetuning`], [`BackboneFinetuning`]), the [`PredictionWriter`]; and the [`registry`] a
//! configuration's `callbacks:` builds them from. The `Callback` trait itself is in `hooks`.
//!
//! Uses `core`, `optim`, `hooks` and `checkpoint` (file-name templates); the loops and the
//! trainer use it.

mod averaging;
pub mod early_stopping;
pub mod finetuning;
pub mod grad_norm_monitor;
pub mod lr_monitor;
pub mod model_checkpoint;
pub mod model_summary;
mod monitor;
pub mod on_exception_checkpoint;
pub mod prediction_writer;
pub mod progress;
pub mod registry;
pub mod swa;
pub mod timer;
pub mod weight_averaging;

pub use crate::core::flags::{MaxTime, TimeSpan};
pub use crate::core::mode::Mode;
pub use early_stopping::{EarlyStopping, EarlyStoppingReason};
pub use finetuning::{BackboneFinetuning, BaseFinetuning, FinetuneOptimizer, Finetuning, Part, freeze, make_trainable};
pub use grad_norm_monitor::GradientNormMonitor;
pub use lr_monitor::LearningRateMonitor;
pub use model_checkpoint::{ModelCheckpoint, SaveLast};
pub use model_summary::{LayerSummary, ModelSummary, Summary, summarize};
pub use on_exception_checkpoint::OnExceptionCheckpoint;
pub use prediction_writer::{PredictionWriter, WriteInterval, WritePredictions};
pub use progress::{EpochSummary, ProgressBar};
pub use swa::{StochasticWeightAveraging, SwaStart};
pub use timer::Timer;
pub use weight_averaging::WeightAveraging;
