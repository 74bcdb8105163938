//! The checkpoint's data: what `on_save_checkpoint` and `on_load_checkpoint` see, and where the
//! loops were when it was saved. How it is written and read is in [`crate::checkpoint`].

use crate::JsonValue;
use burn::tensor::{Bytes, DType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A checkpoint, as `on_save_checkpoint` sees it before it is written and `on_load_checkpoint`
/// after it is read. Add your own entries to [`extra`](Self::extra).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `current_epoch` when saved.
    pub epoch: usize,
    /// `global_step` (optimizer steps) when saved.
    pub global_step: usize,
    /// The `burn-lightning` version that wrote it.
    pub version: String,
    /// The module's hyperparameters (`#[hparam]` fields).
    pub hyper_parameters: JsonValue,
    /// The datamodule's hyperparameters ([`DataModule::hparams`](crate::DataModule::hparams)),
    /// under Lightning's key; absent when it gives none (and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datamodule_hyper_parameters: Option<JsonValue>,
    /// Each callback's `state_dict`, by callback name.
    pub callbacks: BTreeMap<String, JsonValue>,
    /// The datamodule's `state_dict`, by datamodule name.
    pub datamodule: BTreeMap<String, JsonValue>,
    /// What `on_save_checkpoint` hooks added.
    pub extra: BTreeMap<String, JsonValue>,
    /// Where the fit loop was, for a resume (`None` outside `fit`, and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loops: Option<LoopProgress>,
    /// The state of every metric object of the module (`burn_lightning::metrics`), by its path
    /// in the module (`val_acc`, `val_metrics.acc`): what a resumed epoch needs to compute the
    /// value an uninterrupted one would. Absent in older files (the metrics start empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, JsonValue>,
    /// What the training loop's `cx.log` calls accumulated of the epoch in progress (a
    /// checkpoint saved inside an epoch): a resumed epoch's means count its first batches too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) epoch_logs: Vec<crate::core::logging::SavedEpochLog>,
    /// Several processes: [`epoch_logs`](Self::epoch_logs) of every rank, in rank order (rank
    /// zero's alone are in `epoch_logs`); a resume on as many processes gives each rank its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) epoch_logs_by_rank: Vec<Vec<crate::core::logging::SavedEpochLog>>,
    /// The byte lengths of the optimizers' states in the optimizer section, one after the
    /// other, when the module has several (empty with one: the section is its state alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) optimizer_parts: Vec<usize>,
    #[serde(skip)]
    pub(crate) weights: Weights,
    /// Weights saved beside the module's, by name (`current_model_state` of weight averaging):
    /// tensors `__burn_lightning__.weights.{name}.{path}` in the file.
    #[serde(skip)]
    pub(crate) weight_sets: BTreeMap<String, Weights>,
    #[serde(skip)]
    pub(crate) optimizer: Blob,
}

/// The saved weights, once a module's were added or a file was read.
#[derive(Clone, Debug, Default)]
pub(crate) enum Weights {
    #[default]
    None,
    Tensors(Vec<SavedTensor>),
    /// A module's, read when the checkpoint is written (on the writer thread): a snapshot of
    /// its tensor handles, not of its weights' bytes.
    Deferred(DeferredWeights),
}

/// A module whose weights are read when the checkpoint is written.
#[derive(Clone)]
pub(crate) struct DeferredWeights(
    pub(crate) std::sync::Arc<dyn Fn() -> Result<Vec<SavedTensor>, String> + Send + Sync>,
);

impl std::fmt::Debug for DeferredWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredWeights")
    }
}

/// One saved parameter.
#[derive(Clone)]
pub(crate) struct SavedTensor {
    pub(crate) name: String,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) param_id: Option<u64>,
    pub(crate) data: Blob,
}

/// Bytes of a checkpoint: its own, or a zero-copy window on the file's, shared by every tensor
/// read from it (reading a checkpoint and loading its weights holds one copy of the file).
#[derive(Clone)]
pub(crate) struct Blob(Bytes);

impl Default for Blob {
    fn default() -> Self {
        Self::owned(Vec::new())
    }
}

impl Blob {
    pub(crate) fn owned(bytes: Vec<u8>) -> Self {
        Self(Bytes::from_bytes_vec(bytes).shared())
    }

    /// The window of `whole` that `part` (a slice of it) is.
    pub(crate) fn part_of(whole: &Blob, part: &[u8]) -> Self {
        let start = part.as_ptr() as usize - whole.as_ptr() as usize;
        let view = whole.0.view(start, start + part.len());
        // A shared allocation always has views; copying is the fallback, not an error.
        Self(view.unwrap_or_else(|_| Bytes::from_bytes_vec(part.to_vec())))
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SavedTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {:?} ({} bytes)",
            self.name,
            self.dtype,
            self.shape,
            self.data.len()
        )
    }
}

/// Where the fit loop was when a checkpoint was saved (Lightning's `loops` entry), and the
/// scheduler's state: what a resume needs besides the epoch and the step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopProgress {
    /// Training batches of the current epoch completed (their optimizer step taken).
    pub batches_done: usize,
    /// Whether the epoch ran to its end (a checkpoint saved at `on_train_epoch_end`): a resume
    /// starts the next epoch.
    pub epoch_done: bool,
    /// Training batches run so far, across epochs (Lightning's `total_batch_idx + 1`).
    pub total_batches: usize,
    /// Training batches that stepped the optimizer (Lightning's `_batches_that_stepped`).
    pub batches_that_stepped: usize,
    /// Steps the optimizer took.
    pub optimizer_steps: usize,
    /// The scheduler's state, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<serde_json::Value>,
    /// The steps and scheduler state of each optimizer after the first, for a module whose
    /// `configure_optimizers` returns several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_optimizers: Vec<OptimizerProgress>,
    /// The loss scaler of `16-mixed` (Lightning's `native_amp_scaling_state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<LossScalerState>,
    /// The first optimizer's param groups, when it has several (their parameters, rates, weight
    /// decays and names), so that a resume rebuilds the groups added during the fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_groups: Option<serde_json::Value>,
}

/// Where `16-mixed`'s loss scaler was (torch's `GradScaler.state_dict()`: `scale` and
/// `_growth_tracker`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScalerState {
    /// The scale the loss is multiplied by before backward.
    pub scale: f64,
    /// Optimizer steps without an inf/NaN gradient since the scale last changed.
    pub growth_tracker: usize,
}

/// Where one optimizer was, in a checkpoint (the first optimizer's is in [`LoopProgress`]'s own
/// fields).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerProgress {
    /// Steps the optimizer took.
    pub steps: usize,
    /// Its scheduler's state, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<serde_json::Value>,
    /// Its param groups, when it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_groups: Option<serde_json::Value>,
}
