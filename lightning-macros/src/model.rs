//! What the macros understood of the user's code: the internal model between parsing and codegen.

use crate::hook_table::HookSpec;
use proc_macro2::Span;

/// A `#[lightning_module]` struct.
pub struct ModuleStruct {
    /// The struct as it will be emitted: `#[hparam]` attributes removed, `#[module(skip)]` added.
    pub item: syn::ItemStruct,
    pub hparams: Vec<Hparam>,
    /// The facade's path (`::burn_lightning`, or what `crate = path` says).
    pub krate: syn::Path,
}

/// A field marked `#[hparam]`.
pub struct Hparam {
    pub ident: syn::Ident,
    pub ty: syn::Type,
    pub default: Option<syn::Expr>,
    /// The field's doc comment, as written.
    pub docs: Vec<syn::Attribute>,
}

/// A `#[lightning_module]` impl block.
pub struct ModuleImpl {
    /// The impl block as it will be emitted: `#[hook]` attributes removed.
    pub item: syn::ItemImpl,
    /// The facade's path (`::burn_lightning`, or what `crate = path` says).
    pub krate: syn::Path,
    pub mode: Optimization,
    /// The span of `manual_optimization`, or of the attribute when automatic.
    pub mode_span: Span,
    pub hooks: Vec<HookFn>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Optimization {
    Automatic,
    Manual,
}

/// A method marked `#[hook]`.
pub struct HookFn {
    pub spec: &'static HookSpec,
    /// The method's name (it may differ from the hook's with `#[hook(name = "...")]`).
    pub method: syn::Ident,
    pub sig: syn::Signature,
    /// Whether the method takes the context as its last parameter.
    pub takes_context: bool,
    /// Whether the method takes Lightning's `dataloader_idx` (only where the hook table has it,
    /// where it is optional).
    pub takes_dataloader_idx: bool,
    /// The first line of the method's doc comment.
    pub summary: Option<String>,
}

impl HookFn {
    /// Types of the user's parameters after the receiver (the context included).
    pub fn param_types(&self) -> Vec<&syn::Type> {
        self.sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                syn::FnArg::Typed(pat) => Some(&*pat.ty),
                syn::FnArg::Receiver(_) => None,
            })
            .collect()
    }

    /// Types of the hook's parameters, as the user wrote them: without the context.
    pub fn hook_param_types(&self) -> Vec<&syn::Type> {
        let mut types = self.param_types();
        if self.takes_context {
            types.pop();
        }
        types
    }

    pub fn return_type(&self) -> Option<&syn::Type> {
        match &self.sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some(ty),
        }
    }

    /// When the method returns a `Result`: its `Ok` type, and its error type unless an alias
    /// (`std::io::Result<T>`) hides it.
    pub fn result(&self) -> Option<ResultType<'_>> {
        self.return_type().and_then(result_type)
    }

    /// What the method returns once a `Result` is unwrapped: the value the hook produces.
    pub fn value_type(&self) -> Option<&syn::Type> {
        match self.result() {
            Some(result) => Some(result.ok),
            None => self.return_type(),
        }
    }
}

/// The parts of a return type written `Result<T, E>` or `Result<T>`.
pub struct ResultType<'a> {
    pub ok: &'a syn::Type,
    pub err: Option<&'a syn::Type>,
}

/// `Result<T, E>`, `std::io::Result<T>`, `anyhow::Result<T>`...: a path whose last segment is
/// `Result` with one or two type arguments, the first being the `Ok` type. Only the syntax is
/// looked at; whether it really is a `Result` is rustc's business (through `HookResult`).
pub fn result_type(ty: &syn::Type) -> Option<ResultType<'_>> {
    let syn::Type::Path(syn::TypePath { qself: None, path, .. }) = ty else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&syn::Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    if types.len() != args.args.len() {
        return None;
    }
    match types.as_slice() {
        [ok] => Some(ResultType { ok, err: None }),
        [ok, err] => Some(ResultType { ok, err: Some(err) }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::result_type;
    use quote::ToTokens;

    fn parts(ty: &str) -> Option<(String, Option<String>)> {
        let ty: syn::Type = syn::parse_str(ty).unwrap();
        result_type(&ty).map(|r| {
            (
                r.ok.to_token_stream().to_string(),
                r.err.map(|e| e.to_token_stream().to_string()),
            )
        })
    }

    #[test]
    fn recognizes_results_and_aliases() {
        assert_eq!(
            parts("Result<u8, MyError>"),
            Some(("u8".into(), Some("MyError".into())))
        );
        assert_eq!(
            parts("::core::result::Result<Tensor<1>, burn_lightning::Error>"),
            Some(("Tensor < 1 >".into(), Some("burn_lightning :: Error".into())))
        );
        assert_eq!(parts("std::io::Result<()>"), Some(("()".into(), None)));
        assert_eq!(parts("anyhow::Result<Tensor<1>>"), Some(("Tensor < 1 >".into(), None)));
    }

    #[test]
    fn ignores_other_types() {
        assert_eq!(parts("std::fmt::Result"), None);
        assert_eq!(parts("Option<u8>"), None);
        assert_eq!(parts("Result<'a, u8>"), None);
        assert_eq!(parts("Result<u8, E, F>"), None);
        assert_eq!(parts("MyResult<u8, E>"), None);
    }
}
