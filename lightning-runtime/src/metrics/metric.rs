//! What every metric object shares: the inputs it takes, `update`/`forward`/`compute`/`reset`
//! over its [`MetricState`], how the trainer logs it, and its `Module` implementation (a metric
//! is a field of the module, like a burn layer without parameters).

use super::state::{MetricState, StateSpec, StateTensor, compute_dtype};
use crate::core::distributed::Collectives;
use crate::core::logging::LoggedMetric;
use crate::{Device, Error, Tensor};
use burn::tensor::{FloatDType, Int, TensorData, Transaction};

/// Predictions, as the classification and regression metrics take them: scores (probabilities or
/// logits, `[N, C]`; a `Tensor<1>` is `[N, 1]`) or labels (`Tensor<1, Int>` class indices, or
/// `[N, L]` 0/1 labels). Tensors of more dimensions are flattened to `[N, rest]`. Built with
/// `.into()` from a tensor or a reference to one.
#[derive(Clone, Debug)]
pub enum Preds {
    /// Probabilities or logits (torchmetrics' float `preds`).
    Scores(Tensor<2>),
    /// Class indices or 0/1 labels (torchmetrics' int `preds`).
    Labels(Tensor<2, Int>),
}

/// Targets: class indices or 0/1 labels (`Tensor<1, Int>` is `[N, 1]`), or values (regression;
/// 0/1 values are labels too). Built with `.into()` from a tensor or a reference to one.
#[derive(Clone, Debug)]
pub enum Target {
    /// Class indices or 0/1 labels.
    Labels(Tensor<2, Int>),
    /// Values.
    Values(Tensor<2>),
}

/// `[N, ...]` as `[N, rest]` (a tensor of one dimension is `[N, 1]`).
fn rows<const D: usize, K: burn::tensor::kind::Basic>(tensor: Tensor<D, K>) -> Tensor<2, K> {
    let dims = tensor.dims();
    let rest = dims[1..].iter().product::<usize>();
    tensor.reshape([dims[0], rest])
}

impl Preds {
    pub(crate) fn dims(&self) -> [usize; 2] {
        match self {
            Preds::Scores(t) => t.dims(),
            Preds::Labels(t) => t.dims(),
        }
    }

    pub(crate) fn device(&self) -> Device {
        match self {
            Preds::Scores(t) => t.device(),
            Preds::Labels(t) => t.device(),
        }
        .without_autodiff()
    }
}

impl Target {
    pub(crate) fn dims(&self) -> [usize; 2] {
        match self {
            Target::Labels(t) => t.dims(),
            Target::Values(t) => t.dims(),
        }
    }
}

impl<const D: usize> From<Tensor<D>> for Preds {
    fn from(scores: Tensor<D>) -> Self {
        Preds::Scores(rows(scores.without_autodiff()))
    }
}

impl<const D: usize> From<&Tensor<D>> for Preds {
    fn from(scores: &Tensor<D>) -> Self {
        scores.clone().into()
    }
}

impl<const D: usize> From<Tensor<D, Int>> for Preds {
    fn from(labels: Tensor<D, Int>) -> Self {
        Preds::Labels(rows(labels.without_autodiff()))
    }
}

impl<const D: usize> From<&Tensor<D, Int>> for Preds {
    fn from(labels: &Tensor<D, Int>) -> Self {
        labels.clone().into()
    }
}

impl<const D: usize> From<Tensor<D, Int>> for Target {
    fn from(labels: Tensor<D, Int>) -> Self {
        Target::Labels(rows(labels.without_autodiff()))
    }
}

impl<const D: usize> From<&Tensor<D, Int>> for Target {
    fn from(labels: &Tensor<D, Int>) -> Self {
        labels.clone().into()
    }
}

impl<const D: usize> From<Tensor<D>> for Target {
    fn from(values: Tensor<D>) -> Self {
        Target::Values(rows(values.without_autodiff()))
    }
}

impl<const D: usize> From<&Tensor<D>> for Target {
    fn from(values: &Tensor<D>) -> Self {
        values.clone().into()
    }
}

/// What a metric computes, apart from its state: how a batch becomes states, and states become
/// its value. Both run on the device, without reading it.
pub(crate) trait MetricConfig: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// What `update` takes.
    type Input;

    /// The metric's states (torchmetrics' `add_state` calls).
    fn specs(&self) -> Vec<StateSpec>;

    /// How messages name the metric: `` `Accuracy` (multiclass, 10 classes) ``.
    fn describe(&self) -> String;

    /// A configuration that cannot work (a flag out of range), reported at the first update,
    /// log or compute.
    fn invalid(&self) -> Option<String> {
        None
    }

    /// The index of a count state of targets or predictions the metric could not take (a class
    /// out of range): read with the value, an error when it is not 0.
    fn invalid_state(&self) -> Option<usize> {
        None
    }

    /// The device of the input.
    fn device(&self, input: &Self::Input) -> Device;

    /// The states of one batch (`None` for an empty batch), or why the input does not fit.
    fn batch(&self, input: Self::Input) -> Result<Option<Vec<StateTensor>>, String>;

    /// The metric's value (flattened) from its states, computed in `dtype`; an error when the
    /// states cannot give one (no samples).
    fn value(&self, states: Vec<StateTensor>, dtype: FloatDType) -> Result<Tensor<1>, String>;
}

/// A metric object: its configuration and its shared state.
#[derive(Clone, Debug)]
pub(crate) struct Object<C> {
    pub(crate) config: C,
    pub(crate) state: MetricState,
}

impl<C: MetricConfig> Object<C> {
    pub(crate) fn new(config: C) -> Self {
        let state = MetricState::new(config.specs());
        Self { config, state }
    }

    /// A copy with its own, empty state.
    pub(crate) fn fresh(&self) -> Self {
        Self::new(self.config.clone())
    }

    fn error(&self, message: String) -> Error {
        Error::Metric {
            metric: self.config.describe(),
            message,
        }
    }

    /// torchmetrics' `update`: adds the batch's states (device work only).
    pub(crate) fn update(&self, input: C::Input) {
        if let Some(why) = self.config.invalid() {
            return self.state.record_error(why);
        }
        match self.config.batch(input) {
            Ok(Some(states)) => self.state.add(states),
            Ok(None) => {}
            Err(why) => self.state.record_error(why),
        }
    }

    /// torchmetrics' `forward`: `update`, and the batch's own value (on the device, in `f32`;
    /// NaN for input the metric cannot take, recorded as an error).
    pub(crate) fn forward(&self, input: C::Input) -> Tensor<1> {
        let device = self.config.device(&input);
        let nan = || Tensor::<1>::from_data(TensorData::new(vec![f32::NAN], [1]), &device);
        let batch = match self.config.invalid() {
            Some(why) => Err(why),
            None => self.config.batch(input),
        };
        let value = match batch {
            Ok(Some(states)) => match self.config.value(states.clone(), compute_dtype(&device)) {
                Ok(value) => {
                    self.state.add(states);
                    value.cast(FloatDType::F32)
                }
                Err(why) => {
                    self.state.add(states);
                    tracing::debug!(target: "burn_lightning", metric = %self.config.describe(), "batch value: {why}");
                    nan()
                }
            },
            Ok(None) => nan(),
            Err(why) => {
                self.state.record_error(why);
                nan()
            }
        };
        self.state.set_forward(value.clone());
        value
    }

    /// Bad input or configuration recorded since the last reset.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.config.invalid().or_else(|| self.state.error()) {
            Some(why) => Err(self.error(why)),
            None => Ok(()),
        }
    }

    /// The value of everything updated since the last reset, flattened, read from the device
    /// once. With `sync`, every process's states are merged first (each by its reduction).
    pub(crate) fn compute_values(&self, sync: Option<&dyn Collectives>) -> Result<Vec<f64>, Error> {
        self.check()?;
        let device = self.state.device().unwrap_or_default();
        let states = match sync {
            None => self.state.merged_or_initial(&device),
            Some(group) => match self
                .state
                .merged_across(group, &device)
                .map_err(|why| self.error(why))?
            {
                Some(states) => states,
                None => self.state.merged_or_initial(&device),
            },
        };
        let invalid = self
            .config
            .invalid_state()
            .and_then(|index| states.get(index).cloned())
            .map(StateTensor::int);
        let value = self
            .config
            .value(states, compute_dtype(&device))
            .map_err(|why| self.error(why))?;
        // One read: the value, and the count of what the metric could not take.
        let mut transaction = Transaction::default().register(value);
        if let Some(invalid) = invalid {
            transaction = transaction.register(invalid);
        }
        let mut data = transaction
            .try_execute()
            .map_err(|e| self.error(format!("cannot read its value from the device: {e:?}")))?
            .into_iter();
        let values = data
            .next()
            .ok_or_else(|| self.error("its value could not be read".into()))?
            .try_into_vec_as::<f64>()
            .map_err(|e| self.error(format!("cannot read its value: {e:?}")))?;
        if let Some(invalid) = data.next() {
            let invalid = invalid
                .try_into_vec_as::<i64>()
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(0);
            if invalid > 0 {
                return Err(self.error(format!(
                    "{invalid} of its targets or predicted labels were not labels of its task (class indices \
                     0..num_classes for multiclass, 0 or 1 for binary and multilabel)"
                )));
            }
        }
        Ok(values)
    }

    /// The value, as one number.
    pub(crate) fn compute_scalar(&self, sync: Option<&dyn Collectives>) -> Result<f64, Error> {
        let values = self.compute_values(sync)?;
        values
            .first()
            .copied()
            .ok_or_else(|| self.error("its value is empty".into()))
    }
}

impl<C: MetricConfig> LoggedMetric for Object<C> {
    fn state_id(&self) -> u64 {
        self.state.id()
    }

    fn describe(&self) -> String {
        self.config.describe()
    }

    fn step_value(&self) -> Option<Tensor<1>> {
        self.state.forward_value()
    }

    fn check(&self) -> Result<(), Error> {
        Object::check(self)
    }

    fn epoch_value(&self, sync: Option<&dyn Collectives>) -> Result<f64, Error> {
        self.compute_scalar(sync)
    }

    fn reset(&self) {
        self.state.reset();
    }
}

/// The `Module` implementation of a metric type (a metric is a module without parameters whose
/// state every clone, fork, mapped copy and evaluation copy shares), its display in the module's
/// `Display`, and the common methods `reset` and `fresh`.
macro_rules! metric_module {
    ($ty:ident) => {
        impl burn::module::Module for $ty {
            fn visit<V: burn::module::ModuleVisitor>(&self, _visitor: &mut V) {
                self.0.state.announce();
            }

            fn map<M: burn::module::ModuleMapper>(self, _mapper: &mut M) -> Self {
                self
            }

            fn to_device(self, _device: &$crate::Device) -> Self {
                self
            }

            fn fork(self, _device: &$crate::Device) -> Self {
                self
            }

            fn collect_devices(&self, devices: burn::module::Devices) -> burn::module::Devices {
                devices
            }

            fn materialize(self) -> Self {
                self
            }

            fn valid(&self) -> Self {
                self.clone()
            }

            fn train(self) -> Self {
                self
            }
        }

        impl burn::module::ModuleDisplayDefault for $ty {
            fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
                use $crate::metrics::metric::MetricConfig as _;
                content.add_formatted(&self.0.config.describe()).optional()
            }
        }

        impl burn::module::ModuleDisplay for $ty {}

        impl $ty {
            /// Forgets every update since the last reset (torchmetrics' `reset`); the trainer
            /// resets a logged metric after computing its epoch value.
            pub fn reset(&self) {
                self.0.state.reset();
            }

            /// A copy of this metric with its own, empty state (torchmetrics' `clone()`):
            /// `clone` shares the state, as every copy the trainer makes of the module must.
            #[must_use]
            pub fn fresh(&self) -> Self {
                Self(self.0.fresh())
            }
        }
    };
}
pub(crate) use metric_module;

/// [`LogValue`](crate::LogValue) for a metric whose value is one number: `cx.log(name, &metric)`
/// logs the object itself (Lightning's `self.log(name, metric)`), and the collection members.
macro_rules! loggable_metric {
    ($ty:ident) => {
        impl $crate::core::logging::LogValue for &$ty {
            /// The value computed now (reads the device); `cx.log` logs the object instead.
            fn into_metric(self) -> $crate::core::logging::MetricValue {
                $crate::core::logging::MetricValue::Scalar(self.0.compute_scalar(None).unwrap_or(f64::NAN))
            }

            fn into_logged(self) -> $crate::core::logging::Logged {
                $crate::core::logging::Logged::object(Box::new(self.0.clone()))
            }
        }

        impl $ty {
            /// The value of everything updated since the last reset (torchmetrics' `compute`),
            /// read from the device once; an error for input the metric could not take. With
            /// several processes, this process's value: the value the trainer logs merges
            /// every process's state.
            pub fn compute(&self) -> Result<f64, $crate::Error> {
                self.0.compute_scalar(None)
            }
        }
    };
}
pub(crate) use loggable_metric;

/// `update` and `forward` of a metric of predictions and targets whose value is one number, and
/// its membership of a [`MetricCollection`](crate::metrics::MetricCollection).
macro_rules! prediction_metric {
    ($ty:ident) => {
        impl $ty {
            /// torchmetrics' `update`: adds a batch of predictions and targets to the state
            /// (device work only, nothing is read). Input the metric cannot take (shapes that do
            /// not fit) is reported when the metric is logged or computed.
            pub fn update(&self, preds: impl Into<$crate::metrics::Preds>, target: impl Into<$crate::metrics::Target>) {
                self.0.update((preds.into(), target.into()));
            }

            /// torchmetrics' `forward`: [`update`](Self::update), and the value of this batch
            /// alone, on the device (what the trainer logs on step).
            pub fn forward(
                &self,
                preds: impl Into<$crate::metrics::Preds>,
                target: impl Into<$crate::metrics::Target>,
            ) -> $crate::Tensor<1> {
                self.0.forward((preds.into(), target.into()))
            }
        }

        impl $crate::metrics::collection::CollectionMember for $ty {
            fn update_with(&self, preds: &$crate::metrics::Preds, target: &$crate::metrics::Target) {
                self.update(preds.clone(), target.clone());
            }

            fn forward_with(
                &self,
                preds: &$crate::metrics::Preds,
                target: &$crate::metrics::Target,
            ) -> $crate::Tensor<1> {
                self.forward(preds.clone(), target.clone())
            }

            fn logged(&self) -> Box<dyn $crate::core::logging::LoggedMetric> {
                Box::new(self.0.clone())
            }

            fn state(&self) -> &$crate::metrics::state::MetricState {
                &self.0.state
            }

            fn fresh_member(&self) -> Box<dyn $crate::metrics::collection::CollectionMember> {
                Box::new(self.fresh())
            }

            fn clone_member(&self) -> Box<dyn $crate::metrics::collection::CollectionMember> {
                Box::new(self.clone())
            }

            fn describe(&self) -> String {
                use $crate::metrics::metric::MetricConfig as _;
                self.0.config.describe()
            }
        }
    };
}
pub(crate) use prediction_metric;
