//! torchmetrics' regression metrics: [`MeanSquaredError`] and [`MeanAbsoluteError`], a sum of
//! errors and a count of elements each.

use super::metric::{MetricConfig, Object, Preds, Target, loggable_metric, metric_module, prediction_metric};
use super::state::{Reduction, StateSpec, StateTensor};
use crate::{Device, Tensor};
use burn::tensor::{FloatDType, Int, TensorData};

/// Which error a [`Regression`] configuration sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deviation {
    Squared { root: bool },
    Absolute,
}

/// The configuration of the regression metrics.
#[derive(Clone, Debug)]
pub(crate) struct Regression {
    deviation: Deviation,
}

impl MetricConfig for Regression {
    type Input = (Preds, Target);

    fn specs(&self) -> Vec<StateSpec> {
        let sum = match self.deviation {
            Deviation::Squared { .. } => "sum_squared_error",
            Deviation::Absolute => "sum_abs_error",
        };
        vec![StateSpec::values(sum, Reduction::Sum, 1), StateSpec::counts("total", 1)]
    }

    fn describe(&self) -> String {
        match self.deviation {
            Deviation::Squared { root: false } => "`MeanSquaredError`".into(),
            Deviation::Squared { root: true } => "`MeanSquaredError` (squared=false: the root)".into(),
            Deviation::Absolute => "`MeanAbsoluteError`".into(),
        }
    }

    fn device(&self, input: &Self::Input) -> Device {
        input.0.device()
    }

    fn batch(&self, (preds, target): Self::Input) -> Result<Option<Vec<StateTensor>>, String> {
        let dims = preds.dims();
        if target.dims() != dims {
            return Err(format!(
                "predictions and targets must have the same shape; got {:?} and {:?}",
                dims,
                target.dims()
            ));
        }
        let elements = dims[0] * dims[1];
        if elements == 0 {
            return Ok(None);
        }
        let device = preds.device();
        let preds = match preds {
            Preds::Scores(p) => p.cast(FloatDType::F32),
            Preds::Labels(p) => p.cast(FloatDType::F32),
        };
        let target = match target {
            Target::Values(t) => t.cast(FloatDType::F32),
            Target::Labels(t) => t.cast(FloatDType::F32),
        };
        let diff = preds - target;
        let sum = match self.deviation {
            Deviation::Squared { .. } => (diff.clone() * diff).sum(),
            Deviation::Absolute => diff.abs().sum(),
        };
        let total = Tensor::<1, Int>::from_data(TensorData::new(vec![elements as i64], [1]), &device);
        Ok(Some(vec![StateTensor::Float(sum), StateTensor::Int(total)]))
    }

    fn value(&self, states: Vec<StateTensor>, dtype: FloatDType) -> Result<Tensor<1>, String> {
        let mut states = states.into_iter().map(|s| s.float(dtype));
        let (Some(sum), Some(total)) = (states.next(), states.next()) else {
            return Err("its state is incomplete".into());
        };
        let mean = sum / total;
        Ok(match self.deviation {
            Deviation::Squared { root: true } => mean.sqrt(),
            _ => mean,
        })
    }
}

/// torchmetrics' `MeanSquaredError`: the mean of `(pred - target)²` over every element since
/// the last reset; `squared(false)` gives its root (RMSE).
#[derive(Clone, Debug)]
pub struct MeanSquaredError(pub(crate) Object<Regression>);

impl MeanSquaredError {
    pub fn new() -> Self {
        Self(Object::new(Regression {
            deviation: Deviation::Squared { root: false },
        }))
    }

    /// `false`: the root of the mean squared error (torchmetrics' `squared=False`).
    #[must_use]
    pub fn squared(self, squared: bool) -> Self {
        Self(Object::new(Regression {
            deviation: Deviation::Squared { root: !squared },
        }))
    }
}

impl Default for MeanSquaredError {
    fn default() -> Self {
        Self::new()
    }
}

/// torchmetrics' `MeanAbsoluteError`: the mean of `|pred - target|` over every element since
/// the last reset.
#[derive(Clone, Debug)]
pub struct MeanAbsoluteError(pub(crate) Object<Regression>);

impl MeanAbsoluteError {
    pub fn new() -> Self {
        Self(Object::new(Regression {
            deviation: Deviation::Absolute,
        }))
    }
}

impl Default for MeanAbsoluteError {
    fn default() -> Self {
        Self::new()
    }
}

metric_module!(MeanSquaredError);
loggable_metric!(MeanSquaredError);
prediction_metric!(MeanSquaredError);
metric_module!(MeanAbsoluteError);
loggable_metric!(MeanAbsoluteError);
prediction_metric!(MeanAbsoluteError);
