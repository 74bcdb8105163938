//! What logging needs from data-parallel training: the values other ranks logged with
//! `sync_dist` (reduced with rank zero's), and the collectives of a multi-process run. The
//! strategies themselves are in `crate::strategies`.

use crate::core::hook_list::Hook;
use crate::core::logging::{MetricValue, Reduce};
use crate::{Error, Tensor};

/// The collectives logging needs from the processes of a multi-process run (implemented by
/// `strategies::process_group::ProcessGroup`).
pub(crate) trait Collectives: Send + Sync {
    /// This process's rank (Lightning's `global_rank`).
    fn rank(&self) -> usize;

    /// `value` reduced across ranks by `reduce` (every rank gets the result).
    fn reduce_scalar(&self, value: f64, reduce: Reduce) -> Result<f64, Error>;

    /// Every rank's `values` (of any length), in rank order (every rank gets them all): how the
    /// states of metric objects are merged.
    fn all_gather(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, Error>;

    /// Whether any rank has a checkpoint waiting for the ranks' states at the end of this
    /// training batch (every rank gets the answer).
    fn checkpoint_waits(&self, waiting: bool) -> Result<bool, Error>;

    /// [`all_gather`](Self::all_gather), for a checkpoint (named so when it times out).
    fn all_gather_for_checkpoint(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, Error>;
}

/// The values the ranks after the first logged with `sync_dist` in the current step, until
/// rank zero logs the same key and they are reduced with its value (part of `Core`).
#[derive(Debug, Default)]
pub(crate) struct SyncDist {
    /// `(hook, name, value)`, in the order logged.
    pending: Vec<(Hook, String, MetricValue)>,
}

impl SyncDist {
    /// Keeps a replica's `sync_dist` value for rank zero's.
    pub(crate) fn keep(&mut self, hook: Hook, name: &str, value: MetricValue) {
        self.pending.push((hook, name.to_string(), value));
    }

    /// Forgets the values of the last step that rank zero did not log.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Rank zero's `value` of `name`, reduced with the values the other ranks logged under the
    /// same hook and name (which are then forgotten). Nothing is read from the device.
    pub(crate) fn reduce(&mut self, hook: Hook, name: &str, value: MetricValue, reduce: Reduce) -> MetricValue {
        if self.pending.is_empty() {
            return value;
        }
        let mut values = vec![value];
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 == hook && self.pending[i].1 == name {
                values.push(self.pending.remove(i).2);
            } else {
                i += 1;
            }
        }
        reduce_values(values, reduce)
    }
}

/// `values` (rank zero's first) reduced by `reduce`: numbers stay numbers; with a tensor among
/// them, the result is a tensor on the device of the first tensor.
fn reduce_values(values: Vec<MetricValue>, reduce: Reduce) -> MetricValue {
    let device = values.iter().find_map(|value| match value {
        MetricValue::Tensor(tensor) => Some(tensor.device()),
        MetricValue::Scalar(_) => None,
    });
    let Some(device) = device else {
        let numbers = values.iter().map(MetricValue::to_f64);
        let count = values.len() as f64;
        return MetricValue::Scalar(match reduce {
            Reduce::Mean => numbers.sum::<f64>() / count,
            Reduce::Sum => numbers.sum(),
            Reduce::Min => numbers.fold(f64::INFINITY, f64::min),
            Reduce::Max => numbers.fold(f64::NEG_INFINITY, f64::max),
        });
    };
    let tensors: Vec<Tensor<1>> = values
        .into_iter()
        .map(|value| match value {
            MetricValue::Tensor(tensor) => tensor.cast(burn::tensor::FloatDType::F32).to_device(&device),
            MetricValue::Scalar(number) => {
                Tensor::from_data(burn::tensor::TensorData::new(vec![number as f32], [1]), &device)
            }
        })
        .collect();
    let all = Tensor::cat(tensors, 0);
    MetricValue::Tensor(match reduce {
        Reduce::Mean => all.mean(),
        Reduce::Sum => all.sum(),
        Reduce::Min => all.min(),
        Reduce::Max => all.max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "flex")]
    use crate::Device;

    #[test]
    fn sync_dist_values_reduce_by_their_reduce() {
        let mut sync = SyncDist::default();
        sync.keep(Hook::TrainingStep, "loss", MetricValue::Scalar(3.0));
        sync.keep(Hook::TrainingStep, "other", MetricValue::Scalar(100.0));
        let mean = sync.reduce(Hook::TrainingStep, "loss", MetricValue::Scalar(1.0), Reduce::Mean);
        assert_eq!(mean.to_f64(), 2.0);
        // Reduced once: the value is gone, the other key is not.
        let again = sync.reduce(Hook::TrainingStep, "loss", MetricValue::Scalar(1.0), Reduce::Mean);
        assert_eq!(again.to_f64(), 1.0);
        let max = sync.reduce(Hook::TrainingStep, "other", MetricValue::Scalar(1.0), Reduce::Max);
        assert_eq!(max.to_f64(), 100.0);
    }

    #[cfg(feature = "flex")]
    #[test]
    fn tensors_and_numbers_reduce_together_on_the_device() {
        let device = Device::flex();
        let tensor = Tensor::from_data(burn::tensor::TensorData::new(vec![4.0f32], [1]), &device);
        let mut sync = SyncDist::default();
        sync.keep(Hook::TrainingStep, "loss", MetricValue::Tensor(tensor));
        let sum = sync.reduce(Hook::TrainingStep, "loss", MetricValue::Scalar(1.0), Reduce::Sum);
        assert!(matches!(sum, MetricValue::Tensor(_)));
        assert_eq!(sum.to_f64(), 5.0);
    }
}
