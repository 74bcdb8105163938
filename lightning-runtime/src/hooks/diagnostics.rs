//! Compile-time diagnostics for mistakes a new user makes, and the helpers the code
//! `#[lightning_module]` generates calls ([`codegen`]), shaped so that rustc reports a mistake at
//! the user's code with the message of the trait at fault. None of it is public API.
//!
//! Lightning raises at run time when a hook logs where it may not; here such a call does not
//! compile. The methods below exist only to be found by rustc's method lookup: each carries a
//! bound that no type satisfies, through a trait whose `#[diagnostic::on_unimplemented]` says
//! what Lightning allows instead. Without them the user would read "no method named `log`".

use crate::HookContext;
use crate::core::logging::EpochLogOptions;

/// The one type that implements the never-satisfied traits below: with no implementation at
/// all, rustc would suggest "consider adding one"; `do_not_recommend` keeps it out of messages.
#[allow(dead_code)] // Only named by the implementations below.
pub(crate) enum Never {}

/// Never satisfied: the bound of `HookContext::log`, `log_with`, `log_dict` and `log_dict_with`.
#[diagnostic::on_unimplemented(
    message = "Lightning does not allow logging in this hook: its context is `HookContext`",
    label = "this hook cannot log",
    note = "log from a step hook (`training_step`, `validation_step`, `on_train_batch_end`, ...), whose context is `StepContext`, or from an epoch hook (`on_train_epoch_end`, `on_validation_epoch_end`, ...), whose context is `EpochContext`",
    note = "hooks such as `setup`, `on_fit_start` or `on_validation_end` run outside any step or epoch, where a logged value would have no step or epoch to belong to"
)]
#[doc(hidden)]
pub trait LoggingAllowedInThisHook {}

#[diagnostic::do_not_recommend]
impl LoggingAllowedInThisHook for Never {}

impl<'a> HookContext<'a> {
    /// Not available: Lightning does not allow logging in hooks whose context is `HookContext`.
    #[doc(hidden)]
    pub fn log<V>(&mut self, name: &str, value: V)
    where
        HookContext<'a>: LoggingAllowedInThisHook,
    {
        let _ = (name, value);
    }

    /// Not available: Lightning does not allow logging in hooks whose context is `HookContext`.
    #[doc(hidden)]
    pub fn log_with<V, O>(&mut self, name: &str, value: V, options: O)
    where
        HookContext<'a>: LoggingAllowedInThisHook,
    {
        let _ = (name, value, options);
    }

    /// Not available: Lightning does not allow logging in hooks whose context is `HookContext`.
    #[doc(hidden)]
    pub fn log_dict<I>(&mut self, values: I)
    where
        HookContext<'a>: LoggingAllowedInThisHook,
    {
        let _ = values;
    }

    /// Not available: Lightning does not allow logging in hooks whose context is `HookContext`.
    #[doc(hidden)]
    pub fn log_dict_with<I, O>(&mut self, values: I, options: O)
    where
        HookContext<'a>: LoggingAllowedInThisHook,
    {
        let _ = (values, options);
    }
}

/// Never satisfied: the bound of `EpochLogOptions::on_step`.
#[diagnostic::on_unimplemented(
    message = "epoch hooks log once per epoch: `EpochLogOptions` has no `on_step`",
    label = "a value logged in an epoch hook is reduced per epoch",
    note = "to log a value per step, log it from a step hook (`training_step`, `on_train_batch_end`, ...) with `cx.log_with(name, value, LogOptions::default().on_step(true))`"
)]
#[doc(hidden)]
pub trait OnStepInEpochHook {}

#[diagnostic::do_not_recommend]
impl OnStepInEpochHook for Never {}

impl EpochLogOptions {
    /// Not available: epoch hooks log once per epoch.
    #[doc(hidden)]
    #[must_use]
    // The lifetime makes the bound depend on a parameter: a bound on a concrete type alone
    // that does not hold would be an error here, not at the call.
    pub fn on_step<'a>(self, on: bool) -> Self
    where
        &'a EpochLogOptions: OnStepInEpochHook,
    {
        let _ = on;
        self
    }
}

/// What an epoch hook's `log_with` and `log_dict_with` take: [`EpochLogOptions`], and nothing
/// else, so that a step hook's `LogOptions` (which has `on_step`) is a compile error that says
/// what to write instead of a bare type mismatch.
#[diagnostic::on_unimplemented(
    message = "epoch hooks log once per epoch: they take `EpochLogOptions`, not `{Self}`",
    label = "`LogOptions` are for step hooks",
    note = "write `EpochLogOptions::new()` with `.reduce(..)`, `.prog_bar(..)` or `.logger(..)`; a value logged in an epoch hook is reduced per epoch, so there is no `on_step`",
    note = "to log a value per step, log it from a step hook (`training_step`, `on_train_batch_end`, ...) with `LogOptions`"
)]
pub trait IntoEpochLogOptions {
    #[doc(hidden)]
    fn into_epoch_log_options(self) -> EpochLogOptions;
}

impl IntoEpochLogOptions for EpochLogOptions {
    fn into_epoch_log_options(self) -> EpochLogOptions {
        self
    }
}

/// Items the code `#[lightning_module]` generates calls, shaped so that rustc reports a mistake
/// at the user's code with the message of the trait at fault.
///
/// For `#[hparam]` fields: an assertion with [`HparamValue`](crate::HparamValue)'s
/// message, and (de)serialization helpers that compile for any type, so that a field whose type
/// is not serializable is reported once, by the assertion, not again by serde's derive. The
/// helpers pick their implementation by autoref: `(&&Probe::<T>::new()).serialize_hparam(..)`
/// finds `SerializeHparam` on `&Probe<T>` when `T: Serialize`, and otherwise the fallback on
/// `Probe<T>`, which is never run: the assertion fails the build first.
#[doc(hidden)]
pub mod codegen {
    use crate::Error;
    use crate::hooks::{HookError, HookResult, HparamValue};
    use serde::de::{DeserializeOwned, Deserializer, Error as _};
    use serde::ser::{Error as _, Serializer};
    use std::marker::PhantomData;

    /// Unwraps the `Result` a hook returned. The forwarder names the error type `E` in the
    /// turbofish, as the user wrote it: an `E` that is not a `HookError` is reported there.
    #[inline]
    pub fn hook_result<E: HookError, R: HookResult<Err = E>>(result: R) -> Result<R::Ok, Error> {
        result.into_hook_result()
    }

    /// The conversion of an automatic module's `configure_optimizers`: several optimizers fail
    /// to compile there, with `AutomaticOptimizers`' message (use manual optimization).
    #[inline]
    pub fn automatic_optimizer_configs<C>(config: C) -> Vec<crate::OptimizerConfig>
    where
        C: crate::IntoOptimizerConfig,
        C::Count: crate::AutomaticOptimizers,
    {
        config.into_optimizer_configs()
    }

    /// A validation batch given to a batch-transfer hook that takes one type, `H`: only `H`
    /// itself. The forwarder names the user's type as `H`, so that a validation stage of another
    /// batch type is one error at the hook's `batch` parameter naming the stage and both types.
    #[diagnostic::on_unimplemented(
        message = "the validation stage's batches are `{Self}`, but this batch-transfer hook takes `{H}`",
        label = "the hook runs on the batches of every stage, as Lightning's, so on the validation stage's `{Self}` too",
        note = "make the hook generic over the batch type, with a trait each stage's batch type implements: `fn on_after_batch_transfer<B: YourTrait>(&mut self, batch: B, dataloader_idx: usize) -> B`"
    )]
    pub trait ValBatchOfHook<H>: Sized {
        /// The batch as `H` through `hook`, and back.
        fn through<E>(self, hook: impl FnOnce(H) -> Result<H, E>) -> Result<Self, E>;
    }

    impl<T> ValBatchOfHook<T> for T {
        #[inline]
        fn through<E>(self, hook: impl FnOnce(T) -> Result<T, E>) -> Result<T, E> {
            hook(self)
        }
    }

    /// A test batch given to a batch-transfer hook that takes one type, `H`: only `H`
    /// itself. The forwarder names the user's type as `H`, so that a test stage of another
    /// batch type is one error at the hook's `batch` parameter naming the stage and both types.
    #[diagnostic::on_unimplemented(
        message = "the test stage's batches are `{Self}`, but this batch-transfer hook takes `{H}`",
        label = "the hook runs on the batches of every stage, as Lightning's, so on the test stage's `{Self}` too",
        note = "make the hook generic over the batch type, with a trait each stage's batch type implements: `fn on_after_batch_transfer<B: YourTrait>(&mut self, batch: B, dataloader_idx: usize) -> B`"
    )]
    pub trait TestBatchOfHook<H>: Sized {
        /// The batch as `H` through `hook`, and back.
        fn through<E>(self, hook: impl FnOnce(H) -> Result<H, E>) -> Result<Self, E>;
    }

    impl<T> TestBatchOfHook<T> for T {
        #[inline]
        fn through<E>(self, hook: impl FnOnce(T) -> Result<T, E>) -> Result<T, E> {
            hook(self)
        }
    }

    /// A predict batch given to a batch-transfer hook that takes one type, `H`: only `H`
    /// itself. The forwarder names the user's type as `H`, so that a predict stage of another
    /// batch type is one error at the hook's `batch` parameter naming the stage and both types.
    #[diagnostic::on_unimplemented(
        message = "the predict stage's batches are `{Self}`, but this batch-transfer hook takes `{H}`",
        label = "the hook runs on the batches of every stage, as Lightning's, so on the predict stage's `{Self}` too",
        note = "make the hook generic over the batch type, with a trait each stage's batch type implements: `fn on_after_batch_transfer<B: YourTrait>(&mut self, batch: B, dataloader_idx: usize) -> B`"
    )]
    pub trait PredictBatchOfHook<H>: Sized {
        /// The batch as `H` through `hook`, and back.
        fn through<E>(self, hook: impl FnOnce(H) -> Result<H, E>) -> Result<Self, E>;
    }

    impl<T> PredictBatchOfHook<T> for T {
        #[inline]
        fn through<E>(self, hook: impl FnOnce(T) -> Result<T, E>) -> Result<T, E> {
            hook(self)
        }
    }

    /// Serializes a default into the JSON of [`HparamInfo`](crate::HparamInfo).
    pub use serde_json::value::Serializer as JsonSerializer;

    /// Fails to compile, with `HparamValue`'s message, when `T` is not a hyperparameter value.
    pub fn assert_hparam_value<T: HparamValue>() {}

    pub struct Probe<T>(PhantomData<fn() -> T>);

    impl<T> Probe<T> {
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Self(PhantomData)
        }
    }

    const NOT_A_VALUE: &str = "not a hyperparameter value";

    pub trait SerializeHparam<T> {
        fn serialize_hparam<S: Serializer>(&self, value: &T, serializer: S) -> Result<S::Ok, S::Error>;
    }

    impl<T: serde::Serialize> SerializeHparam<T> for &Probe<T> {
        fn serialize_hparam<S: Serializer>(&self, value: &T, serializer: S) -> Result<S::Ok, S::Error> {
            value.serialize(serializer)
        }
    }

    pub trait SerializeFallback<T> {
        fn serialize_hparam<S: Serializer>(&self, value: &T, serializer: S) -> Result<S::Ok, S::Error>;
    }

    impl<T> SerializeFallback<T> for Probe<T> {
        fn serialize_hparam<S: Serializer>(&self, _: &T, _: S) -> Result<S::Ok, S::Error> {
            Err(S::Error::custom(NOT_A_VALUE))
        }
    }

    pub trait DeserializeHparam<T> {
        fn deserialize_hparam<'de, D: Deserializer<'de>>(&self, deserializer: D) -> Result<T, D::Error>;
    }

    impl<T: DeserializeOwned> DeserializeHparam<T> for &Probe<T> {
        fn deserialize_hparam<'de, D: Deserializer<'de>>(&self, deserializer: D) -> Result<T, D::Error> {
            T::deserialize(deserializer)
        }
    }

    pub trait DeserializeFallback<T> {
        fn deserialize_hparam<'de, D: Deserializer<'de>>(&self, deserializer: D) -> Result<T, D::Error>;
    }

    impl<T> DeserializeFallback<T> for Probe<T> {
        fn deserialize_hparam<'de, D: Deserializer<'de>>(&self, _: D) -> Result<T, D::Error> {
            Err(D::Error::custom(NOT_A_VALUE))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn serializable_types_take_the_serde_path() {
            let mut out = Vec::new();
            let mut serializer = serde_json::Serializer::new(&mut out);
            (&&Probe::<f64>::new()).serialize_hparam(&0.5, &mut serializer).unwrap();
            assert_eq!(out, b"0.5");
            let mut deserializer = serde_json::Deserializer::from_str("3");
            let value: usize = (&&Probe::<usize>::new()).deserialize_hparam(&mut deserializer).unwrap();
            assert_eq!(value, 3);
        }

        #[test]
        // The `&&` is the autoref specialization under test, as the generated code writes it.
        #[allow(clippy::needless_borrow)]
        fn other_types_take_the_fallback() {
            struct Opaque;
            let mut out = Vec::new();
            let mut serializer = serde_json::Serializer::new(&mut out);
            let error = (&&Probe::<Opaque>::new())
                .serialize_hparam(&Opaque, &mut serializer)
                .unwrap_err();
            assert!(error.to_string().contains(NOT_A_VALUE));
        }
    }
}
