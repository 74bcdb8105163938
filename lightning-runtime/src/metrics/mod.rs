//! Metric objects in torchmetrics' shape: [`Accuracy`], [`Precision`], [`Recall`],
//! [`F1Score`], [`AUROC`], [`ConfusionMatrix`], [`MeanSquaredError`], [`MeanAbsoluteError`],
//! the aggregators [`MeanMetric`], [`SumMetric`], [`MaxMetric`], [`MinMetric`], and
//! [`MetricCollection`].
//!
//! Uses `core` only (the metric store's [`LogValue`](crate::LogValue) and the collectives of
//! several processes); `checkpoint` and `loops` use it to save and restore the states.
//!
//! A metric is a field of the module (a burn `Module` without parameters). `update` adds a
//! batch to its state on the device, reading nothing; `forward` also returns the batch's own
//! value (on the device); `compute` reads the device once and gives the value of everything
//! since the last `reset`. Logged with `cx.log("val_acc", &self.val_acc)`, the trainer does what
//! Lightning does with a `torchmetrics.Metric`: on step it logs the batch value of the last
//! `forward`, on epoch it computes the value when the loop's epoch ends, then resets the metric.
//!
//! # Where the state lives
//!
//! In an `Arc` that every clone of the metric shares (as burn's `RunningState`), with one set of
//! state tensors per device that updated it. So the state survives what the trainer does to the
//! module: the half-precision view `training_step` runs on under `*-mixed` (a mapped clone),
//! the replicas of data-parallel training (forks: a replica on another device accumulates on
//! that device), and the evaluation copy of `validate` and `test` (`Module::valid`, then a fork)
//! all update the module's own metric. Consequently `clone` shares the state; use
//! [`fresh`](Accuracy::fresh) for a metric of the same kind with a state of its own
//! (torchmetrics' `clone()`).
//!
//! # Merging
//!
//! Each state has its reduction ([`Reduction`], torchmetrics' `dist_reduce_fx`): counts and
//! sums add, AUROC's scores and targets concatenate, the aggregators' maxima and minima take the
//! maximum and minimum. Devices merge by it when the value is computed; MPI ranks (training
//! only: every rank evaluates the whole validation set) merge by it at the end of each training
//! epoch, with one all-gather per metric. The merged state is exactly the state one device would
//! have accumulated, so the logged value is exact, whatever `sync_dist` says (it changes nothing
//! for a metric object, as in Lightning, where torchmetrics syncs itself).
//!
//! # Checkpoints
//!
//! A checkpoint holds every metric's state under its path in the module (`val_acc`), so a fit
//! resumed in the middle of an epoch computes the epoch value an uninterrupted fit computes. A
//! metric whose epoch value was computed and that waits for its reset is saved empty. Under
//! several processes, a checkpoint taken inside a training epoch holds every rank's states of
//! the training metrics, gathered at the end of the batch, and each rank of a resume on as
//! many processes goes on from its own.
//!
//! # Not here
//!
//! Against torchmetrics: no `ignore_index`, `multidim_average="samplewise"`, `average="none"`
//! (per-class values), `zero_division=1`, AUROC `thresholds` or `max_fpr`, multilabel AUROC;
//! input is not validated on the host (that would read the device): classes outside the task's
//! are counted on the device and reported when the value is computed. Values are computed in
//! `f64` where the device has it (torchmetrics: `f32`). burn-train's metrics are not used: their
//! `update` reads the device at every batch (it returns the batch's formatted value), and they
//! come with burn's `train` feature.

pub mod aggregation;
pub mod auroc;
pub mod classification;
pub(crate) mod collection;
pub(crate) mod metric;
pub(crate) mod state;

pub use aggregation::{MaxMetric, MeanMetric, MinMetric, SumMetric, Values};
pub use auroc::AUROC;
pub use classification::{Accuracy, Average, ConfusionMatrix, F1Score, Normalize, Precision, Recall, Task};
pub use collection::{Member, MemberRef, MetricCollection};
pub use metric::{Preds, Target};
pub use regression::{MeanAbsoluteError, MeanSquaredError};
pub use state::Reduction;

pub mod regression;

use crate::core::distributed::Collectives;
use crate::core::logging::SavedMetrics;
use crate::{Device, Error, JsonValue};
use std::collections::BTreeMap;

/// The states of a module's metrics at one moment (tensor handles, read later): what a
/// checkpoint saves.
#[derive(Clone, Debug, Default)]
pub(crate) struct MetricsSnapshot {
    saved: Vec<Saved>,
    /// The paths of the metrics the training loop logged and has not computed yet, empty here
    /// or not: under several processes their states are every rank's (see [`gathered_across`]).
    training: Vec<String>,
}

/// One metric's state in a checkpoint.
#[derive(Clone, Debug)]
struct Saved {
    path: String,
    state: state::StateSnapshot,
    /// Whether the training loop logged it (a resumed fit resets it when the resumed epoch ends).
    logged_by_training: bool,
}

impl MetricsSnapshot {
    /// Every metric of `module` with its state, except the empty ones and those `saved` says to
    /// skip (logged metrics whose epoch value was computed, or that an evaluation loop logged:
    /// they are reset before they are updated again). Device operations only: the states are
    /// read by [`to_json`](Self::to_json).
    pub(crate) fn of<M: burn::module::Module>(module: &M, saved: &SavedMetrics) -> Self {
        let metrics: Vec<_> = state::metrics_of(module)
            .into_iter()
            .filter(|(_, state)| !saved.skip.contains(&state.id()))
            .collect();
        let training = metrics
            .iter()
            .filter(|(_, state)| saved.training.contains(&state.id()))
            .map(|(path, _)| path.clone())
            .collect();
        let saved = metrics
            .into_iter()
            .filter_map(|(path, state)| {
                let logged_by_training = saved.training.contains(&state.id());
                state.snapshot().map(|state| Saved {
                    path,
                    state,
                    logged_by_training,
                })
            })
            .collect();
        Self { saved, training }
    }

    /// [`to_json`](Self::to_json), with the states of the metrics the training loop logged
    /// replaced by every rank's, as [`gathered_across`] gathered them at the same moment.
    pub(crate) fn to_json_gathered(
        &self,
        gathered: &BTreeMap<String, JsonValue>,
    ) -> Result<BTreeMap<String, JsonValue>, Error> {
        let mut json = self.to_json()?;
        for path in &self.training {
            match gathered.get(path) {
                Some(entry) => {
                    let mut entry = entry.clone();
                    entry["logged_by"] = JsonValue::from("train");
                    json.insert(path.clone(), entry);
                }
                // No rank updated it.
                None => {
                    json.remove(path);
                }
            }
        }
        Ok(json)
    }

    /// The states read from the device, by path, as a checkpoint holds them:
    /// `{"state": {"tp": [..], ..}}`, with `"logged_by": "train"` for a metric the training loop
    /// logged.
    pub(crate) fn to_json(&self) -> Result<BTreeMap<String, JsonValue>, Error> {
        self.saved
            .iter()
            .map(|saved| {
                let state = saved.state.to_json().map_err(|why| {
                    Error::Checkpoint(format!("cannot save the state of the metric `{}`: {why}", saved.path))
                })?;
                let mut entry = serde_json::Map::new();
                if saved.logged_by_training {
                    entry.insert("logged_by".into(), JsonValue::from("train"));
                }
                entry.insert("state".into(), state);
                Ok((saved.path.clone(), JsonValue::Object(entry)))
            })
            .collect()
    }
}

/// Every metric of `module` that some process updated, by path, as a checkpoint holds it:
/// `{"state": .., "rank_states": [..]}`, the states of every process merged by their reductions
/// and each process's own, in rank order. One all-gather per metric of the module, in its order:
/// every process must call this at the same point.
pub(crate) fn gathered_across<M: burn::module::Module>(
    module: &M,
    group: &dyn Collectives,
) -> Result<BTreeMap<String, JsonValue>, Error> {
    let mut gathered = BTreeMap::new();
    for (path, state) in state::metrics_of(module) {
        let per_rank = state
            .gathered(group, true)
            .map_err(|why| Error::Checkpoint(format!("cannot save the state of the metric `{path}`: {why}")))?;
        let ranks: Vec<JsonValue> = per_rank.iter().map(|states| state.states_json(states)).collect();
        let merged = state.merge(per_rank);
        if state.is_initial(&merged) {
            continue;
        }
        let mut entry = serde_json::Map::new();
        entry.insert("state".into(), state.states_json(&merged));
        entry.insert("rank_states".into(), JsonValue::Array(ranks));
        gathered.insert(path, JsonValue::Object(entry));
    }
    Ok(gathered)
}

/// After [`restore`] under several processes (`rank` of `world_size`): each rank takes its own
/// state of the metrics a checkpoint saved with every rank's (see [`gathered_across`]), so a
/// resumed epoch merges the states an uninterrupted one would. Saved by another number of
/// processes, rank zero keeps the merged state and the other ranks start empty.
pub(crate) fn restore_rank<M: burn::module::Module>(
    module: &M,
    saved: &BTreeMap<String, JsonValue>,
    rank: usize,
    world_size: usize,
    device: &Device,
) -> Result<(), Error> {
    for (path, state) in state::metrics_of(module) {
        let Some(ranks) = saved.get(&path).and_then(|value| value["rank_states"].as_array()) else {
            continue;
        };
        if ranks.len() == world_size {
            state
                .load_json(&ranks[rank], device)
                .map_err(|why| Error::Checkpoint(format!("cannot restore the state of the metric `{path}`: {why}")))?;
        } else if rank != 0 {
            state.reset();
        }
    }
    Ok(())
}

/// Gives every metric of `module` the state `saved` holds under its path, on `device` (the
/// others start empty). A saved state that does not fit its metric is an error naming it.
pub(crate) fn restore<M: burn::module::Module>(
    module: &M,
    saved: &BTreeMap<String, JsonValue>,
    device: &Device,
) -> Result<(), Error> {
    let metrics = state::metrics_of(module);
    for (path, state) in &metrics {
        match saved.get(path) {
            Some(value) => state
                .load_json(&value["state"], device)
                .map_err(|why| Error::Checkpoint(format!("cannot restore the state of the metric `{path}`: {why}")))?,
            None => state.reset(),
        }
    }
    let unknown: Vec<&str> = saved
        .keys()
        .map(String::as_str)
        .filter(|path| metrics.iter().all(|(p, _)| p != path))
        .collect();
    if !unknown.is_empty() {
        tracing::warn!(target: "burn_lightning",
            "the checkpoint holds the state of metrics this module does not have ({}): ignored", unknown.join(", "));
    }
    Ok(())
}

/// The resets of the metrics of `module` that the training loop had logged when `saved` was
/// taken: a resumed fit runs them when the resumed epoch ends, as the uninterrupted fit did
/// (the resumed epoch may end before they are logged again).
pub(crate) fn training_resets<M: burn::module::Module>(
    module: &M,
    saved: &BTreeMap<String, JsonValue>,
) -> Vec<Box<dyn Fn() + Send + Sync>> {
    state::metrics_of(module)
        .into_iter()
        .filter(|(path, _)| saved.get(path).is_some_and(|value| value["logged_by"] == "train"))
        .map(|(_, state)| Box::new(move || state.reset()) as Box<dyn Fn() + Send + Sync>)
        .collect()
}
