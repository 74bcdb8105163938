//! Items the code `#[lightning_module]` generates calls, shaped so that rustc reports a mistake
//! at the user's code with the message of the trait at fault. Nothing here is called by the
//! trainer itself.

#[doc(hidden)]
pub mod codegen {
    use crate::Error;
    use crate::hooks::{HookError, HookResult};

    /// Unwraps the `Result` a hook returned. The forwarder names the error type `E` in the
    /// turbofish, as the user wrote it: an `E` that is not a `HookError` is reported there.
    #[inline]
    pub fn hook_result<E: HookError, R: HookResult<Err = E>>(result: R) -> Result<R::Ok, Error> {
        result.into_hook_result()
    }
}
