//! `cx.log`: Lightning's `self.log` semantics. Values logged from step hooks are kept as tensors
//! (no device synchronization per step); epoch values are reduced, weighted by batch size, when
//! the epoch ends, with one read per metric.

use crate::state::{Loop as LoopKind, TrainerState};
use crate::hooks::{Hook, LogScope};
use crate::{Error, Tensor};
use std::collections::{BTreeMap, HashMap};

/// A value `cx.log` accepts: a number, or a one-element tensor (detached, read lazily).
pub trait LogValue {
    fn into_metric(self) -> MetricValue;
}

macro_rules! scalar_log_value {
    ($($t:ty),*) => {$(
        impl LogValue for $t {
            fn into_metric(self) -> MetricValue {
                MetricValue::Scalar(self as f64)
            }
        }
    )*};
}
scalar_log_value!(f64, f32, usize, u32, u64, i32, i64);

impl LogValue for Tensor<1> {
    fn into_metric(self) -> MetricValue {
        MetricValue::Tensor(self.detach())
    }
}

impl LogValue for &Tensor<1> {
    fn into_metric(self) -> MetricValue {
        MetricValue::Tensor(self.clone().detach())
    }
}

/// A logged value: a number, or a tensor read only when someone needs the number.
// A tensor handle is large; there is one value per metric, and boxing it would allocate on
// every `log` call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum MetricValue {
    Scalar(f64),
    Tensor(Tensor<1>),
}

impl MetricValue {
    /// The value as a number (reads the tensor from the device).
    pub fn to_f64(&self) -> f64 {
        match self {
            MetricValue::Scalar(v) => *v,
            MetricValue::Tensor(t) => read_values(std::slice::from_ref(t))
                .first()
                .copied()
                .unwrap_or(f64::NAN),
        }
    }
}

/// Reads tensors with one device synchronization.
fn read_values(tensors: &[Tensor<1>]) -> Vec<f64> {
    if tensors.is_empty() {
        return Vec::new();
    }
    let all = Tensor::cat(tensors.to_vec(), 0);
    all.into_data().convert::<f64>().try_to_vec::<f64>().unwrap_or_default()
}

/// How epoch values are reduced (Lightning's `reduce_fx`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Reduce {
    /// Mean weighted by batch size: `sum(v * bs) / sum(bs)`.
    #[default]
    Mean,
    Sum,
    Min,
    Max,
}

/// Options of [`StepContext::log_with`](crate::StepContext::log_with), as in Lightning's `self.log`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    /// Keep the value of every step. `None`: the hook's default (true in training hooks).
    pub on_step: Option<bool>,
    /// Reduce the values over the epoch. `None`: the hook's default (true in validation and test).
    pub on_epoch: Option<bool>,
    pub reduce: Reduce,
    /// Show it in the progress output.
    pub prog_bar: bool,
    /// Weight of this value in the epoch mean; by default the number of items in the batch.
    pub batch_size: Option<usize>,
}

impl LogOptions {
    pub fn new() -> Self {
        Self::default()
    }
    #[must_use]
    pub fn on_step(mut self, on: bool) -> Self {
        self.on_step = Some(on);
        self
    }
    #[must_use]
    pub fn on_epoch(mut self, on: bool) -> Self {
        self.on_epoch = Some(on);
        self
    }
    #[must_use]
    pub fn reduce(mut self, reduce: Reduce) -> Self {
        self.reduce = reduce;
        self
    }
    #[must_use]
    pub fn prog_bar(mut self, show: bool) -> Self {
        self.prog_bar = show;
        self
    }
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }
}

/// Options of [`EpochContext::log_with`](crate::EpochContext::log_with): epoch hooks log once
/// per epoch, so there is no `on_step` to get wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochLogOptions {
    pub reduce: Reduce,
    pub prog_bar: bool,
}

impl EpochLogOptions {
    pub fn new() -> Self {
        Self::default()
    }
    #[must_use]
    pub fn reduce(mut self, reduce: Reduce) -> Self {
        self.reduce = reduce;
        self
    }
    #[must_use]
    pub fn prog_bar(mut self, show: bool) -> Self {
        self.prog_bar = show;
        self
    }
    pub(crate) fn into_log_options(self) -> LogOptions {
        LogOptions {
            on_step: Some(false),
            on_epoch: Some(true),
            reduce: self.reduce,
            prog_bar: self.prog_bar,
            batch_size: None,
        }
    }
}

/// Values logged over an epoch, reduced at its end. Tensors are read in bulk.
#[derive(Debug, Default)]
struct Accumulator {
    scalars: Vec<(f64, f64)>,
    tensors: Vec<Tensor<1>>,
    tensor_weights: Vec<f64>,
}

/// Tensors kept before they are read and folded into numbers (bounds memory on long epochs).
const FOLD_EVERY: usize = 4096;

impl Accumulator {
    fn add(&mut self, value: MetricValue, weight: f64) {
        match value {
            MetricValue::Scalar(v) => self.scalars.push((v, weight)),
            MetricValue::Tensor(t) => {
                self.tensors.push(t);
                self.tensor_weights.push(weight);
                if self.tensors.len() >= FOLD_EVERY {
                    self.fold();
                }
            }
        }
    }

    fn fold(&mut self) {
        let values = read_values(&self.tensors);
        self.scalars
            .extend(values.into_iter().zip(self.tensor_weights.drain(..)));
        self.tensors.clear();
    }

    fn is_empty(&self) -> bool {
        self.scalars.is_empty() && self.tensors.is_empty()
    }

    /// The reduced value of everything added since the epoch started.
    fn reduce(&mut self, reduce: Reduce) -> Option<f64> {
        self.fold();
        if self.scalars.is_empty() {
            return None;
        }
        let values = self.scalars.iter();
        let value = match reduce {
            Reduce::Mean => {
                let (sum, weight) = values.fold((0.0, 0.0), |(s, w), (v, bw)| (s + v * bw, w + bw));
                sum / weight
            }
            Reduce::Sum => values.map(|(v, _)| v).sum(),
            Reduce::Min => values.map(|(v, _)| *v).fold(f64::INFINITY, f64::min),
            Reduce::Max => values.map(|(v, _)| *v).fold(f64::NEG_INFINITY, f64::max),
        };
        Some(value)
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    step_key: String,
    epoch_key: String,
    hook: Hook,
    loop_kind: LoopKind,
    on_step: bool,
    on_epoch: bool,
    options: LogOptions,
    step_value: Option<MetricValue>,
    epoch: Accumulator,
    epoch_value: Option<f64>,
    /// Whether the bare name shows the epoch value (after the epoch ended) or the last step.
    epoch_done: bool,
}

/// Every metric logged in a run.
#[derive(Debug, Default)]
pub(crate) struct MetricStore {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    /// Loops whose epoch has ended: values their epoch-end hooks log are reduced at once.
    ended: Vec<LoopKind>,
}

impl MetricStore {
    pub(crate) fn log(
        &mut self,
        hook: Hook,
        state: &TrainerState,
        name: &str,
        value: MetricValue,
        options: &LogOptions,
        batch_size: usize,
    ) -> Result<(), Error> {
        let loop_kind = LoopKind::of(state.stage);
        let training = loop_kind == LoopKind::Train;
        let (default_step, default_epoch) = match hook.log_scope() {
            LogScope::StepAndEpoch => (training, !training),
            LogScope::Epoch | LogScope::None => (false, true),
        };
        let on_step = options.on_step.unwrap_or(default_step);
        let on_epoch = options.on_epoch.unwrap_or(default_epoch);
        if !on_step && !on_epoch {
            return Err(log_error(
                hook,
                name,
                "`on_step` and `on_epoch` are both false, so the value would go nowhere; set one of them to true",
            ));
        }
        if let MetricValue::Tensor(t) = &value
            && t.dims()[0] != 1
        {
            return Err(log_error(
                hook,
                name,
                &format!(
                    "a logged tensor must hold one value, this one holds {}; reduce it first (for example `.mean()`)",
                    t.dims()[0]
                ),
            ));
        }
        let index = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.entries.push(Entry {
                    name: name.to_string(),
                    step_key: format!("{name}_step"),
                    epoch_key: format!("{name}_epoch"),
                    hook,
                    loop_kind,
                    on_step,
                    on_epoch,
                    options: options.clone(),
                    step_value: None,
                    epoch: Accumulator::default(),
                    epoch_value: None,
                    epoch_done: false,
                });
                self.index.insert(name.to_string(), self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        if entry.hook == hook
            && (entry.on_step != on_step || entry.on_epoch != on_epoch || entry.options.reduce != options.reduce)
        {
            return Err(log_error(
                hook,
                name,
                "it was already logged in this hook with different options; log it with the same options or under another name",
            ));
        }
        entry.hook = hook;
        entry.loop_kind = loop_kind;
        entry.on_step = on_step;
        entry.on_epoch = on_epoch;
        entry.options.reduce = options.reduce;
        entry.options.prog_bar = options.prog_bar;
        if on_epoch {
            entry.epoch.add(value.clone(), batch_size as f64);
            if self.ended.contains(&loop_kind) {
                entry.epoch_value = entry.epoch.reduce(entry.options.reduce);
                entry.epoch_done = true;
            } else {
                entry.epoch_done = false;
            }
        }
        if on_step {
            entry.step_value = Some(value);
        }
        Ok(())
    }

    /// Starts an epoch of `loop_kind`: forgets what the previous one accumulated.
    pub(crate) fn start_epoch(&mut self, loop_kind: LoopKind) {
        self.ended.retain(|k| *k != loop_kind);
        for entry in self.entries.iter_mut().filter(|e| e.loop_kind == loop_kind) {
            entry.epoch = Accumulator::default();
        }
    }

    /// Ends an epoch of `loop_kind`: reduces what it accumulated.
    pub(crate) fn end_epoch(&mut self, loop_kind: LoopKind) {
        self.ended.push(loop_kind);
        for entry in self
            .entries
            .iter_mut()
            .filter(|e| e.loop_kind == loop_kind && e.on_epoch)
        {
            if entry.epoch.is_empty() {
                continue;
            }
            entry.epoch_value = entry.epoch.reduce(entry.options.reduce);
            entry.epoch_done = true;
        }
    }

    /// Forgets every metric of `loop_kind` (after the sanity check, as Lightning does).
    pub(crate) fn forget(&mut self, loop_kind: LoopKind) {
        self.entries.retain(|e| e.loop_kind != loop_kind);
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
    }

    /// Lightning's `trainer.callback_metrics`: step values of training metrics, epoch values of
    /// every loop (evaluation loops report epoch values only).
    pub(crate) fn callback_metrics(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            let training = e.loop_kind == LoopKind::Train;
            let step = (e.on_step && training)
                .then(|| e.step_value.as_ref().map(MetricValue::to_f64))
                .flatten();
            match (e.on_step, e.on_epoch) {
                (true, true) => {
                    if let Some(v) = step {
                        out.insert(e.step_key.clone(), v);
                    }
                    if let Some(v) = e.epoch_value {
                        out.insert(e.epoch_key.clone(), v);
                    }
                    let bare = if e.epoch_done || !training {
                        e.epoch_value
                    } else {
                        step.or(e.epoch_value)
                    };
                    if let Some(v) = bare {
                        out.insert(e.name.clone(), v);
                    }
                }
                (true, false) => {
                    if let Some(v) = step {
                        out.insert(e.name.clone(), v);
                    }
                }
                (false, _) => {
                    if let Some(v) = e.epoch_value {
                        out.insert(e.name.clone(), v);
                    }
                }
            }
        }
        out
    }

    /// Epoch-reduced values of one loop (what `validate` and `test` return).
    pub(crate) fn epoch_metrics(&self, loop_kind: LoopKind) -> Metrics {
        let all = self.callback_metrics();
        let mut out = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.loop_kind == loop_kind && e.on_epoch) {
            let key = if e.on_step { &e.epoch_key } else { &e.name };
            if let Some(v) = all.get(key) {
                out.insert(key.clone(), *v);
            }
        }
        Metrics(out)
    }
}

fn log_error(hook: Hook, name: &str, why: &str) -> Error {
    Error::Hook {
        hook: hook.name(),
        message: format!("cannot log `{name}`: {why}"),
    }
}

/// Metrics by name, as numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// The metric called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }
}

impl From<BTreeMap<String, f64>> for Metrics {
    fn from(map: BTreeMap<String, f64>) -> Self {
        Self(map)
    }
}

impl std::ops::Deref for Metrics {
    type Target = BTreeMap<String, f64>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Display for Metrics {
    /// `name=value` pairs, separated by spaces.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (name, value) in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={value:.4}")?;
        }
        Ok(())
    }
}
