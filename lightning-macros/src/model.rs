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

    pub fn return_type(&self) -> Option<&syn::Type> {
        match &self.sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some(ty),
        }
    }
}
