//! The error collector of one macro invocation (serde's `Ctxt`): parsing and checks push every
//! error they find instead of stopping at the first, so that the user sees them all at once.

use std::fmt::Display;

/// Collects the errors of one macro invocation.
///
/// Like serde's `Ctxt`, it must be consumed with [`check`](Errors::check): dropping it unchecked
/// is a bug in the macro, where an error would be lost, and panics (unless the thread is already
/// panicking).
#[must_use = "call `check()` to report the collected errors"]
pub struct Errors {
    all: Option<syn::Error>,
    count: usize,
    checked: bool,
}

impl Errors {
    pub fn new() -> Self {
        Self {
            all: None,
            count: 0,
            checked: false,
        }
    }

    pub fn push(&mut self, error: syn::Error) {
        self.count += 1;
        match &mut self.all {
            Some(all) => all.combine(error),
            None => self.all = Some(error),
        }
    }

    /// How many errors were pushed so far: lets a check tell which item it found at fault.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn push_darling(&mut self, error: darling::Error) {
        self.push(error.into());
    }

    /// All the errors, combined into one, or `Ok` when there were none.
    pub fn check(mut self) -> syn::Result<()> {
        self.checked = true;
        self.all.take().map_or(Ok(()), Err)
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !self.checked && !std::thread::panicking() {
            panic!("`Errors` dropped without `check()`: the macro would lose errors");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Errors;
    use proc_macro2::Span;

    #[test]
    fn check_combines_every_error() {
        let mut errors = Errors::new();
        errors.push(syn::Error::new(Span::call_site(), "first"));
        errors.push(syn::Error::new(Span::call_site(), "second"));
        assert_eq!(errors.count(), 2);
        let messages: Vec<_> = errors.check().unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn check_without_errors_is_ok() {
        assert!(Errors::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "dropped without `check()`")]
    fn dropping_unchecked_panics() {
        let mut errors = Errors::new();
        errors.push(syn::Error::new(Span::call_site(), "lost"));
        drop(errors);
    }

    #[test]
    fn dropping_while_panicking_does_not_abort() {
        let result = std::panic::catch_unwind(|| {
            let _errors = Errors::new();
            panic!("some other bug");
        });
        assert!(result.is_err());
    }
}
