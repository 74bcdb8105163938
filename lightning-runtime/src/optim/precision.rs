//! The `precision` flag: Lightning's `32-true` (default), `64-true`, `16-true`, `bf16-true`,
//! `16-mixed` and `bf16-mixed`, mapped onto what burn 0.22 offers (explicit casts; burn has no
//! autocast).
//!
//! - **`*-true`**: the module's float parameters are cast to the dtype when a run starts (and stay
//!   so: the module `fit` returns, and the checkpoints, hold them in that dtype, as Lightning's).
//!   The optimizer's state is in that dtype too.
//! - **`*-mixed`**: the module keeps its `f32` weights (the "master" weights the optimizer
//!   updates, that checkpoints save). For each `training_step` the trainer hands the step a view of
//!   the module whose weights are cast to the half dtype inside the autodiff graph, so the forward
//!   and backward run in half precision while the gradients reach the `f32` weights as `f32`.
//!   Validation, test and predict run on the `f32` weights (Lightning runs them under autocast; here
//!   they are exact, on purpose). With `16-mixed`, the loss is scaled before backward and the
//!   gradients unscaled before `on_before_optimizer_step`, as torch's `GradScaler` does (initial scale
//!   65536, doubled after 2000 steps without an inf/NaN gradient, halved and the optimizer step skipped
//!   on one). As in Lightning, a skipped step still counts in `global_step`, and the schedulers skip
//!   their next step; `on_before_backward` sees the scaled loss, `on_after_backward` the scaled
//!   gradients.
//!
//! **Batches.** The batch is your type, so the trainer cannot cast it for you as Lightning's
//! `convert_input` does: cast its float tensors with [`StepContext::cast_input`](crate::StepContext::cast_input) in your steps
//! (it knows the dtype the module computes in, in this hook, and does nothing under `32-true`).
//! Implement [`CastFloats`] for your batch (tensors, tuples, `Vec`, `Option` and arrays have it):
//!
//! ```ignore
//! impl CastFloats for MnistBatch {
//!     fn cast_floats(self, dtype: FloatDType) -> Self {
//!         Self { images: self.images.cast_floats(dtype), ..self }
//!     }
//! }
//! // in training_step / validation_step:
//! let batch = cx.cast_input(batch);
//! ```
//!
//! Tensors you create inside `forward` are `f32` (burn's default): cast them with
//! `.cast(x.dtype())`. A loss computed from half-precision logits is computed in half precision;
//! `logits.cast(FloatDType::F32)` first computes it in `f32`, as torch's autocast does for
//! cross-entropy.

use crate::core::checkpoint_data::LossScalerState;
use crate::optim::Gradients;
use crate::{Device, Error, Tensor};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, FloatDType, Int};
use std::fmt;
use std::str::FromStr;

/// Lightning's precision values. [`Precision::F32True`] is the default.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum Precision {
    /// `"64-true"` (also `64`, `"64"`): everything in `f64`.
    F64True,
    /// `"32-true"` (also `32`, `"32"`): everything in `f32`; the default, which casts nothing.
    #[default]
    F32True,
    /// `"16-true"`: weights, optimizer state, activations and gradients in `f16`.
    F16True,
    /// `"bf16-true"`: weights, optimizer state, activations and gradients in `bf16`.
    Bf16True,
    /// `"16-mixed"` (also `16`, `"16"`): `f32` weights, forward and backward in `f16`, dynamic
    /// loss scaling.
    F16Mixed,
    /// `"bf16-mixed"` (also `"bf16"`): `f32` weights, forward and backward in `bf16`.
    Bf16Mixed,
}

impl Precision {
    /// Every value, in Lightning's order of its documentation.
    pub const ALL: [Precision; 6] = [
        Precision::F64True,
        Precision::F32True,
        Precision::F16True,
        Precision::Bf16True,
        Precision::F16Mixed,
        Precision::Bf16Mixed,
    ];

    /// Lightning's name of the value (`"bf16-mixed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F64True => "64-true",
            Precision::F32True => "32-true",
            Precision::F16True => "16-true",
            Precision::Bf16True => "bf16-true",
            Precision::F16Mixed => "16-mixed",
            Precision::Bf16Mixed => "bf16-mixed",
        }
    }

    /// The dtype the module's parameters are kept in (`f32` under mixed precision).
    pub fn param_dtype(self) -> FloatDType {
        match self {
            Precision::F64True => FloatDType::F64,
            Precision::F32True | Precision::F16Mixed | Precision::Bf16Mixed => FloatDType::F32,
            Precision::F16True => FloatDType::F16,
            Precision::Bf16True => FloatDType::BF16,
        }
    }

    /// The dtype `training_step` computes in.
    pub fn compute_dtype(self) -> FloatDType {
        match self {
            Precision::F16Mixed => FloatDType::F16,
            Precision::Bf16Mixed => FloatDType::BF16,
            other => other.param_dtype(),
        }
    }

    /// Whether the weights stay `f32` while the training step computes in half precision.
    pub fn is_mixed(self) -> bool {
        matches!(self, Precision::F16Mixed | Precision::Bf16Mixed)
    }

    /// Whether the values of this precision work on `device`'s backend (its tensors can be of
    /// the dtypes it needs).
    pub fn is_supported_on(self, device: &Device) -> bool {
        self.is_supported_by(|dtype| device.supports_dtype(dtype))
    }

    fn is_supported_by(self, supports: impl Fn(FloatDType) -> bool) -> bool {
        self == Precision::F32True || supports(self.compute_dtype())
    }

    /// The precisions `device`'s backend can run.
    pub fn supported_on(device: &Device) -> Vec<Precision> {
        Self::ALL.into_iter().filter(|p| p.is_supported_on(device)).collect()
    }

    /// A configuration error of `build()` when the backend of `device` cannot run this precision.
    pub(crate) fn check(self, device: &Device) -> Result<(), Error> {
        self.check_with(&backend_name(device), |dtype| device.supports_dtype(dtype))
    }

    fn check_with(self, backend: &str, supports: impl Fn(FloatDType) -> bool) -> Result<(), Error> {
        if self.is_supported_by(&supports) {
            return Ok(());
        }
        let supported: Vec<&str> = Self::ALL
            .into_iter()
            .filter(|p| p.is_supported_by(&supports))
            .map(Precision::as_str)
            .collect();
        Err(Error::config(
            "precision",
            format!(
                "`{self}` needs {:?} tensors, which the {backend} backend does not support; it supports: {}",
                self.compute_dtype(),
                supported.join(", ")
            ),
        ))
    }
}

/// The backend of a device, for messages: `Flex(Cpu)`.
fn backend_name(device: &Device) -> String {
    let text = format!("{:?}", device.clone().without_autodiff());
    text.strip_prefix("Device<")
        .and_then(|rest| rest.strip_suffix('>'))
        .map_or(text.clone(), str::to_string)
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of Lightning's precision values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPrecision(pub String);

impl fmt::Display for UnknownPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<&str> = Precision::ALL.iter().map(|p| p.as_str()).collect();
        write!(
            f,
            "`{}` is not a precision; use one of {} (or Lightning's aliases 64, 32, 16, \"bf16\")",
            self.0,
            valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownPrecision {}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    /// Lightning's values and its aliases (`_PRECISION_INPUT`): `"64"` is `64-true`, `"32"` is
    /// `32-true`, `"16"` is `16-mixed`, `"bf16"` is `bf16-mixed`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.trim() {
            "64-true" | "64" => Precision::F64True,
            "32-true" | "32" => Precision::F32True,
            "16-true" => Precision::F16True,
            "bf16-true" => Precision::Bf16True,
            "16-mixed" | "16" => Precision::F16Mixed,
            "bf16-mixed" | "bf16" => Precision::Bf16Mixed,
            _ => return Err(UnknownPrecision(text.to_string())),
        })
    }
}

/// What the `precision` flag takes: a [`Precision`], one of Lightning's strings, or its integer
/// aliases `64`, `32`, `16`. A string or number that is not a precision is an error of `build()`.
#[derive(Clone, Debug, PartialEq)]
pub enum PrecisionChoice {
    /// A typed value.
    Value(Precision),
    /// A string, checked by `build()`.
    Text(String),
}

impl PrecisionChoice {
    /// As written in a config file: the precision's name, or the text as given.
    pub(crate) fn into_text(self) -> String {
        match self {
            PrecisionChoice::Value(precision) => precision.as_str().to_string(),
            PrecisionChoice::Text(text) => text,
        }
    }

    /// The precision, or the configuration error naming the valid values.
    pub(crate) fn resolve(self) -> Result<Precision, Error> {
        match self {
            PrecisionChoice::Value(precision) => Ok(precision),
            PrecisionChoice::Text(text) => text
                .parse()
                .map_err(|e: UnknownPrecision| Error::config("precision", e.to_string())),
        }
    }
}

impl Default for PrecisionChoice {
    fn default() -> Self {
        PrecisionChoice::Value(Precision::default())
    }
}

impl From<Precision> for PrecisionChoice {
    fn from(precision: Precision) -> Self {
        PrecisionChoice::Value(precision)
    }
}

impl From<&str> for PrecisionChoice {
    fn from(text: &str) -> Self {
        PrecisionChoice::Text(text.to_string())
    }
}

impl From<String> for PrecisionChoice {
    fn from(text: String) -> Self {
        PrecisionChoice::Text(text)
    }
}

impl From<i32> for PrecisionChoice {
    fn from(bits: i32) -> Self {
        PrecisionChoice::Text(bits.to_string())
    }
}

/// Values whose float tensors can be cast to another float dtype; other tensors (`Int`, `Bool`)
/// and other data stay as they are (Lightning's `_convert_fp_tensor`). Implement it for your batch
/// type to use [`StepContext::cast_input`](crate::StepContext::cast_input).
pub trait CastFloats: Sized {
    /// This value with its float tensors in `dtype`.
    #[must_use]
    fn cast_floats(self, dtype: FloatDType) -> Self;

    /// This value with its float tensors in the dtype of `module`'s parameters (unchanged when
    /// it has none): for hooks without a [`StepContext`](crate::StepContext), such as `predict_step`.
    #[must_use]
    fn cast_floats_like<M: Module>(self, module: &M) -> Self {
        match module_dtype(module) {
            Some(dtype) => self.cast_floats(dtype),
            None => self,
        }
    }
}

impl<const D: usize> CastFloats for Tensor<D> {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        self.cast(dtype)
    }
}

impl<const D: usize> CastFloats for Tensor<D, Int> {
    fn cast_floats(self, _dtype: FloatDType) -> Self {
        self
    }
}

impl<const D: usize> CastFloats for Tensor<D, Bool> {
    fn cast_floats(self, _dtype: FloatDType) -> Self {
        self
    }
}

impl CastFloats for () {
    fn cast_floats(self, _dtype: FloatDType) -> Self {}
}

impl<T: CastFloats> CastFloats for Option<T> {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        self.map(|value| value.cast_floats(dtype))
    }
}

impl<T: CastFloats> CastFloats for Vec<T> {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        self.into_iter().map(|value| value.cast_floats(dtype)).collect()
    }
}

impl<T: CastFloats, const N: usize> CastFloats for [T; N] {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        self.map(|value| value.cast_floats(dtype))
    }
}

impl<T: CastFloats> CastFloats for Box<T> {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        Box::new((*self).cast_floats(dtype))
    }
}

macro_rules! cast_tuples {
    ($(($($name:ident),+)),*) => {$(
        impl<$($name: CastFloats),+> CastFloats for ($($name,)+) {
            #[allow(non_snake_case)]
            fn cast_floats(self, dtype: FloatDType) -> Self {
                let ($($name,)+) = self;
                ($($name.cast_floats(dtype),)+)
            }
        }
    )*};
}

cast_tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F)
);

/// torch's `GradScaler` defaults.
const INIT_SCALE: f64 = 65536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
pub(crate) const GROWTH_INTERVAL: usize = 2000;

/// torch's `GradScaler` (dynamic loss scaling of `16-mixed`).
#[derive(Clone, Debug)]
pub(crate) struct GradScaler {
    scale: f64,
    growth_interval: usize,
    /// Optimizer steps without an inf/NaN gradient since the scale last changed.
    growth_tracker: usize,
    /// Whether the gradients unscaled for the current step hold an inf or a NaN; `None` until
    /// they are unscaled.
    found_inf: Option<bool>,
}

impl GradScaler {
    pub(crate) fn new(growth_interval: usize) -> Self {
        Self {
            scale: INIT_SCALE,
            growth_interval,
            growth_tracker: 0,
            found_inf: None,
        }
    }

    /// torch's `GradScaler.update`: halves the scale after a step with inf/NaN gradients, doubles
    /// it after `growth_interval` steps without.
    fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= BACKOFF_FACTOR;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == self.growth_interval {
                self.scale *= GROWTH_FACTOR;
                self.growth_tracker = 0;
            }
        }
    }
}

/// The precision of a run, as the optimization reads it at each step.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrecisionState {
    pub(crate) precision: Precision,
    /// The dtype the module computes in right now, when it is not `f32`: what
    /// [`StepContext::cast_input`](crate::StepContext::cast_input) casts to.
    pub(crate) compute: Option<FloatDType>,
    /// The loss scaler of `16-mixed`.
    pub(crate) scaler: Option<GradScaler>,
    /// Whether `16-mixed` skipped the last optimizer step (Lightning then skips the schedulers'
    /// next step).
    last_step_skipped: bool,
}

impl PrecisionState {
    /// With torch's `growth_interval` set (tests use a short one).
    pub(crate) fn with_growth_interval(precision: Precision, growth_interval: usize) -> Self {
        let compute = match precision {
            Precision::F32True | Precision::F16Mixed | Precision::Bf16Mixed => None,
            true_precision => Some(true_precision.param_dtype()),
        };
        Self {
            precision,
            compute,
            scaler: (precision == Precision::F16Mixed).then(|| GradScaler::new(growth_interval)),
            last_step_skipped: false,
        }
    }

    /// The current loss scale of `16-mixed`.
    pub(crate) fn loss_scale(&self) -> Option<f64> {
        self.scaler.as_ref().map(|scaler| scaler.scale)
    }

    /// Under `16-mixed`, the loss backward sees: in `f32` (a half loss times 65536 overflows),
    /// times the scale.
    pub(crate) fn scale_loss(&self, loss: Tensor<1>) -> Tensor<1> {
        match &self.scaler {
            None => loss,
            Some(scaler) => loss.cast(FloatDType::F32).mul_scalar(scaler.scale),
        }
    }

    /// Under `16-mixed`, divides the gradients by the scale and notes whether one is inf or NaN
    /// (one read of the device per optimizer step, as torch's `GradScaler.step`).
    pub(crate) fn unscale<M: Module>(&mut self, module: &M, grads: &mut Gradients) {
        let Some(scaler) = &mut self.scaler else { return };
        if grads.is_empty() {
            return;
        }
        grads.scale(module, 1.0 / scaler.scale);
        let mut probe = NonFinite { grads, total: None };
        module.visit(&mut probe);
        // `x * 0` is 0 for a finite `x`, NaN for an inf or a NaN: the sum is 0 or NaN.
        let found_inf = probe.total.is_some_and(|total| !total.into_scalar::<f64>().is_finite());
        scaler.found_inf = Some(found_inf);
    }

    /// Whether the optimizer step must be skipped: its gradients hold an inf or a NaN.
    pub(crate) fn skips_step(&self) -> bool {
        self.scaler
            .as_ref()
            .is_some_and(|scaler| scaler.found_inf == Some(true))
    }

    /// After an optimizer step: updates the loss scale from what `unscale` found (torch's
    /// `GradScaler.update`).
    pub(crate) fn finish_step(&mut self) {
        let Some(scaler) = &mut self.scaler else { return };
        // Nothing was unscaled (no loss, so no backward): Lightning neither steps nor updates.
        let found_inf = scaler.found_inf.take();
        self.last_step_skipped = found_inf == Some(true);
        if let Some(found_inf) = found_inf {
            scaler.update(found_inf);
            if found_inf {
                tracing::debug!(target: "burn_lightning", scale = scaler.scale, "16-mixed: inf/NaN gradients, optimizer step skipped, loss scale halved");
            }
        }
    }

    /// Whether `16-mixed` skipped the last optimizer step: the schedulers skip their next step.
    pub(crate) fn skipped_last_step(&self) -> bool {
        self.last_step_skipped
    }

    /// The loss scaler's state, for a checkpoint.
    pub(crate) fn scaler_state(&self) -> Option<LossScalerState> {
        self.scaler.as_ref().map(|scaler| LossScalerState {
            scale: scaler.scale,
            growth_tracker: scaler.growth_tracker,
        })
    }

    /// Takes the loss scaler's state from a checkpoint (a checkpoint without one, or a run in
    /// another precision, keeps the scaler as it is: torch's initial scale).
    pub(crate) fn restore_scaler(&mut self, saved: Option<LossScalerState>) {
        if let (Some(scaler), Some(saved)) = (&mut self.scaler, saved) {
            scaler.scale = saved.scale;
            scaler.growth_tracker = saved.growth_tracker;
        }
    }
}

/// Under `*-mixed`: a view of `module` whose float parameters are cast to the half dtype inside
/// the autodiff graph, for `training_step`; the gradients of its forward reach the `f32`
/// parameters of `module`. Sets the compute dtype until [`end_view`].
pub(crate) fn mixed_view<M: Module>(state: &mut PrecisionState, module: &M) -> Option<M> {
    if !state.precision.is_mixed() {
        return None;
    }
    let dtype = state.precision.compute_dtype();
    state.compute = Some(dtype);
    Some(module.clone().map(&mut TrackedCast(dtype)))
}

/// Ends a view of [`mixed_view`]: the module computes in `f32` again.
pub(crate) fn end_view(state: &mut PrecisionState) {
    if state.precision.is_mixed() {
        state.compute = None;
    }
}

/// Under `*-true`, `module` with its float parameters in the precision's dtype (new leaves, so
/// the optimizer updates them in that dtype); otherwise `module` unchanged.
pub(crate) fn convert_module<M: Module>(precision: Precision, module: M) -> M {
    match precision {
        Precision::F32True | Precision::F16Mixed | Precision::Bf16Mixed => module,
        true_precision => cast_module(module, true_precision.param_dtype()),
    }
}

/// `module` with every float parameter cast to `dtype`, keeping whether it requires a gradient.
pub fn cast_module<M: Module>(module: M, dtype: FloatDType) -> M {
    module.map(&mut LeafCast(dtype))
}

/// Casts parameters into new leaves of the autodiff graph.
struct LeafCast(FloatDType);

impl ModuleMapper for LeafCast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| {
            if tensor.dtype() == dtype.into() {
                return tensor;
            }
            let require_grad = tensor.is_require_grad();
            let autodiff = tensor.is_autodiff();
            // Cast outside autodiff: a cast inside it would be a node, not a leaf.
            let cast = tensor.without_autodiff().cast(dtype);
            let cast = if autodiff { cast.autodiff() } else { cast };
            if require_grad { cast.require_grad() } else { cast }
        })
    }
}

/// Casts parameters inside the autodiff graph (their gradient flows back to the originals).
struct TrackedCast(FloatDType);

impl ModuleMapper for TrackedCast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| tensor.cast(dtype))
    }
}

/// Sums `grad * 0` over the parameters: 0 when every gradient is finite, NaN otherwise.
struct NonFinite<'a> {
    grads: &'a Gradients,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for NonFinite<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let zero_or_nan = grad.cast(FloatDType::F32).mul_scalar(0.0).sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + zero_or_nan,
                None => zero_or_nan,
            });
        }
    }
}

/// The float dtype of a module's parameters (of the first one), if it has any: what a checkpoint
/// of it holds.
pub fn module_dtype<M: Module>(module: &M) -> Option<FloatDType> {
    struct First(Option<FloatDType>);
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0.is_none() {
                self.0 = Some(param.val().dtype().into());
            }
        }
    }
    let mut first = First(None);
    module.visit(&mut first);
    first.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightning_strings_and_aliases_parse() {
        for precision in Precision::ALL {
            assert_eq!(precision.as_str().parse(), Ok(precision));
        }
        assert_eq!("16".parse(), Ok(Precision::F16Mixed));
        assert_eq!("bf16".parse(), Ok(Precision::Bf16Mixed));
        assert_eq!("64".parse(), Ok(Precision::F64True));
        assert_eq!(PrecisionChoice::from(32).resolve().unwrap(), Precision::F32True);
        let error = PrecisionChoice::from("fp16").resolve().unwrap_err().to_string();
        assert!(error.contains("precision") && error.contains("`fp16`"), "{error}");
        assert!(error.contains("bf16-mixed") && error.contains("64-true"), "{error}");
    }

    #[test]
    fn a_precision_the_backend_cannot_run_is_an_error_naming_it_and_what_it_supports() {
        // A backend without f64, as wgpu on Metal.
        let no_f64 = |dtype: FloatDType| dtype != FloatDType::F64;
        let error = Precision::F64True
            .check_with("Wgpu(Metal)", no_f64)
            .unwrap_err()
            .to_string();
        assert!(error.contains("precision") && error.contains("`64-true`"), "{error}");
        assert!(error.contains("Wgpu(Metal) backend"), "{error}");
        assert!(
            error.contains("supports: 32-true, 16-true, bf16-true, 16-mixed, bf16-mixed"),
            "{error}"
        );
        assert!(Precision::Bf16Mixed.check_with("Wgpu", no_f64).is_ok());
        // 32-true runs everywhere.
        assert!(Precision::F32True.check_with("Anything", |_| false).is_ok());
        assert_eq!(backend_name(&Device::flex().autodiff()), "Flex(Cpu)");
    }

    #[test]
    fn the_scaler_halves_on_inf_and_grows_after_the_interval() {
        let mut scaler = GradScaler::new(3);
        scaler.update(true);
        assert_eq!(scaler.scale, 32768.0);
        scaler.update(false);
        scaler.update(false);
        assert_eq!(scaler.scale, 32768.0);
        scaler.update(false);
        assert_eq!(scaler.scale, 65536.0);
        // An inf restarts the count.
        scaler.update(false);
        scaler.update(true);
        scaler.update(false);
        scaler.update(false);
        assert_eq!(scaler.scale, 32768.0);
    }
}
