//! Procedural macros of `burn-lightning`. Use them through the `burn-lightning` crate.
//!
//! The crate follows serde_derive's split: [`parse`] reads the user's item into the [`model`],
//! [`check`] applies the rules, and [`expand`] generates code. [`hook_table`] is the single
//! source of truth about hooks for all three and for the runtime's traits; [`errors`] collects
//! what they find wrong.
//!
//! These docs are internal: read them with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod check;
mod errors;
mod expand;
mod hook_table;
mod model;
mod parse;

use proc_macro::TokenStream;

/// Turns a burn module into a LightningModule.
///
/// On the struct (above `#[derive(Module)]`): marks hyperparameters with `#[hparam]` or
/// `#[hparam(default = expr)]`, generates the `<Name>Hparams` struct and its docs.
///
/// On the impl block: every method marked `#[hook]` is checked against the hook table and wired
/// into the trainer's static dispatch table. `#[lightning_module(manual_optimization)]` on the
/// impl block switches to manual optimization.
#[proc_macro_attribute]
pub fn lightning_module(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::lightning_module(args.into(), input.into()).into()
}

/// Marks a method of a `#[lightning_module]` impl block as a hook. On its own it is an error.
#[proc_macro_attribute]
pub fn hook(_args: TokenStream, input: TokenStream) -> TokenStream {
    expand::stray_hook(input.into()).into()
}

/// Describes a datamodule's options for `LightningCli`: implements `DataOptions` with the doc
/// comment of every field serde reads, which become the help of its `--data.<field>` options.
/// `#[data_options(crate = "path")]` names the facade crate when it is renamed.
#[proc_macro_derive(DataOptions, attributes(data_options))]
pub fn derive_data_options(input: TokenStream) -> TokenStream {
    expand::data_options::derive(input.into()).into()
}

/// Generates the runtime's `Hook` enum (every hook, with what it may log and who implements it)
/// from the hook table. Used once, in `burn-lightning-runtime`'s `core`.
#[doc(hidden)]
#[proc_macro]
pub fn __runtime_hook_list(_input: TokenStream) -> TokenStream {
    expand::runtime::hook_list().into()
}

/// Generates the runtime's `LightningModule` and `Callback` traits, the capability markers and
/// the hook dispatch functions from the hook table. Used once, in `burn-lightning-runtime`'s
/// `hooks`.
#[doc(hidden)]
#[proc_macro]
pub fn __runtime_items(_input: TokenStream) -> TokenStream {
    expand::runtime::runtime_items().into()
}
