//! torchmetrics' aggregators: [`MeanMetric`], [`SumMetric`], [`MaxMetric`] and [`MinMetric`],
//! over numbers or tensors of any shape. NaN values are left out, as torchmetrics' default
//! `nan_strategy="warn"` does (without its warning, which would read the device).

use super::metric::{MetricConfig, Object, loggable_metric, metric_module};
use super::state::{Reduction, StateSpec, StateTensor};
use crate::{Device, Tensor};
use burn::tensor::{FloatDType, TensorData};

/// Values an aggregator takes: a number, or a tensor of any shape (flattened). Built with
/// `.into()` from `f64`, `f32`, a tensor or a reference to one.
// One per update, consumed at once: boxing the tensor would allocate per update.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Values {
    Tensor(Tensor<1>),
    Number(f64),
}

impl<const D: usize> From<Tensor<D>> for Values {
    fn from(tensor: Tensor<D>) -> Self {
        let elements = tensor.shape().num_elements();
        Values::Tensor(tensor.without_autodiff().reshape([elements]))
    }
}

impl<const D: usize> From<&Tensor<D>> for Values {
    fn from(tensor: &Tensor<D>) -> Self {
        tensor.clone().into()
    }
}

impl From<f64> for Values {
    fn from(value: f64) -> Self {
        Values::Number(value)
    }
}

impl From<f32> for Values {
    fn from(value: f32) -> Self {
        Values::Number(f64::from(value))
    }
}

impl Values {
    fn device(&self) -> Device {
        match self {
            Values::Tensor(t) => t.device().without_autodiff(),
            Values::Number(_) => Device::default(),
        }
    }

    /// As `f32` values on `device` (a number is one value).
    fn tensor(self, device: &Device) -> Tensor<1> {
        match self {
            Values::Tensor(t) => t.cast(FloatDType::F32),
            Values::Number(x) => {
                Tensor::from_data(TensorData::new(vec![x as f32], [1]), (device, burn::tensor::DType::F32))
            }
        }
    }
}

/// Which aggregate a configuration keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aggregate {
    Mean,
    Sum,
    Max,
    Min,
}

/// The configuration of the aggregators.
#[derive(Clone, Debug)]
pub(crate) struct Aggregation {
    aggregate: Aggregate,
}

impl MetricConfig for Aggregation {
    /// The values, and their weights (the mean only).
    type Input = (Values, Option<Values>);

    fn specs(&self) -> Vec<StateSpec> {
        match self.aggregate {
            Aggregate::Mean => vec![
                StateSpec::values("mean_value", Reduction::Sum, 1),
                StateSpec::values("weight", Reduction::Sum, 1),
            ],
            Aggregate::Sum => vec![StateSpec::values("sum_value", Reduction::Sum, 1)],
            Aggregate::Max => vec![StateSpec::values("max_value", Reduction::Max, 1)],
            Aggregate::Min => vec![StateSpec::values("min_value", Reduction::Min, 1)],
        }
    }

    fn describe(&self) -> String {
        format!("`{:?}Metric`", self.aggregate)
    }

    fn device(&self, input: &Self::Input) -> Device {
        input.0.device()
    }

    fn batch(&self, (values, weights): Self::Input) -> Result<Option<Vec<StateTensor>>, String> {
        let device = values.device();
        let values = values.tensor(&device);
        let [n] = values.dims();
        if n == 0 {
            return Ok(None);
        }
        let nan = values.clone().is_nan();
        let states = match self.aggregate {
            Aggregate::Sum => vec![values.mask_fill(nan, 0.0).sum()],
            Aggregate::Max => vec![values.mask_fill(nan, f32::NEG_INFINITY).max()],
            Aggregate::Min => vec![values.mask_fill(nan, f32::INFINITY).min()],
            Aggregate::Mean => {
                let weights = match weights {
                    None => values.ones_like(),
                    Some(Values::Number(w)) => values.full_like(w as f32),
                    Some(Values::Tensor(w)) => match w.dims() {
                        [1] => w.cast(FloatDType::F32).expand([n]),
                        [m] if m == n => w.cast(FloatDType::F32),
                        [m] => {
                            return Err(format!(
                                "{m} weights were given for {n} values; give one weight, or one per value"
                            ));
                        }
                    },
                };
                let weights = weights.mask_fill(nan.clone(), 0.0);
                let values = values.mask_fill(nan, 0.0);
                vec![(values * weights.clone()).sum(), weights.sum()]
            }
        };
        Ok(Some(states.into_iter().map(StateTensor::Float).collect()))
    }

    fn value(&self, states: Vec<StateTensor>, dtype: FloatDType) -> Result<Tensor<1>, String> {
        let mut states = states.into_iter().map(|s| s.float(dtype));
        let first = states.next().ok_or("its state is incomplete")?;
        Ok(match self.aggregate {
            // 0 / 0 is NaN, as torchmetrics' mean of nothing.
            Aggregate::Mean => first / states.next().ok_or("its state is incomplete")?,
            _ => first,
        })
    }
}

macro_rules! aggregator {
    ($(#[$doc:meta])* $ty:ident, $aggregate:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $ty(pub(crate) Object<Aggregation>);

        impl $ty {
            pub fn new() -> Self {
                Self(Object::new(Aggregation { aggregate: $aggregate }))
            }

            /// torchmetrics' `update`: adds the values (device work only).
            pub fn update(&self, values: impl Into<Values>) {
                self.0.update((values.into(), None));
            }

            /// torchmetrics' `forward`: [`update`](Self::update), and the aggregate of these
            /// values alone, on the device.
            pub fn forward(&self, values: impl Into<Values>) -> Tensor<1> {
                self.0.forward((values.into(), None))
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }

        metric_module!($ty);
        loggable_metric!($ty);
    };
}

aggregator!(
    /// torchmetrics' `MeanMetric`: the (weighted) mean of every value since the last reset;
    /// NaN when there is none.
    MeanMetric,
    Aggregate::Mean
);

aggregator!(
    /// torchmetrics' `SumMetric`: the sum of every value since the last reset.
    SumMetric,
    Aggregate::Sum
);

aggregator!(
    /// torchmetrics' `MaxMetric`: the largest value since the last reset (-inf before any).
    MaxMetric,
    Aggregate::Max
);

aggregator!(
    /// torchmetrics' `MinMetric`: the smallest value since the last reset (+inf before any).
    MinMetric,
    Aggregate::Min
);

impl MeanMetric {
    /// [`update`](Self::update) with weights: one for every value, or one for all
    /// (torchmetrics' `update(value, weight)`).
    pub fn update_weighted(&self, values: impl Into<Values>, weights: impl Into<Values>) {
        self.0.update((values.into(), Some(weights.into())));
    }

    /// [`forward`](Self::forward) with weights: the weighted mean of these values alone.
    pub fn forward_weighted(&self, values: impl Into<Values>, weights: impl Into<Values>) -> Tensor<1> {
        self.0.forward((values.into(), Some(weights.into())))
    }
}
