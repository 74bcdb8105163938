//! Where a metric's state lives, and how the states of devices, replicas and processes merge.
//!
//! A metric's state is a few tensors (torchmetrics' `add_state`), flattened to one dimension,
//! kept on the device that updated them. They sit behind an `Arc` that every clone of the
//! metric shares, as burn's `RunningState` shares its value: the trainer clones the module for
//! the half-precision view of `*-mixed`, forks it for the replicas of data-parallel training
//! and makes an evaluation copy for `validate` and `test`, and each of these updates the one
//! state of the module's metric. Each device that updates a metric accumulates its own states
//! (a replica on another GPU adds into tensors on that GPU: no transfer per step); they are
//! merged, each by its own [`Reduction`], when the value is computed. Processes (MPI ranks)
//! merge the same way, through the host, once per epoch.

use crate::core::distributed::Collectives;
use crate::{Device, JsonValue, Tensor};
use burn::tensor::{FloatDType, Int, TensorData, Transaction};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// How the states of several devices, replicas or processes combine into one (torchmetrics'
/// `dist_reduce_fx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Element-wise sum (counts, sums of errors).
    Sum,
    /// Concatenation, in rank order (the scores and targets AUROC ranks).
    Cat,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
}

/// The element type of a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Counts (burn's `Int` tensors).
    Int,
    /// Values, kept in `f32` (torchmetrics' default dtype).
    Float,
}

/// One state of a metric: its name (the key in checkpoints), element type, reduction, and its
/// number of elements (`Cat` states grow by the batches' rows instead).
#[derive(Clone, Debug)]
pub(crate) struct StateSpec {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) reduction: Reduction,
    pub(crate) len: usize,
}

impl StateSpec {
    /// Counts summed across batches and ranks.
    pub(crate) fn counts(name: &'static str, len: usize) -> Self {
        Self {
            name,
            kind: Kind::Int,
            reduction: Reduction::Sum,
            len,
        }
    }

    /// Float values of `len` elements, combined by `reduction`.
    pub(crate) fn values(name: &'static str, reduction: Reduction, len: usize) -> Self {
        Self {
            name,
            kind: Kind::Float,
            reduction,
            len,
        }
    }

    /// Rows concatenated across batches and ranks.
    pub(crate) fn rows(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            reduction: Reduction::Cat,
            len: 0,
        }
    }

    /// The state before any update: zeros for sums, -inf for maxima, +inf for minima, nothing
    /// for concatenations (torchmetrics' defaults).
    fn initial(&self) -> HostState {
        let len = if self.reduction == Reduction::Cat { 0 } else { self.len };
        match (self.kind, self.reduction) {
            (Kind::Float, Reduction::Max) => HostState::Float(vec![f64::NEG_INFINITY; len]),
            (Kind::Float, Reduction::Min) => HostState::Float(vec![f64::INFINITY; len]),
            (Kind::Float, _) => HostState::Float(vec![0.0; len]),
            (Kind::Int, Reduction::Max) => HostState::Int(vec![i64::MIN; len]),
            (Kind::Int, Reduction::Min) => HostState::Int(vec![i64::MAX; len]),
            (Kind::Int, _) => HostState::Int(vec![0; len]),
        }
    }
}

/// One state on a device.
#[derive(Clone, Debug)]
pub(crate) enum StateTensor {
    Int(Tensor<1, Int>),
    Float(Tensor<1>),
}

impl StateTensor {
    /// Its number of elements (known without reading the device).
    pub(crate) fn len(&self) -> usize {
        match self {
            StateTensor::Int(t) => t.dims()[0],
            StateTensor::Float(t) => t.dims()[0],
        }
    }

    fn device(&self) -> Device {
        match self {
            StateTensor::Int(t) => t.device(),
            StateTensor::Float(t) => t.device(),
        }
    }

    fn moved_to(self, device: &Device) -> Self {
        match self {
            StateTensor::Int(t) => StateTensor::Int(t.to_device(device)),
            StateTensor::Float(t) => StateTensor::Float(t.to_device(device)),
        }
    }

    /// As counts.
    pub(crate) fn int(self) -> Tensor<1, Int> {
        match self {
            StateTensor::Int(t) => t,
            StateTensor::Float(t) => t.int(),
        }
    }

    /// As values of `dtype`.
    pub(crate) fn float(self, dtype: FloatDType) -> Tensor<1> {
        match self {
            StateTensor::Int(t) => t.cast(dtype),
            StateTensor::Float(t) => t.cast(dtype),
        }
    }

    /// `self` and `other` combined element-wise by `reduction` (not `Cat`).
    fn combine(self, other: StateTensor, reduction: Reduction) -> StateTensor {
        match self {
            StateTensor::Int(a) => {
                let b = other.int();
                StateTensor::Int(match reduction {
                    Reduction::Max => a.max_pair(b),
                    Reduction::Min => a.min_pair(b),
                    Reduction::Sum | Reduction::Cat => a + b,
                })
            }
            StateTensor::Float(a) => {
                let b = other.float(FloatDType::F32);
                StateTensor::Float(match reduction {
                    Reduction::Max => a.max_pair(b),
                    Reduction::Min => a.min_pair(b),
                    Reduction::Sum | Reduction::Cat => a + b,
                })
            }
        }
    }

    /// The concatenation of `parts` (of one kind), in order.
    fn cat(parts: Vec<StateTensor>) -> StateTensor {
        if parts.iter().all(|p| matches!(p, StateTensor::Int(_))) {
            StateTensor::Int(Tensor::cat(parts.into_iter().map(StateTensor::int).collect(), 0))
        } else {
            let floats = parts.into_iter().map(|p| p.float(FloatDType::F32)).collect();
            StateTensor::Float(Tensor::cat(floats, 0))
        }
    }
}

/// A state read from the device: what checkpoints hold and processes exchange.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum HostState {
    Int(Vec<i64>),
    Float(Vec<f64>),
}

impl HostState {
    fn len(&self) -> usize {
        match self {
            HostState::Int(v) => v.len(),
            HostState::Float(v) => v.len(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            HostState::Int(_) => Kind::Int,
            HostState::Float(_) => Kind::Float,
        }
    }

    /// On `device`: counts in the device's integer type, values in `f32`.
    fn to_tensor(&self, device: &Device) -> StateTensor {
        match self {
            HostState::Int(v) => StateTensor::Int(Tensor::from_data(TensorData::new(v.clone(), [v.len()]), device)),
            HostState::Float(v) => {
                let values: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                StateTensor::Float(Tensor::from_data(
                    TensorData::new(values, [v.len()]),
                    (device, burn::tensor::DType::F32),
                ))
            }
        }
    }

    /// The values as `f64` (counts are exact below 2^53), for the exchange between processes.
    fn as_f64(&self) -> Vec<f64> {
        match self {
            HostState::Int(v) => v.iter().map(|&x| x as f64).collect(),
            HostState::Float(v) => v.clone(),
        }
    }

    fn from_f64(kind: Kind, values: &[f64]) -> Self {
        match kind {
            Kind::Int => HostState::Int(values.iter().map(|&x| x as i64).collect()),
            Kind::Float => HostState::Float(values.to_vec()),
        }
    }

    /// `self` and `other` combined by `reduction`.
    fn combine(self, other: HostState, reduction: Reduction) -> HostState {
        fn zip<T: Copy>(a: Vec<T>, b: &[T], f: impl Fn(T, T) -> T) -> Vec<T> {
            a.into_iter().zip(b).map(|(x, &y)| f(x, y)).collect()
        }
        match (self, other) {
            (HostState::Int(mut a), HostState::Int(b)) => HostState::Int(match reduction {
                Reduction::Cat => {
                    a.extend(b);
                    a
                }
                Reduction::Sum => zip(a, &b, |x, y| x + y),
                Reduction::Max => zip(a, &b, i64::max),
                Reduction::Min => zip(a, &b, i64::min),
            }),
            (a, b) => {
                let (mut a, b) = (a.as_f64(), b.as_f64());
                HostState::Float(match reduction {
                    Reduction::Cat => {
                        a.extend(b);
                        a
                    }
                    Reduction::Sum => zip(a, &b, |x, y| x + y),
                    Reduction::Max => zip(a, &b, f64::max),
                    Reduction::Min => zip(a, &b, f64::min),
                })
            }
        }
    }

    /// As JSON: counts as integers, values as numbers (`"inf"`, `"-inf"` and `"nan"` as
    /// strings, which JSON's numbers cannot hold).
    fn to_json(&self) -> JsonValue {
        match self {
            HostState::Int(v) => JsonValue::from(v.clone()),
            HostState::Float(v) => JsonValue::Array(
                v.iter()
                    .map(|&x| match x {
                        x if x.is_finite() => JsonValue::from(x),
                        x if x.is_nan() => JsonValue::from("nan"),
                        x if x > 0.0 => JsonValue::from("inf"),
                        _ => JsonValue::from("-inf"),
                    })
                    .collect(),
            ),
        }
    }

    fn from_json(kind: Kind, value: &JsonValue) -> Result<Self, String> {
        let items = value.as_array().ok_or("not a list of values")?;
        match kind {
            Kind::Int => items
                .iter()
                .map(|x| x.as_i64().ok_or_else(|| format!("`{x}` is not a count")))
                .collect::<Result<_, _>>()
                .map(HostState::Int),
            Kind::Float => items
                .iter()
                .map(|x| match x {
                    JsonValue::Number(n) => n.as_f64().ok_or_else(|| format!("`{x}` is not a number")),
                    JsonValue::String(s) if s == "inf" => Ok(f64::INFINITY),
                    JsonValue::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
                    JsonValue::String(s) if s == "nan" => Ok(f64::NAN),
                    _ => Err(format!("`{x}` is not a number")),
                })
                .collect::<Result<_, _>>()
                .map(HostState::Float),
        }
    }
}

/// What one device accumulated of one state.
// A few per metric: boxing the tensor would allocate at every update.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Slot {
    One(StateTensor),
    /// The rows of a `Cat` state, one tensor per batch until they are compacted.
    Parts(Vec<StateTensor>),
}

/// Batches a `Cat` state keeps as separate tensors before concatenating them into one (bounds
/// the handles a long epoch keeps; a device operation, not a read).
const COMPACT_EVERY: usize = 256;

impl Slot {
    fn new(tensor: StateTensor, reduction: Reduction) -> Self {
        match reduction {
            Reduction::Cat => Slot::Parts(vec![tensor]),
            _ => Slot::One(tensor),
        }
    }

    /// `self` with `tensor` (a batch's) added by `reduction`.
    fn absorb(self, tensor: StateTensor, reduction: Reduction) -> Slot {
        match self {
            Slot::Parts(mut parts) => {
                parts.push(tensor);
                if parts.len() >= COMPACT_EVERY {
                    parts = vec![StateTensor::cat(parts)];
                }
                Slot::Parts(parts)
            }
            Slot::One(current) => Slot::One(current.combine(tensor, reduction)),
        }
    }

    /// Its tensors, moved to `device`.
    fn tensors_on(&self, device: &Device) -> Vec<StateTensor> {
        match self {
            Slot::One(t) => vec![t.clone().moved_to(device)],
            Slot::Parts(parts) => parts.iter().map(|t| t.clone().moved_to(device)).collect(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The states each device accumulated since the last reset, in the order the devices first
    /// updated them.
    devices: Vec<(Device, Vec<Slot>)>,
    /// The batch value of the last `forward` (Lightning logs it on step).
    forward: Option<Tensor<1>>,
    /// The first bad input since the last reset, reported when the metric is logged or computed.
    error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    id: u64,
    specs: Vec<StateSpec>,
    inner: Mutex<Inner>,
}

/// Identifies states, so that the trainer can tell whether a metric of the module is one it
/// logged.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The state of one metric, shared by every clone of it.
#[derive(Clone, Debug)]
pub(crate) struct MetricState(Arc<Shared>);

impl MetricState {
    pub(crate) fn new(specs: Vec<StateSpec>) -> Self {
        Self(Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            specs,
            inner: Mutex::new(Inner::default()),
        }))
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held left the state as it was before or after an update:
        // both are states the metric can go on from.
        self.0.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a batch's states (one per spec, in order) into what their device accumulated: a
    /// device operation per state, no read.
    pub(crate) fn add(&self, batch: Vec<StateTensor>) {
        let Some(device) = batch.first().map(StateTensor::device) else {
            return;
        };
        let mut inner = self.lock();
        match inner.devices.iter_mut().find(|(d, _)| *d == device) {
            Some((_, slots)) => {
                for ((slot, tensor), spec) in slots.iter_mut().zip(batch).zip(&self.0.specs) {
                    // An empty list is the placeholder while the slot is taken.
                    let taken = std::mem::replace(slot, Slot::Parts(Vec::new()));
                    *slot = taken.absorb(tensor, spec.reduction);
                }
            }
            None => {
                let slots = batch
                    .into_iter()
                    .zip(&self.0.specs)
                    .map(|(tensor, spec)| Slot::new(tensor, spec.reduction))
                    .collect();
                inner.devices.push((device, slots));
            }
        }
    }

    /// Keeps the batch value of the last `forward`.
    pub(crate) fn set_forward(&self, value: Tensor<1>) {
        self.lock().forward = Some(value);
    }

    /// The batch value of the last `forward` since the last reset.
    pub(crate) fn forward_value(&self) -> Option<Tensor<1>> {
        self.lock().forward.clone()
    }

    /// Records bad input (the first since the last reset is kept).
    pub(crate) fn record_error(&self, message: String) {
        self.lock().error.get_or_insert(message);
    }

    /// The bad input recorded since the last reset.
    pub(crate) fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Forgets everything accumulated (torchmetrics' `reset`).
    pub(crate) fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// The device that updated the state first (where merged states are computed).
    pub(crate) fn device(&self) -> Option<Device> {
        self.lock().devices.first().map(|(device, _)| device.clone())
    }

    /// The states of every device merged on the first one, each by its reduction (device
    /// operations only); `None` before the first update.
    pub(crate) fn merged(&self) -> Option<Vec<StateTensor>> {
        let inner = self.lock();
        let (first, _) = inner.devices.first()?;
        let first = first.clone();
        let merged = self
            .0
            .specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut tensors = inner.devices.iter().flat_map(|(_, slots)| slots[i].tensors_on(&first));
                match spec.reduction {
                    Reduction::Cat => StateTensor::cat(tensors.collect()),
                    reduction => {
                        let head = tensors.next().expect("every device holds every state");
                        tensors.fold(head, |acc, t| acc.combine(t, reduction))
                    }
                }
            })
            .collect();
        Some(merged)
    }

    /// [`merged`](Self::merged), or the initial states on `device` before the first update.
    pub(crate) fn merged_or_initial(&self, device: &Device) -> Vec<StateTensor> {
        self.merged().unwrap_or_else(|| {
            self.0
                .specs
                .iter()
                .map(|spec| spec.initial().to_tensor(device))
                .collect()
        })
    }

    /// The merged states read from the device in one transaction (the initial states before
    /// the first update).
    pub(crate) fn read(&self) -> Result<Vec<HostState>, String> {
        match self.merged() {
            Some(tensors) => read_states(tensors),
            None => Ok(self.0.specs.iter().map(StateSpec::initial).collect()),
        }
    }

    /// Replaces the accumulated states by `states` (one per spec), on `device`.
    pub(crate) fn load(&self, states: &[HostState], device: &Device) -> Result<(), String> {
        check_shapes(&self.0.specs, states)?;
        let mut inner = self.lock();
        *inner = Inner::default();
        if states.iter().zip(&self.0.specs).all(|(s, spec)| *s == spec.initial()) {
            // Nothing was accumulated: the state stays empty (no tensors of zero rows).
            return Ok(());
        }
        let slots = states
            .iter()
            .zip(&self.0.specs)
            .map(|(state, spec)| Slot::new(state.to_tensor(device), spec.reduction))
            .collect();
        inner.devices.push((device.clone(), slots));
        Ok(())
    }

    /// Every process's states (merged over its devices), in rank order: the states of this
    /// process are read and exchanged with one all-gather (every process must call this, in
    /// the same order), for a checkpoint or for the epoch's value.
    pub(crate) fn gathered(
        &self,
        group: &dyn Collectives,
        for_checkpoint: bool,
    ) -> Result<Vec<Vec<HostState>>, String> {
        let local = self.read()?;
        let mut buffer = Vec::new();
        for state in &local {
            buffer.push(state.len() as f64);
            buffer.extend(state.as_f64());
        }
        let gathered = match for_checkpoint {
            true => group.all_gather_for_checkpoint(&buffer),
            false => group.all_gather(&buffer),
        }
        .map_err(|e| format!("cannot merge its state across processes: {e}"))?;
        gathered
            .iter()
            .enumerate()
            .map(|(rank, buffer)| {
                unpack(&self.0.specs, buffer).map_err(|why| format!("rank {rank} sent a state that {why}"))
            })
            .collect()
    }

    /// `per_rank`'s states merged, each by its reduction (the initial states when empty).
    pub(crate) fn merge(&self, per_rank: Vec<Vec<HostState>>) -> Vec<HostState> {
        let mut merged: Option<Vec<HostState>> = None;
        for states in per_rank {
            merged = Some(match merged {
                None => states,
                Some(merged) => merged
                    .into_iter()
                    .zip(states)
                    .zip(&self.0.specs)
                    .map(|((a, b), spec)| a.combine(b, spec.reduction))
                    .collect(),
            });
        }
        merged.unwrap_or_else(|| self.0.specs.iter().map(StateSpec::initial).collect())
    }

    /// Whether `states` are the states before any update.
    pub(crate) fn is_initial(&self, states: &[HostState]) -> bool {
        states.len() == self.0.specs.len() && states.iter().zip(&self.0.specs).all(|(s, spec)| *s == spec.initial())
    }

    /// Every process's states merged, each by its reduction, then placed on `device` (one
    /// all-gather: every process must call this, in the same order). Returns `None` when no
    /// process updated the metric.
    pub(crate) fn merged_across(
        &self,
        group: &dyn Collectives,
        device: &Device,
    ) -> Result<Option<Vec<StateTensor>>, String> {
        let merged = self.merge(self.gathered(group, false)?);
        if self.is_initial(&merged) {
            return Ok(None);
        }
        Ok(Some(merged.iter().map(|state| state.to_tensor(device)).collect()))
    }

    /// Registers this state with the search of [`metrics_of`], when one runs on this thread.
    pub(crate) fn announce(&self) {
        ANNOUNCED.with(|announced| {
            if let Some(list) = announced.borrow_mut().as_mut() {
                list.push(self.clone());
            }
        });
    }

    /// The merged states as tensor handles, to read later (a checkpoint's snapshot: burn's
    /// tensors are values, so later updates do not change it); `None` when empty.
    pub(crate) fn snapshot(&self) -> Option<StateSnapshot> {
        self.merged().map(|tensors| StateSnapshot {
            names: self.0.specs.iter().map(|spec| spec.name).collect(),
            tensors,
        })
    }

    /// `states` as a checkpoint holds them: `{"tp": [..], ...}`.
    pub(crate) fn states_json(&self, states: &[HostState]) -> JsonValue {
        JsonValue::Object(
            self.0
                .specs
                .iter()
                .zip(states)
                .map(|(spec, state)| (spec.name.to_string(), state.to_json()))
                .collect(),
        )
    }

    /// Loads the states a checkpoint saved (`{"tp": [..], ...}`) onto `device`.
    pub(crate) fn load_json(&self, value: &JsonValue, device: &Device) -> Result<(), String> {
        let object = value.as_object().ok_or("its saved state is not a map of states")?;
        let mut states = Vec::with_capacity(self.0.specs.len());
        for spec in &self.0.specs {
            let saved = object
                .get(spec.name)
                .ok_or_else(|| format!("its saved state has no `{}`", spec.name))?;
            states.push(HostState::from_json(spec.kind, saved).map_err(|why| format!("`{}`: {why}", spec.name))?);
        }
        if let Some(unknown) = object
            .keys()
            .find(|k| self.0.specs.iter().all(|s| s.name != k.as_str()))
        {
            return Err(format!(
                "its saved state has `{unknown}`, which this metric does not keep"
            ));
        }
        self.load(&states, device)
    }
}

/// The tensors of a state, kept to be read and saved later.
#[derive(Clone, Debug)]
pub(crate) struct StateSnapshot {
    names: Vec<&'static str>,
    tensors: Vec<StateTensor>,
}

impl StateSnapshot {
    /// Reads the tensors (one transaction) into `{"name": [values], ...}`.
    pub(crate) fn to_json(&self) -> Result<JsonValue, String> {
        let states = read_states(self.tensors.clone())?;
        Ok(JsonValue::Object(
            self.names
                .iter()
                .zip(&states)
                .map(|(name, state)| (name.to_string(), state.to_json()))
                .collect(),
        ))
    }
}

/// Reads `tensors` from their device in one transaction.
fn read_states(tensors: Vec<StateTensor>) -> Result<Vec<HostState>, String> {
    let kinds: Vec<Kind> = tensors
        .iter()
        .map(|t| match t {
            StateTensor::Int(_) => Kind::Int,
            StateTensor::Float(_) => Kind::Float,
        })
        .collect();
    let transaction = tensors.into_iter().fold(Transaction::default(), |tx, t| match t {
        StateTensor::Int(t) => tx.register(t),
        StateTensor::Float(t) => tx.register(t),
    });
    let data = transaction
        .try_execute()
        .map_err(|e| format!("cannot read its state from the device: {e:?}"))?;
    data.into_iter()
        .zip(kinds)
        .map(|(data, kind)| match kind {
            Kind::Int => data
                .try_into_vec_as::<i64>()
                .map(HostState::Int)
                .map_err(|e| format!("cannot read its counts: {e:?}")),
            Kind::Float => data
                .try_into_vec_as::<f64>()
                .map(HostState::Float)
                .map_err(|e| format!("cannot read its values: {e:?}")),
        })
        .collect()
}

/// Checks that `states` fit `specs`: as many, of the same kinds and lengths.
fn check_shapes(specs: &[StateSpec], states: &[HostState]) -> Result<(), String> {
    if states.len() != specs.len() {
        return Err(format!("{} states were given for its {}", states.len(), specs.len()));
    }
    for (state, spec) in states.iter().zip(specs) {
        if state.kind() != spec.kind {
            return Err(format!(
                "`{}` holds {:?} values, not {:?}",
                spec.name,
                state.kind(),
                spec.kind
            ));
        }
        if spec.reduction != Reduction::Cat && state.len() != spec.len {
            return Err(format!(
                "`{}` holds {} values where this metric keeps {} (another number of classes?)",
                spec.name,
                state.len(),
                spec.len
            ));
        }
    }
    Ok(())
}

/// The states a process sent: for each state its length, then its values.
fn unpack(specs: &[StateSpec], buffer: &[f64]) -> Result<Vec<HostState>, String> {
    let mut rest = buffer;
    let mut states = Vec::with_capacity(specs.len());
    for spec in specs {
        let (&len, tail) = rest.split_first().ok_or("ends early")?;
        let len = len as usize;
        if tail.len() < len {
            return Err("ends early".into());
        }
        states.push(HostState::from_f64(spec.kind, &tail[..len]));
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err("is longer than this metric's".into());
    }
    check_shapes(specs, &states)?;
    Ok(states)
}

thread_local! {
    /// The metrics whose `visit` ran while [`metrics_of`] searches a module on this thread.
    static ANNOUNCED: RefCell<Option<Vec<MetricState>>> = const { RefCell::new(None) };
}

/// Every metric object in `module` with its path (`val_acc`, `val_metrics.acc`), in the
/// module's order, each state once. Found by visiting the module: a metric's `visit`
/// announces its state, and the visitor names it by the fields it entered.
pub(crate) fn metrics_of<M: burn::module::Module>(module: &M) -> Vec<(String, MetricState)> {
    struct Finder {
        path: Vec<String>,
        found: Vec<(String, MetricState)>,
    }
    impl Finder {
        /// Names the states announced since the last call by the current path.
        fn collect(&mut self) {
            let announced = ANNOUNCED.with(|a| a.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
            for state in announced {
                if self.found.iter().all(|(_, s)| s.id() != state.id()) {
                    self.found.push((self.path.join("."), state));
                }
            }
        }
    }
    impl burn::module::ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.collect();
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.collect();
            self.path.pop();
        }
    }
    /// Stops the search on this thread, also when `visit` panics.
    struct Searching;
    impl Drop for Searching {
        fn drop(&mut self) {
            ANNOUNCED.with(|a| *a.borrow_mut() = None);
        }
    }
    ANNOUNCED.with(|a| *a.borrow_mut() = Some(Vec::new()));
    let _searching = Searching;
    let mut finder = Finder {
        path: Vec::new(),
        found: Vec::new(),
    };
    module.visit(&mut finder);
    finder.collect();
    finder.found
}

/// The float dtype values are computed in on `device`: `f64` where the backend has it (exact
/// ratios of large counts), else `f32` (torchmetrics' own).
pub(crate) fn compute_dtype(device: &Device) -> FloatDType {
    if device.supports_dtype(FloatDType::F64) {
        FloatDType::F64
    } else {
        FloatDType::F32
    }
}
