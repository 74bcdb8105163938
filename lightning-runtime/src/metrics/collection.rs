//! torchmetrics' `MetricCollection`: metrics of the same predictions and targets, updated,
//! computed, reset and logged together under a prefix.

use super::metric::{Preds, Target};
use super::state::MetricState;
use crate::core::logging::{LogValue, Logged, LoggedMetric, MetricValue};
use crate::{Error, Tensor};
use std::collections::BTreeMap;

/// What a collection needs of its metrics (implemented by every metric of predictions and
/// targets whose value is one number).
pub(crate) trait CollectionMember: Send + Sync + std::fmt::Debug {
    fn update_with(&self, preds: &Preds, target: &Target);
    fn forward_with(&self, preds: &Preds, target: &Target) -> Tensor<1>;
    fn logged(&self) -> Box<dyn LoggedMetric>;
    fn state(&self) -> &MetricState;
    fn fresh_member(&self) -> Box<dyn CollectionMember>;
    fn clone_member(&self) -> Box<dyn CollectionMember>;
    fn describe(&self) -> String;
}

/// A metric a [`MetricCollection`] holds: [`Accuracy`](crate::metrics::Accuracy),
/// [`Precision`](crate::metrics::Precision), [`Recall`](crate::metrics::Recall),
/// [`F1Score`](crate::metrics::F1Score), [`AUROC`](crate::metrics::AUROC),
/// [`MeanSquaredError`](crate::metrics::MeanSquaredError) or
/// [`MeanAbsoluteError`](crate::metrics::MeanAbsoluteError), with `.into()`.
pub struct Member(pub(crate) Box<dyn CollectionMember>);

macro_rules! members {
    ($($ty:ident),*) => {$(
        impl From<super::$ty> for Member {
            fn from(metric: super::$ty) -> Self {
                Member(Box::new(metric))
            }
        }
    )*};
}
members!(
    Accuracy,
    Precision,
    Recall,
    F1Score,
    AUROC,
    MeanSquaredError,
    MeanAbsoluteError
);

/// torchmetrics' `MetricCollection`: named metrics of the same predictions and targets, updated
/// together and logged together (`cx.log_dict(&self.val_metrics)`) under `prefix + name +
/// postfix`. Like every metric, a clone shares the states; [`fresh`](Self::fresh) makes new
/// ones (torchmetrics' `clone(prefix=...)`).
///
/// ```ignore
/// let metrics = MetricCollection::new()
///     .with("acc", Accuracy::multiclass(10))
///     .with("f1", F1Score::multiclass(10).average(Average::Macro));
/// let train_metrics = metrics.fresh().prefix("train_");
/// let val_metrics = metrics.fresh().prefix("val_");
/// ```
#[derive(Debug, Default)]
pub struct MetricCollection {
    members: Vec<(String, Box<dyn CollectionMember>)>,
    prefix: String,
    postfix: String,
}

impl Clone for MetricCollection {
    fn clone(&self) -> Self {
        Self {
            members: self
                .members
                .iter()
                .map(|(name, member)| (name.clone(), member.clone_member()))
                .collect(),
            prefix: self.prefix.clone(),
            postfix: self.postfix.clone(),
        }
    }
}

impl MetricCollection {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `metric` under `name` (a metric added under a name already used replaces it).
    #[must_use]
    pub fn with(mut self, name: &str, metric: impl Into<Member>) -> Self {
        let member = metric.into().0;
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => *existing = member,
            None => self.members.push((name.to_string(), member)),
        }
        self
    }

    /// Put before every name when logged and computed (torchmetrics' `prefix`).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Put after every name when logged and computed (torchmetrics' `postfix`).
    #[must_use]
    pub fn postfix(mut self, postfix: &str) -> Self {
        self.postfix = postfix.to_string();
        self
    }

    /// A copy with new, empty states (torchmetrics' `clone`).
    #[must_use]
    pub fn fresh(&self) -> Self {
        Self {
            members: self
                .members
                .iter()
                .map(|(name, member)| (name.clone(), member.fresh_member()))
                .collect(),
            prefix: self.prefix.clone(),
            postfix: self.postfix.clone(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}{}", self.prefix, self.postfix)
    }

    /// The names the metrics are logged under (`prefix + name + postfix`), in order.
    pub fn keys(&self) -> Vec<String> {
        self.members.iter().map(|(name, _)| self.key(name)).collect()
    }

    /// Updates every metric with the batch (device work only).
    pub fn update(&self, preds: impl Into<Preds>, target: impl Into<Target>) {
        let (preds, target) = (preds.into(), target.into());
        for (_, member) in &self.members {
            member.update_with(&preds, &target);
        }
    }

    /// Updates every metric, and returns each one's value of this batch (on the device).
    pub fn forward(&self, preds: impl Into<Preds>, target: impl Into<Target>) -> BTreeMap<String, Tensor<1>> {
        let (preds, target) = (preds.into(), target.into());
        self.members
            .iter()
            .map(|(name, member)| (self.key(name), member.forward_with(&preds, &target)))
            .collect()
    }

    /// Every metric's value (each read from the device once).
    pub fn compute(&self) -> Result<BTreeMap<String, f64>, Error> {
        self.members
            .iter()
            .map(|(name, member)| Ok((self.key(name), member.logged().epoch_value(None)?)))
            .collect()
    }

    /// Resets every metric.
    pub fn reset(&self) {
        for (_, member) in &self.members {
            member.state().reset();
        }
    }

    /// `(name, metric)` pairs, to log each with options:
    /// `for (name, metric) in &self.metrics { cx.log_with(&name, metric, options.clone()) }`.
    pub fn iter(&self) -> impl Iterator<Item = (String, MemberRef<'_>)> {
        self.members
            .iter()
            .map(|(name, member)| (self.key(name), MemberRef(member.as_ref())))
    }
}

/// A metric of a [`MetricCollection`], as `cx.log` takes it.
#[derive(Clone, Copy, Debug)]
pub struct MemberRef<'a>(&'a dyn CollectionMember);

impl LogValue for MemberRef<'_> {
    /// The value computed now (reads the device); `cx.log` logs the object instead.
    fn into_metric(self) -> MetricValue {
        MetricValue::Scalar(self.0.logged().epoch_value(None).unwrap_or(f64::NAN))
    }

    fn into_logged(self) -> Logged {
        Logged::object(self.0.logged())
    }
}

impl<'a> IntoIterator for &'a MetricCollection {
    type Item = (String, MemberRef<'a>);
    type IntoIter = std::vec::IntoIter<(String, MemberRef<'a>)>;

    /// `cx.log_dict(&self.val_metrics)` logs every metric under its name.
    fn into_iter(self) -> Self::IntoIter {
        self.iter().collect::<Vec<_>>().into_iter()
    }
}

impl burn::module::Module for MetricCollection {
    fn visit<V: burn::module::ModuleVisitor>(&self, visitor: &mut V) {
        for (name, member) in &self.members {
            visitor.enter_module(name, "Struct:MetricCollection");
            member.state().announce();
            visitor.exit_module(name, "Struct:MetricCollection");
        }
    }

    fn map<M: burn::module::ModuleMapper>(self, _mapper: &mut M) -> Self {
        self
    }

    fn to_device(self, _device: &crate::Device) -> Self {
        self
    }

    fn fork(self, _device: &crate::Device) -> Self {
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

impl burn::module::ModuleDisplayDefault for MetricCollection {
    fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|(name, member)| format!("{}: {}", self.key(name), member.describe()))
            .collect();
        content
            .add_formatted(&format!("MetricCollection {{{}}}", members.join(", ")))
            .optional()
    }
}

impl burn::module::ModuleDisplay for MetricCollection {}
