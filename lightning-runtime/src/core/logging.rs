//! `cx.log`: Lightning's `self.log` semantics. Values logged from step hooks are kept as tensors
//! (no device synchronization per step); epoch values are reduced, weighted by batch size, when
//! the epoch ends, with one read per loop. As in Lightning, a metric is keyed by its loop, hook
//! and name, and `callback_metrics` holds, for each key, the value a loop published last.
//! A metric object (`crate::metrics`, Lightning's `torchmetrics.Metric`) is logged as itself:
//! on step its batch value, on epoch the value of its state, computed when the epoch ends
//! (merged across processes in training), after which the object is reset.

use crate::core::distributed::Collectives;
use crate::core::hook_list::{Hook, LogScope};
use crate::core::state::Loop;
use crate::{Error, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A value `cx.log` accepts: a number, a one-element tensor (detached, read lazily), or a metric
/// object of `burn_lightning::metrics` (by reference: `cx.log("val_acc", &self.val_acc)`).
pub trait LogValue {
    fn into_metric(self) -> MetricValue;

    /// What `cx.log` keeps: the value, or, for a metric object, the object.
    #[doc(hidden)]
    fn into_logged(self) -> Logged
    where
        Self: Sized,
    {
        Logged(LoggedKind::Value(self.into_metric()))
    }
}

/// What `cx.log` was given: a value, or a metric object (see [`LogValue::into_logged`]).
#[doc(hidden)]
pub struct Logged(pub(crate) LoggedKind);

impl Logged {
    /// A metric object, logged as Lightning logs a `torchmetrics.Metric`.
    pub(crate) fn object(metric: Box<dyn LoggedMetric>) -> Self {
        Logged(LoggedKind::Object(metric))
    }
}

// One per `log` call, moved at once into the store: boxing the value would allocate per call.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LoggedKind {
    Value(MetricValue),
    Object(Box<dyn LoggedMetric>),
}

/// A metric object as the metric store sees it (implemented by `crate::metrics`).
pub(crate) trait LoggedMetric: Send + Sync + std::fmt::Debug {
    /// Identifies its state, which every clone of the object shares.
    fn state_id(&self) -> u64;
    /// How messages name it.
    fn describe(&self) -> String;
    /// The batch value of its last `forward` since the last reset, on the device.
    fn step_value(&self) -> Option<Tensor<1>>;
    /// Bad input or configuration recorded by its updates.
    fn check(&self) -> Result<(), Error>;
    /// The value of its state (read from the device); with `sync`, the states of every process
    /// merged first, each by its own reduction.
    fn epoch_value(&self, sync: Option<&dyn Collectives>) -> Result<f64, Error>;
    /// Forgets its state.
    fn reset(&self);
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
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// Send it to the loggers. `None`: yes (Lightning's `logger=True`).
    pub logger: Option<bool>,
    /// With several devices, reduce the value of every rank by `reduce` (the mean by default)
    /// before it is logged (Lightning's `sync_dist`); without it, rank zero's value is logged.
    /// On one device it changes nothing. See [`strategy`](crate::strategies::ddp).
    pub sync_dist: bool,
    /// With several dataloaders in the loop, append `/dataloader_idx_N` to the name (Lightning's
    /// `add_dataloader_idx`). `None`: yes. Without it, give each dataloader's value a name of
    /// its own: one name logged from two dataloaders is an error, as in Lightning.
    pub add_dataloader_idx: Option<bool>,
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
    /// `false` keeps the value out of the loggers (it still reaches `callback_metrics`).
    #[must_use]
    pub fn logger(mut self, send: bool) -> Self {
        self.logger = Some(send);
        self
    }
    /// Reduce the value across devices (Lightning's `sync_dist`); see the field of that name.
    #[must_use]
    pub fn sync_dist(mut self, sync: bool) -> Self {
        self.sync_dist = sync;
        self
    }
    /// `false` keeps the name as it is with several dataloaders (Lightning's
    /// `add_dataloader_idx=False`); see the field of that name.
    #[must_use]
    pub fn add_dataloader_idx(mut self, add: bool) -> Self {
        self.add_dataloader_idx = Some(add);
        self
    }
}

/// Options of [`EpochContext::log_with`](crate::EpochContext::log_with): epoch hooks log once
/// per epoch, so there is no `on_step` to get wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochLogOptions {
    pub reduce: Reduce,
    pub prog_bar: bool,
    /// Send it to the loggers. `None`: yes.
    pub logger: Option<bool>,
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
    /// `false` keeps the value out of the loggers.
    #[must_use]
    pub fn logger(mut self, send: bool) -> Self {
        self.logger = Some(send);
        self
    }
    pub(crate) fn into_log_options(self) -> LogOptions {
        LogOptions {
            on_step: Some(false),
            on_epoch: Some(true),
            reduce: self.reduce,
            prog_bar: self.prog_bar,
            batch_size: None,
            logger: self.logger,
            sync_dist: false,
            add_dataloader_idx: None,
        }
    }
}

/// Values logged over an epoch, reduced at its end. Tensors are read in bulk.
#[derive(Debug, Default)]
struct Accumulator {
    scalars: Vec<(f64, f64)>,
    tensors: Vec<Tensor<1>>,
    tensor_weights: Vec<f64>,
    /// Values of tensors a checkpoint read before they were folded (a resumed epoch's): folded
    /// in first, when the tensors are, so the sums run in the order an uninterrupted epoch's do.
    restored_tensor_values: Vec<(f64, f64)>,
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
                if self.tensors.len() + self.restored_tensor_values.len() >= FOLD_EVERY {
                    self.fold();
                }
            }
        }
    }

    fn fold(&mut self) {
        let values = read_values(&self.tensors);
        self.absorb(values);
    }

    /// Folds in the values of the tensors kept, read by the caller (in the same order).
    fn absorb(&mut self, values: Vec<f64>) {
        self.scalars.append(&mut self.restored_tensor_values);
        self.scalars
            .extend(values.into_iter().zip(self.tensor_weights.drain(..)));
        self.tensors.clear();
    }

    fn is_empty(&self) -> bool {
        self.scalars.is_empty() && self.tensors.is_empty() && self.restored_tensor_values.is_empty()
    }

    /// Forgets everything added (keeps the allocations for the next epoch).
    fn clear(&mut self) {
        self.scalars.clear();
        self.tensors.clear();
        self.tensor_weights.clear();
        self.restored_tensor_values.clear();
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

/// A value handed to `callback_metrics`, and when (a store-wide counter): for a key several
/// entries provide, the latest one wins, as in Lightning's `callback_metrics` dict, which each
/// loop's results *update*.
#[derive(Clone, Debug)]
struct Published<T> {
    value: T,
    stamp: u64,
}

impl<T> Published<T> {
    /// `value`, published now: later than everything published before (`clock` counts).
    fn new(clock: &mut u64, value: T) -> Self {
        *clock += 1;
        Self { value, stamp: *clock }
    }
}

/// Which published values a query collects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Values {
    Step,
    Epoch,
    StepAndEpoch,
}

/// A published value, borrowed: a number, or a tensor still to read.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Number(f64),
    Tensor(&'a Tensor<1>),
}

/// One logged metric: Lightning's `_ResultMetric` under the key `"{fx}.{name}"` of its loop's
/// `_ResultCollection` (the same name logged in two hooks, or in two loops, is two entries).
#[derive(Debug)]
struct Entry {
    loop_kind: Loop,
    hook: Hook,
    name: String,
    /// The dataloader it was logged from when its loop had several (Lightning's
    /// `_Metadata.dataloader_idx`): the loop's results of that dataloader.
    dataloader_idx: Option<usize>,
    /// `{name}_step` and `{name}_epoch`, used when the entry is both on_step and on_epoch.
    step_key: String,
    epoch_key: String,
    on_step: bool,
    on_epoch: bool,
    reduce: Reduce,
    prog_bar: bool,
    /// Whether the loggers receive it.
    logger: bool,
    /// What the current epoch of the loop logged.
    epoch: Accumulator,
    /// The current epoch's reduced value, once its epoch has ended; `None` after a reset.
    epoch_value: Option<f64>,
    /// The latest step value published (for the loggers and the progress bar; in
    /// `callback_metrics` for training entries only, as in Lightning). Outlives the loop's
    /// resets, as Lightning's `callback_metrics` dict does.
    step_published: Option<Published<MetricValue>>,
    /// The latest epoch value published.
    epoch_published: Option<Published<f64>>,
    /// The metric object logged under this key, whose state gives the epoch value (Lightning
    /// keeps the latest one logged).
    object: Option<Box<dyn LoggedMetric>>,
    /// Whether the object was logged since the last reset (Lightning's `has_reset` is false).
    object_logged: bool,
    /// Made from a checkpoint's epoch in progress, and not logged since: logging it with other
    /// options (a changed module) replaces it instead of failing.
    restored: bool,
}

impl Entry {
    /// Lightning's `forked`: the value goes to `{name}_step` and `{name}_epoch` too.
    fn forked(&self) -> bool {
        self.on_step && self.on_epoch
    }

    /// Forgets what the current epoch logged (Lightning's `_ResultMetric.reset`, which resets a
    /// metric object too); what was published stays.
    fn reset(&mut self) {
        self.epoch.clear();
        self.epoch_value = None;
        self.object_logged = false;
        if let Some(object) = &self.object {
            object.reset();
        }
    }

    /// The epoch value of its metric object; `Ok(None)` when it has none.
    fn object_value(&self, sync: Option<&dyn Collectives>) -> Result<Option<f64>, Error> {
        match &self.object {
            Some(object) if self.on_epoch && self.object_logged => object.epoch_value(sync).map(Some),
            _ => Ok(None),
        }
    }
}

/// Every metric logged in a run: the entries of the training, validation and test loops, and
/// what they published to `callback_metrics`.
#[derive(Debug, Default)]
pub(crate) struct MetricStore {
    entries: Vec<Entry>,
    /// Indices of the entries of each name (one per loop and hook that logged it): a lookup by
    /// `&str` allocates nothing.
    by_name: HashMap<String, Vec<usize>>,
    /// Loops whose epoch has ended: values their epoch-end hooks log are reduced at once.
    ended: Vec<Loop>,
    /// Counts publications, to order them.
    clock: u64,
    /// Values callbacks sent straight to the loggers (the learning-rate monitor's): they are in
    /// `callback_metrics` too, as Lightning's callbacks put them there.
    sent: HashMap<String, Published<f64>>,
    /// The dataloader of the current batch when its loop has several (Lightning's
    /// `_ResultCollection.dataloader_idx`): names logged then get `/dataloader_idx_N`.
    dataloader: Option<usize>,
    /// Several processes: the collectives that merge the training metric objects' states.
    sync: Option<Arc<dyn Collectives>>,
    /// The first error a metric object met when its epoch value was computed, reported at the
    /// next hook boundary.
    error: Option<Error>,
    /// Resets of restored metric objects, due when the resumed training epoch ends.
    restored: Resets,
    /// Resets due when the next training epoch starts.
    resets_due: Resets,
    /// What a checkpoint's training epoch in progress had logged: the entries it makes when
    /// the resumed epoch starts.
    restored_logs: Vec<RestoredLog>,
}

/// A training entry of a checkpoint's epoch in progress, parsed (see
/// [`MetricStore::restore_epoch_logs`]).
#[derive(Debug)]
struct RestoredLog {
    hook: Hook,
    name: String,
    options: LogOptions,
    scalars: Vec<(f64, f64)>,
    tensor_values: Vec<(f64, f64)>,
}

/// What one training entry accumulated of an epoch in progress, as a checkpoint keeps it (a
/// resumed epoch's means count the batches before the checkpoint too). Values and weights are
/// the bits of their `f64`: exact through JSON, and not-a-number too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedEpochLog {
    hook: String,
    name: String,
    on_step: bool,
    reduce: Reduce,
    prog_bar: bool,
    logger: bool,
    /// `(value, weight)` of each value logged as a number, or folded from tensors.
    values: Vec<(u64, u64)>,
    /// `(value, weight)` of each value logged as a tensor, not folded yet.
    tensor_values: Vec<(u64, u64)>,
}

/// The training entries of an epoch in progress, taken when a checkpoint is requested: their
/// tensors are read on the writer thread ([`EpochLogsSnapshot::read`]).
#[derive(Debug, Default)]
pub(crate) struct EpochLogsSnapshot(Vec<(SavedEpochLog, Vec<Tensor<1>>, Vec<f64>)>);

impl EpochLogsSnapshot {
    /// The entries, with their tensors' values (one device read for all of them).
    pub(crate) fn read(self) -> Vec<SavedEpochLog> {
        let tensors: Vec<Tensor<1>> = self
            .0
            .iter()
            .flat_map(|(_, tensors, _)| tensors.iter().cloned())
            .collect();
        let mut values = read_values(&tensors).into_iter();
        self.0
            .into_iter()
            .map(|(mut saved, tensors, weights)| {
                let read = values.by_ref().take(tensors.len());
                saved
                    .tensor_values
                    .extend(read.zip(weights).map(|(v, w)| (v.to_bits(), w.to_bits())));
                saved
            })
            .collect()
    }
}

/// Hooks that run again when an epoch resumes: what they log is not carried over (it would be
/// counted twice).
const RERUN_ON_RESUME: [Hook; 2] = [Hook::OnTrainStart, Hook::OnTrainEpochStart];

/// The metric objects a checkpoint saves (see [`MetricStore::checkpointed_metrics`]), by state.
#[derive(Clone, Debug, Default)]
pub(crate) struct SavedMetrics {
    pub(crate) skip: Vec<u64>,
    pub(crate) training: Vec<u64>,
}

/// Resets of metric objects.
#[derive(Default)]
struct Resets(Vec<Box<dyn Fn() + Send + Sync>>);

impl std::fmt::Debug for Resets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resets", self.0.len())
    }
}

impl std::fmt::Debug for dyn Collectives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collectives(rank {})", self.rank())
    }
}

impl MetricStore {
    /// Lightning's `self.log(name, value)` in `hook`, run by `loop_kind`: values go to the entry
    /// keyed by loop, hook and name.
    pub(crate) fn log(
        &mut self,
        hook: Hook,
        loop_kind: Loop,
        name: &str,
        value: MetricValue,
        options: &LogOptions,
        batch_size: usize,
    ) -> Result<(), Error> {
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
        let index = self.entry(hook, loop_kind, name, options)?;
        let entry = &mut self.entries[index];
        if entry.object.is_some() {
            return Err(log_error(
                hook,
                name,
                "a metric object was logged under this name in this hook; log values under another name",
            ));
        }
        let (on_step, on_epoch) = (entry.on_step, entry.on_epoch);
        // Step values reach `callback_metrics` at once (Lightning publishes them at the batch's
        // end, and whenever `callback_metrics` is read during the batch), in every loop; the
        // loggers receive them at the end of the batch.
        if !on_epoch {
            entry.step_published = Some(Published::new(&mut self.clock, value));
            return Ok(());
        }
        if on_step {
            entry.step_published = Some(Published::new(&mut self.clock, value.clone()));
        }
        entry.epoch.add(value, batch_size as f64);
        if self.ended.contains(&loop_kind) {
            entry.epoch_value = entry.epoch.reduce(entry.reduce);
            if let Some(value) = entry.epoch_value {
                entry.epoch_published = Some(Published::new(&mut self.clock, value));
            }
        }
        Ok(())
    }

    /// Lightning's `self.log(name, metric)` for a metric object: on step, the batch value of its
    /// last `forward` (nothing when it was only updated); on epoch, the value of its state when
    /// the epoch ends. Its bad input, if any, is reported here.
    pub(crate) fn log_object(
        &mut self,
        hook: Hook,
        loop_kind: Loop,
        name: &str,
        object: Box<dyn LoggedMetric>,
        options: &LogOptions,
    ) -> Result<(), Error> {
        object.check()?;
        let index = self.entry(hook, loop_kind, name, options)?;
        let entry = &mut self.entries[index];
        if entry.object.is_none() && (!entry.epoch.is_empty() || entry.step_published.is_some()) {
            return Err(log_error(
                hook,
                name,
                &format!(
                    "values were logged under this name in this hook, and now {}; log the metric object under another name",
                    object.describe()
                ),
            ));
        }
        if entry.on_step
            && let Some(value) = object.step_value()
        {
            entry.step_published = Some(Published::new(&mut self.clock, MetricValue::Tensor(value)));
        }
        entry.object = Some(object);
        entry.object_logged = true;
        if entry.on_epoch && self.ended.contains(&loop_kind) {
            let sync = self.sync.clone().filter(|_| loop_kind == Loop::Train);
            match entry.object_value(sync.as_deref()) {
                Ok(value) => {
                    entry.epoch_value = value;
                    if let Some(value) = value {
                        entry.epoch_published = Some(Published::new(&mut self.clock, value));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The index of the entry of `name` logged in `hook` by `loop_kind`, made on first use with
    /// `options` (and the hook's defaults); an error when the options differ from the first
    /// call's.
    fn entry(&mut self, hook: Hook, loop_kind: Loop, name: &str, options: &LogOptions) -> Result<usize, Error> {
        let suffixed;
        let name = match self.dataloader {
            Some(idx) if options.add_dataloader_idx.unwrap_or(true) => {
                suffixed = format!("{name}/dataloader_idx_{idx}");
                suffixed.as_str()
            }
            _ => name,
        };
        let training = loop_kind == Loop::Train;
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
        let found = self.by_name.get(name).and_then(|indices| {
            indices
                .iter()
                .copied()
                .find(|&i| self.entries[i].hook == hook && self.entries[i].loop_kind == loop_kind)
        });
        let index = match found {
            Some(i) => i,
            None => {
                let index = self.entries.len();
                self.entries.push(Entry {
                    loop_kind,
                    hook,
                    name: name.to_string(),
                    dataloader_idx: self.dataloader,
                    step_key: format!("{name}_step"),
                    epoch_key: format!("{name}_epoch"),
                    on_step,
                    on_epoch,
                    reduce: options.reduce,
                    prog_bar: options.prog_bar,
                    logger: options.logger.unwrap_or(true),
                    epoch: Accumulator::default(),
                    epoch_value: None,
                    step_published: None,
                    epoch_published: None,
                    object: None,
                    object_logged: false,
                    restored: false,
                });
                self.by_name.entry(name.to_string()).or_default().push(index);
                index
            }
        };
        let entry = &mut self.entries[index];
        // Lightning's metadata holds the dataloader: one name from two dataloaders of one
        // epoch would mix their values. An entry of an earlier run follows the current one.
        let logged_this_epoch = !entry.epoch.is_empty() || entry.object_logged;
        if entry.dataloader_idx != self.dataloader && logged_this_epoch && !entry.restored {
            return Err(log_error(
                hook,
                name,
                &format!(
                    "it was logged from {} and now from {}, with `add_dataloader_idx(false)`; give each dataloader's \
                     value a name of its own, or let the trainer add `/dataloader_idx_N`",
                    describe_dataloader(entry.dataloader_idx),
                    describe_dataloader(self.dataloader)
                ),
            ));
        }
        entry.dataloader_idx = self.dataloader;
        let differs = entry.on_step != on_step
            || entry.on_epoch != on_epoch
            || entry.reduce != options.reduce
            || entry.prog_bar != options.prog_bar
            || entry.logger != options.logger.unwrap_or(true);
        if std::mem::take(&mut entry.restored) && differs {
            tracing::warn!(target: "burn_lightning",
                "`{name}` is logged in `{}` with other options than the checkpoint's; its epoch value counts the batches since the resume only",
                hook.name());
            entry.epoch.clear();
            entry.on_step = on_step;
            entry.on_epoch = on_epoch;
            entry.reduce = options.reduce;
            entry.prog_bar = options.prog_bar;
            entry.logger = options.logger.unwrap_or(true);
            return Ok(index);
        }
        // Lightning compares the whole `_Metadata`; of it, these are the options we have.
        if entry.on_step != on_step
            || entry.on_epoch != on_epoch
            || entry.reduce != options.reduce
            || entry.prog_bar != options.prog_bar
            || entry.logger != options.logger.unwrap_or(true)
        {
            return Err(log_error(
                hook,
                name,
                "it was already logged in this hook with different options; log it with the same options or under another name",
            ));
        }
        Ok(index)
    }

    /// The dataloader of the batches that follow, when their loop has several; `None` with one
    /// dataloader and outside the batches.
    pub(crate) fn set_dataloader(&mut self, dataloader: Option<usize>) {
        self.dataloader = dataloader;
    }

    /// Several processes: the collectives that merge the states of training metric objects
    /// (every process evaluates the whole dataloader, so evaluation states are not merged).
    pub(crate) fn set_sync(&mut self, sync: Option<Arc<dyn Collectives>>) {
        self.sync = sync;
    }

    /// The error a metric object met when its epoch value was computed.
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    /// Resets the metric objects `loop_kind` logged (Lightning's `reset_results` at the end of
    /// an evaluation run); their epoch values stay.
    pub(crate) fn reset_objects(&mut self, loop_kind: Loop) {
        for entry in self.entries.iter().filter(|e| e.loop_kind == loop_kind) {
            if let Some(object) = &entry.object {
                object.reset();
            }
        }
    }

    /// Which metric objects a checkpoint saves, by state: `skip`, those whose epoch value was
    /// computed and that wait for their reset, and those an evaluation loop logged (they are
    /// reset when their next run starts, so a resumed fit starts them empty); `training`, those
    /// the training loop logged (a resumed fit resets them once the resumed epoch ends).
    pub(crate) fn checkpointed_metrics(&self) -> SavedMetrics {
        let mut saved = SavedMetrics::default();
        for entry in &self.entries {
            let Some(object) = &entry.object else { continue };
            let id = object.state_id();
            if self.ended.contains(&entry.loop_kind) || entry.loop_kind != Loop::Train {
                saved.skip.push(id);
            } else {
                saved.training.push(id);
            }
        }
        saved
    }

    /// Resets of metric objects a resumed fit restored, that the training loop had logged: due
    /// when the resumed epoch ends (it may end before they are logged again).
    pub(crate) fn reset_after_training_epoch(&mut self, resets: Vec<Box<dyn Fn() + Send + Sync>>) {
        self.restored.0.extend(resets);
    }

    /// Starts an epoch of `loop_kind`: forgets what the previous one accumulated (Lightning
    /// resets the training results after each training epoch and the evaluation results after
    /// each evaluation run). What was published to `callback_metrics` stays.
    pub(crate) fn start_epoch(&mut self, loop_kind: Loop) {
        if loop_kind == Loop::Train {
            for reset in self.resets_due.0.drain(..) {
                reset();
            }
        }
        self.ended.retain(|k| *k != loop_kind);
        for entry in self.entries.iter_mut().filter(|e| e.loop_kind == loop_kind) {
            entry.reset();
        }
        if loop_kind == Loop::Train {
            for restored in std::mem::take(&mut self.restored_logs) {
                let Ok(index) = self.entry(restored.hook, Loop::Train, &restored.name, &restored.options) else {
                    continue;
                };
                let entry = &mut self.entries[index];
                entry.epoch.scalars = restored.scalars;
                entry.epoch.restored_tensor_values = restored.tensor_values;
                entry.restored = true;
            }
        }
    }

    /// What the training loop accumulated of its epoch in progress (nothing once the epoch has
    /// ended), for a checkpoint. Metric objects keep their own state (`crate::metrics`).
    pub(crate) fn epoch_logs_snapshot(&self) -> EpochLogsSnapshot {
        if self.ended.contains(&Loop::Train) {
            return EpochLogsSnapshot::default();
        }
        let bits = |pairs: &[(f64, f64)]| pairs.iter().map(|(v, w)| (v.to_bits(), w.to_bits())).collect();
        let saved = self
            .entries
            .iter()
            .filter(|e| {
                e.loop_kind == Loop::Train
                    && e.on_epoch
                    && e.object.is_none()
                    && !e.epoch.is_empty()
                    && !RERUN_ON_RESUME.contains(&e.hook)
            })
            .map(|e| {
                let saved = SavedEpochLog {
                    hook: e.hook.name().to_string(),
                    name: e.name.clone(),
                    on_step: e.on_step,
                    reduce: e.reduce,
                    prog_bar: e.prog_bar,
                    logger: e.logger,
                    values: bits(&e.epoch.scalars),
                    tensor_values: bits(&e.epoch.restored_tensor_values),
                };
                (saved, e.epoch.tensors.clone(), e.epoch.tensor_weights.clone())
            })
            .collect();
        EpochLogsSnapshot(saved)
    }

    /// A resumed fit: the training entries of the checkpoint's epoch in progress come back
    /// when that epoch starts again, so that its means count the batches before the
    /// checkpoint too. An error names an entry the file describes wrongly.
    pub(crate) fn restore_epoch_logs(&mut self, saved: &[SavedEpochLog]) -> Result<(), Error> {
        let floats = |pairs: &[(u64, u64)]| {
            pairs
                .iter()
                .map(|(v, w)| (f64::from_bits(*v), f64::from_bits(*w)))
                .collect()
        };
        self.restored_logs = saved
            .iter()
            .map(|saved| {
                let hook = Hook::ALL.into_iter().find(|h| h.name() == saved.hook).ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "its logged value `{}` names a hook this version does not have (`{}`)",
                        saved.name, saved.hook
                    ))
                })?;
                Ok(RestoredLog {
                    hook,
                    name: saved.name.clone(),
                    options: LogOptions {
                        on_step: Some(saved.on_step),
                        on_epoch: Some(true),
                        reduce: saved.reduce,
                        prog_bar: saved.prog_bar,
                        batch_size: None,
                        logger: Some(saved.logger),
                        sync_dist: false,
                        add_dataloader_idx: None,
                    },
                    scalars: floats(&saved.values),
                    tensor_values: floats(&saved.tensor_values),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(())
    }

    /// Ends an epoch of `loop_kind`: reduces what it accumulated (reading every tensor of the
    /// loop with one device synchronization) and publishes the epoch values, in the order the
    /// entries were first logged.
    pub(crate) fn end_epoch(&mut self, loop_kind: Loop) {
        if loop_kind == Loop::Train {
            let restored = std::mem::take(&mut self.restored.0);
            self.resets_due.0.extend(restored);
        }
        self.ended.push(loop_kind);
        let ending = |e: &Entry| e.loop_kind == loop_kind && e.on_epoch && !e.epoch.is_empty();
        let tensors: Vec<Tensor<1>> = self
            .entries
            .iter()
            .filter(|e| ending(e))
            .flat_map(|e| e.epoch.tensors.iter().cloned())
            .collect();
        let mut values = read_values(&tensors).into_iter();
        for entry in self.entries.iter_mut().filter(|e| ending(e)) {
            let read = values.by_ref().take(entry.epoch.tensors.len()).collect();
            entry.epoch.absorb(read);
            entry.epoch_value = entry.epoch.reduce(entry.reduce);
            if let Some(value) = entry.epoch_value {
                entry.epoch_published = Some(Published::new(&mut self.clock, value));
            }
        }
        // Metric objects: each computes its value from its state, merged across processes in
        // training (every process computes them, in the order they were first logged).
        let sync = self.sync.clone().filter(|_| loop_kind == Loop::Train);
        for entry in self.entries.iter_mut().filter(|e| e.loop_kind == loop_kind) {
            match entry.object_value(sync.as_deref()) {
                Ok(None) => {}
                Ok(Some(value)) => {
                    entry.epoch_value = Some(value);
                    entry.epoch_published = Some(Published::new(&mut self.clock, value));
                }
                Err(e) => {
                    self.error.get_or_insert(e);
                }
            }
        }
    }

    /// After the sanity check, as Lightning does (`reset_results` then `reset_metrics`): resets
    /// the results of `loop_kind` and clears everything published to `callback_metrics`.
    pub(crate) fn forget(&mut self, loop_kind: Loop) {
        self.ended.retain(|k| *k != loop_kind);
        self.sent.clear();
        for entry in &mut self.entries {
            if entry.loop_kind == loop_kind {
                entry.reset();
            }
            entry.step_published = None;
            entry.epoch_published = None;
        }
    }

    /// Lightning's `trainer.callback_metrics`: for each key, the value most recently published
    /// by any loop. Training entries publish step values when logged (`name`, and `name_step`
    /// when also on_epoch); every loop publishes epoch values when its epoch ends (`name`, and
    /// `name_epoch` when also on_step). Tensors are read with one device synchronization.
    pub(crate) fn callback_metrics(&self) -> BTreeMap<String, f64> {
        self.published(|_| true, 0, Values::StepAndEpoch, true)
    }

    /// Lightning's `progress_bar_metrics`: what was logged with `prog_bar(true)`, under its
    /// forked names (`name_step`, `name_epoch` when logged both ways).
    pub(crate) fn progress_bar_metrics(&self) -> BTreeMap<String, f64> {
        self.published(|e| e.prog_bar, 0, Values::StepAndEpoch, false)
    }

    /// The step values `loop_kind` published after `since` (a [`clock`](Self::clock) reading)
    /// for the loggers (Lightning's `metrics["log"]` at a step): `name`, or `name_step` when
    /// also on_epoch. Read from the device only when called, on steps that log.
    pub(crate) fn logger_step_metrics(&self, loop_kind: Loop, since: u64) -> BTreeMap<String, f64> {
        self.published(|e| e.logger && e.loop_kind == loop_kind, since, Values::Step, false)
    }

    /// The epoch values `loop_kind` published after `since`, for the loggers: `name`, or
    /// `name_epoch` when also on_step.
    pub(crate) fn logger_epoch_metrics(&self, loop_kind: Loop, since: u64) -> BTreeMap<String, f64> {
        self.published(|e| e.logger && e.loop_kind == loop_kind, since, Values::Epoch, false)
    }

    /// Records values a callback sent straight to the loggers, for `callback_metrics`.
    pub(crate) fn record_sent(&mut self, metrics: &BTreeMap<String, f64>) {
        for (name, value) in metrics {
            self.sent.insert(name.clone(), Published::new(&mut self.clock, *value));
        }
    }

    /// The publication counter now: what is published later has a larger stamp.
    pub(crate) fn clock(&self) -> u64 {
        self.clock
    }

    /// For each key, the latest value published after `since` by the entries `pick` selects.
    /// `bare` also offers a forked entry's values under its bare name (what `callback_metrics`
    /// does). Tensors are read with one device synchronization.
    fn published(
        &self,
        pick: impl Fn(&Entry) -> bool,
        since: u64,
        values: Values,
        bare: bool,
    ) -> BTreeMap<String, f64> {
        fn offer<'a>(latest: &mut HashMap<&'a str, (u64, Slot<'a>)>, key: &'a str, stamp: u64, slot: Slot<'a>) {
            if latest.get(key).is_none_or(|(newest, _)| *newest < stamp) {
                latest.insert(key, (stamp, slot));
            }
        }
        let mut latest = HashMap::new();
        for e in self.entries.iter().filter(|e| pick(e)) {
            // Lightning's `callback_metrics` take the step values of training only.
            let step_values = values != Values::Epoch && (!bare || e.loop_kind == Loop::Train);
            if step_values && let Some(p) = e.step_published.as_ref().filter(|p| p.stamp > since) {
                let slot = match &p.value {
                    MetricValue::Scalar(v) => Slot::Number(*v),
                    MetricValue::Tensor(t) => Slot::Tensor(t),
                };
                if !e.forked() || bare {
                    offer(&mut latest, &e.name, p.stamp, slot);
                }
                if e.forked() {
                    offer(&mut latest, &e.step_key, p.stamp, slot);
                }
            }
            if values != Values::Step
                && let Some(p) = e.epoch_published.as_ref().filter(|p| p.stamp > since)
            {
                if !e.forked() || bare {
                    offer(&mut latest, &e.name, p.stamp, Slot::Number(p.value));
                }
                if e.forked() {
                    offer(&mut latest, &e.epoch_key, p.stamp, Slot::Number(p.value));
                }
            }
        }
        if bare {
            for (name, p) in self.sent.iter().filter(|(_, p)| p.stamp > since) {
                offer(&mut latest, name, p.stamp, Slot::Number(p.value));
            }
        }
        let winners: Vec<(&str, Slot<'_>)> = latest.into_iter().map(|(key, (_, slot))| (key, slot)).collect();
        let tensors: Vec<Tensor<1>> = winners
            .iter()
            .filter_map(|(_, slot)| match slot {
                Slot::Tensor(t) => Some((*t).clone()),
                Slot::Number(_) => None,
            })
            .collect();
        let mut read = read_values(&tensors).into_iter();
        winners
            .into_iter()
            .map(|(key, slot)| {
                let value = match slot {
                    Slot::Number(v) => v,
                    Slot::Tensor(_) => read.next().unwrap_or(f64::NAN),
                };
                (key.to_string(), value)
            })
            .collect()
    }

    /// Epoch values of one loop's current results for the loggers (what `validate` and `test`
    /// return, Lightning's `metrics["log"]`): the entries logged with `logger(true)` since the
    /// loop's last reset, under `name`, or `name_epoch` when also on_step.
    pub(crate) fn epoch_metrics(&self, loop_kind: Loop) -> Metrics {
        self.epoch_metrics_of(loop_kind, None)
    }

    /// [`epoch_metrics`](Self::epoch_metrics) of one of the loop's several dataloaders
    /// (Lightning's `_logged_outputs[dataloader_idx]`): what it logged, and what the loop logged
    /// outside its batches (the epoch-end hooks), which every dataloader's results hold.
    /// `None`: everything.
    pub(crate) fn epoch_metrics_of(&self, loop_kind: Loop, dataloader: Option<usize>) -> Metrics {
        let mut out = BTreeMap::new();
        let of_dataloader =
            |e: &Entry| dataloader.is_none() || e.dataloader_idx.is_none() || e.dataloader_idx == dataloader;
        for e in self
            .entries
            .iter()
            .filter(|e| e.loop_kind == loop_kind && e.logger && of_dataloader(e))
        {
            if let Some(v) = e.epoch_value {
                let key = if e.forked() { &e.epoch_key } else { &e.name };
                out.insert(key.clone(), v);
            }
        }
        Metrics(out)
    }
}

fn describe_dataloader(idx: Option<usize>) -> String {
    match idx {
        Some(idx) => format!("dataloader {idx}"),
        None => "a loop with one dataloader".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(store: &mut MetricStore, hook: Hook, name: &str, value: f64, options: LogOptions) -> Result<(), Error> {
        let loop_kind = match hook {
            Hook::ValidationStep => Loop::Validation,
            _ => Loop::Train,
        };
        store.log(hook, loop_kind, name, MetricValue::Scalar(value), &options, 1)
    }

    fn metrics(store: &MetricStore) -> Vec<(String, f64)> {
        store.callback_metrics().into_iter().collect()
    }

    #[test]
    fn one_name_in_two_hooks_is_two_entries_with_their_own_options() {
        let mut store = MetricStore::default();
        store.start_epoch(Loop::Train);
        log(&mut store, Hook::TrainingStep, "x", 1.0, LogOptions::new()).unwrap();
        let both = LogOptions::new().on_step(true).on_epoch(true);
        log(&mut store, Hook::OnTrainBatchEnd, "x", 2.0, both.clone()).unwrap();
        assert_eq!(store.entries.len(), 2);
        let error = log(&mut store, Hook::TrainingStep, "x", 3.0, both.clone()).unwrap_err();
        assert!(error.to_string().contains("different options"), "{error}");
        let error = log(
            &mut store,
            Hook::TrainingStep,
            "x",
            3.0,
            LogOptions::new().prog_bar(true),
        )
        .unwrap_err();
        assert!(error.to_string().contains("different options"), "{error}");
        // The latest publication of `x` is the batch-end hook's step value.
        assert_eq!(metrics(&store), [("x".into(), 2.0), ("x_step".into(), 2.0)]);
        log(&mut store, Hook::TrainingStep, "x", 4.0, LogOptions::new()).unwrap();
        assert_eq!(metrics(&store), [("x".into(), 4.0), ("x_step".into(), 2.0)]);
        store.end_epoch(Loop::Train);
        assert_eq!(
            metrics(&store),
            [("x".into(), 2.0), ("x_epoch".into(), 2.0), ("x_step".into(), 2.0)]
        );
    }

    #[test]
    fn the_latest_publication_of_a_shared_key_wins_and_resets_keep_it() {
        let mut store = MetricStore::default();
        store.start_epoch(Loop::Train);
        log(&mut store, Hook::TrainingStep, "loss", 5.0, LogOptions::new()).unwrap();
        store.start_epoch(Loop::Validation);
        log(&mut store, Hook::ValidationStep, "loss", 1.0, LogOptions::new()).unwrap();
        log(&mut store, Hook::ValidationStep, "loss", 3.0, LogOptions::new()).unwrap();
        assert_eq!(
            metrics(&store),
            [("loss".into(), 5.0)],
            "validation publishes at its epoch end"
        );
        store.end_epoch(Loop::Validation);
        assert_eq!(metrics(&store), [("loss".into(), 2.0)]);
        assert_eq!(store.epoch_metrics(Loop::Validation).get("loss"), Some(2.0));
        assert_eq!(store.epoch_metrics(Loop::Train).get("loss"), None);
        store.end_epoch(Loop::Train);
        assert_eq!(
            metrics(&store),
            [("loss".into(), 2.0)],
            "no training epoch value to publish"
        );
        store.start_epoch(Loop::Train);
        log(&mut store, Hook::TrainingStep, "loss", 7.0, LogOptions::new()).unwrap();
        assert_eq!(metrics(&store), [("loss".into(), 7.0)]);
        store.start_epoch(Loop::Validation);
        assert_eq!(store.epoch_metrics(Loop::Validation).get("loss"), None, "reset");
        log(&mut store, Hook::ValidationStep, "loss", 10.0, LogOptions::new()).unwrap();
        store.end_epoch(Loop::Validation);
        assert_eq!(metrics(&store), [("loss".into(), 10.0)], "this run's mean only");
        store.forget(Loop::Validation);
        assert_eq!(metrics(&store), [], "cleared after the sanity check");
        assert_eq!(store.epoch_metrics(Loop::Validation).get("loss"), None);
    }
}
