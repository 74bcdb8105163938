//! The trait and hook layer: [`LightningModule`] and [`Callback`], the capability markers
//! (`TrainingStep`, `ManualOptimization`, ...) and the `dispatch` functions, generated from the
//! hook table of `burn-lightning-macros` (the same table `#[lightning_module]` checks against);
//! the contexts hooks receive ([`context`]); the optimizer closure ([`closure`]); the small types
//! hooks exchange with the trainer; and the helpers of the code `#[lightning_module]` generates
//! ([`diagnostics`]).
//!
//! Uses `core` and `optim` (the hook signatures name optimizers, schedulers and gradients).
//! Everything that runs hooks (loops, callbacks, checkpoints, the trainer) is above it.

pub mod closure;
pub mod context;
#[doc(hidden)]
pub mod diagnostics;
pub(crate) mod manual;

pub use crate::core::hook_list::{CallbackRole, Hook, HookOwner, HookSet, LogScope, Optimization};

#[allow(unused_imports)] // Names the generated signatures use.
use crate::{
    Checkpoint, Device, EpochContext, Error, GradientClip, Gradients, HookContext, Loader, Optimizer, OptimizerClosure,
    OptimizerConfig, Scheduler, Stage, StepContext, Tensor,
};

burn_lightning_macros::__runtime_items!();

/// The callbacks a trainer runs, in order.
pub type Callbacks<M> = Vec<Box<dyn Callback<M>>>;

/// What a `#[hparam]` field's type must implement: the trainer writes hyperparameters to
/// `hparams.yaml` and into checkpoints, and reads them back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a hyperparameter: `#[hparam]` fields are saved to `hparams.yaml` and checkpoints",
    label = "the type of this `#[hparam]` field",
    note = "derive what hyperparameters need on the type: `#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]`",
    note = "your crate needs `serde` with its `derive` feature: `serde = {{ version = \"1\", features = [\"derive\"] }}` in Cargo.toml"
)]
pub trait HparamValue: serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug {}

// `do_not_recommend`: rustc reports the type as not a `HparamValue`, once, with the message
// above, rather than once per missing trait.
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug> HparamValue for T {}

/// Hyperparameters of a module: written by `#[lightning_module]` from its `#[hparam]` fields.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is missing `#[lightning_module]` on its struct definition",
    label = "`#[lightning_module]` on the impl block needs it on the struct too",
    note = "put `#[lightning_module]` above `#[derive(Module)]` on `struct {Self}`"
)]
pub trait HasHparams {
    /// The generated `<Name>Hparams` struct.
    type Hparams: serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug;
    /// The module's current hyperparameters.
    fn hparams(&self) -> Self::Hparams;

    /// Every `#[hparam]` field: name, type, doc comment and default (as JSON), in declaration
    /// order. [`LightningCli`](crate::cli::LightningCli) turns them into `--model.<name>`
    /// options.
    fn hparam_infos() -> Vec<HparamInfo>
    where
        Self: Sized,
    {
        Vec::new()
    }
}

/// One `#[hparam]` field, as `#[lightning_module]` describes it (see
/// [`HasHparams::hparam_infos`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HparamInfo {
    /// The field's name: the YAML key under `model:` and the `--model.<name>` option.
    pub name: &'static str,
    /// Its type, as written.
    pub ty: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
    /// Its default, serialized; `None` for a required hyperparameter.
    pub default: Option<serde_json::Value>,
}

/// What `on_train_batch_start` decides.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum BatchControl {
    /// Train on this batch.
    #[default]
    Continue,
    /// Skip this batch and the rest of the epoch (Lightning's `return -1`).
    StopEpoch,
}

/// What `on_train_batch_start` may return: `()` or a [`BatchControl`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from `on_train_batch_start`",
    label = "return `()` or a `BatchControl`",
    note = "`BatchControl::StopEpoch` ends the epoch, like Lightning's `return -1`"
)]
pub trait IntoBatchControl {
    fn into_batch_control(self) -> BatchControl;
}

impl IntoBatchControl for () {
    fn into_batch_control(self) -> BatchControl {
        BatchControl::Continue
    }
}

impl IntoBatchControl for BatchControl {
    fn into_batch_control(self) -> BatchControl {
        self
    }
}

/// The loss of a training step and what else it wants `on_train_batch_end` to see.
#[derive(Clone, Debug)]
pub struct StepOutput<E = ()> {
    /// The loss (detached once the optimizer step is done).
    pub loss: Tensor<1>,
    /// Extra outputs.
    pub extra: E,
}

impl StepOutput<()> {
    /// A loss without extras.
    pub fn loss(loss: Tensor<1>) -> Self {
        Self { loss, extra: () }
    }
}

impl<E> StepOutput<E> {
    /// A loss with extra outputs for `on_train_batch_end`.
    pub fn with_extra(loss: Tensor<1>, extra: E) -> Self {
        Self { loss, extra }
    }
}

/// What an automatic `training_step` may return.
///
/// Its message is also what a manual `training_step` returning something else shows: rustc
/// reports the bound of `IntoManualOutput`'s blanket implementation, which is this trait.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from `training_step`",
    label = "return the loss",
    note = "return the loss as `Tensor<1>`, a `StepOutput` (the loss with extra outputs), or an `Option` of either (`None` skips the batch)",
    note = "under `#[lightning_module(manual_optimization)]`, `training_step` may also return `()`"
)]
pub trait IntoTrainingOutput {
    /// Extra outputs carried to `on_train_batch_end`.
    type Extra: 'static;
    fn into_training_output(self) -> Option<StepOutput<Self::Extra>>;
}

impl IntoTrainingOutput for Tensor<1> {
    type Extra = ();
    fn into_training_output(self) -> Option<StepOutput<()>> {
        Some(StepOutput::loss(self))
    }
}

impl<E: 'static> IntoTrainingOutput for StepOutput<E> {
    type Extra = E;
    fn into_training_output(self) -> Option<StepOutput<E>> {
        Some(self)
    }
}

impl<T: IntoTrainingOutput> IntoTrainingOutput for Option<T> {
    type Extra = T::Extra;
    fn into_training_output(self) -> Option<StepOutput<T::Extra>> {
        self.and_then(T::into_training_output)
    }
}

/// What a manual `training_step` may return: nothing, or what an automatic one returns (the loss
/// is then shown as the step's output).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from `training_step` under manual optimization",
    label = "return `()`, the loss, or a `StepOutput`"
)]
pub trait IntoManualOutput {
    type Extra: 'static;
    fn into_manual_output(self) -> Option<StepOutput<Self::Extra>>;
}

impl IntoManualOutput for () {
    type Extra = ();
    fn into_manual_output(self) -> Option<StepOutput<()>> {
        None
    }
}

impl<T: IntoTrainingOutput> IntoManualOutput for T {
    type Extra = T::Extra;
    fn into_manual_output(self) -> Option<StepOutput<T::Extra>> {
        self.into_training_output()
    }
}

/// What a hook may return instead of its value: a `Result` whose error converts into
/// [`Error`]. `#[lightning_module]` unwraps it before the hook's own conversion (the loss of
/// `training_step`, the optimizer of `configure_optimizers`...); an `Err` ends the run with that
/// error.
///
/// ```ignore
/// #[hook]
/// fn training_step(&self, batch: Batch, _i: usize, cx: &mut StepContext) -> Result<Tensor<1>, MyError> {
///     let loss = self.loss(batch)?;
///     cx.log("train_loss", &loss);
///     Ok(loss)
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Result` a hook can return",
    label = "return `Result<T, E>` with `E: std::error::Error + Send + Sync + 'static`, or the value itself"
)]
pub trait HookResult {
    /// The hook's value.
    type Ok;
    /// The error, converted by [`HookError`].
    type Err;
    /// The value, or the error as the run's [`Error`].
    fn into_hook_result(self) -> Result<Self::Ok, Error>
    where
        Self::Err: HookError;
}

impl<T, E> HookResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_hook_result(self) -> Result<T, Error>
    where
        E: HookError,
    {
        self.map_err(HookError::into_hook_error)
    }
}

/// The error of a hook's `Result`: any `std::error::Error + Send + Sync + 'static`, kept as the
/// source of [`Error::User`], or an [`Error`] itself, returned as it is.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error of a hook's `Result`",
    label = "not a `std::error::Error + Send + Sync + 'static`",
    note = "a hook's error type must implement `std::error::Error + Send + Sync + 'static` (`#[derive(thiserror::Error)]` does), or be `burn_lightning::Error`",
    note = "to keep this type, return `Result<T, burn_lightning::Error>` and convert with `.map_err(burn_lightning::Error::user)?`, which takes anything that converts into `Box<dyn std::error::Error + Send + Sync>` (`String` and `&str` do)"
)]
pub trait HookError {
    /// The run's error.
    fn into_hook_error(self) -> Error;
}

// `do_not_recommend`: rustc reports the type as not a `HookError`, with the message above.
#[diagnostic::do_not_recommend]
impl<E: std::error::Error + Send + Sync + 'static> HookError for E {
    fn into_hook_error(self) -> Error {
        let boxed: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(self);
        // `Result<T, burn_lightning::Error>`: the error is the run's error already.
        match boxed.downcast::<Error>() {
            Ok(error) => *error,
            Err(boxed) => Error::User(boxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bad batch {0}")]
    struct BadBatch(usize);

    #[test]
    fn a_user_error_is_kept_as_the_source() {
        let result: Result<u8, BadBatch> = Err(BadBatch(3));
        let error = result.into_hook_result().unwrap_err();
        let Error::User(source) = &error else {
            panic!("expected Error::User, got {error:?}");
        };
        assert_eq!(source.downcast_ref::<BadBatch>().map(|b| b.0), Some(3));
        assert_eq!(error.to_string(), "bad batch 3");
    }

    #[test]
    fn the_runtime_error_is_not_wrapped_twice() {
        let result: Result<u8, Error> = Err(Error::Data("bad file".into()));
        assert!(matches!(result.into_hook_result(), Err(Error::Data(message)) if message == "bad file"));
    }

    #[test]
    fn ok_values_pass_through() {
        let result: Result<u8, std::io::Error> = Ok(7);
        assert_eq!(result.into_hook_result().unwrap(), 7);
    }
}
