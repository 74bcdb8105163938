//! Code generation. Every generated path is fully qualified; helper items live inside `const _`.

mod docs;
mod module_impl;
mod module_struct;
pub mod runtime;

use crate::{check, parse};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// Where the runtime lives, seen from a user's crate.
pub fn private_path() -> TokenStream {
    quote!(::burn_lightning::__private)
}

/// A type or expression from the hook table, with `rt::` pointing at `rt`.
pub fn table_tokens(text: &str, rt: &str) -> TokenStream {
    text.replace("rt::", &format!("{rt}::"))
        .parse()
        .unwrap_or_else(|e| panic!("hook table entry `{text}` does not parse: {e}"))
}

pub fn lightning_module(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::Item = match syn::parse2(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = parse::Errors::default();
    let (output, emitted) = match item {
        syn::Item::Struct(item) => {
            parse::struct_args(args, &mut errors);
            let mut module = parse::module_struct(item, &mut errors);
            check::module_struct(&module, &mut errors);
            let out = if errors.is_empty() { module_struct::expand(&mut module) } else { TokenStream::new() };
            (out, module.item.into_token_stream())
        }
        syn::Item::Impl(item) => {
            let mut module = parse::module_impl(args, item, &mut errors);
            check::module_impl(&module, &mut errors);
            let out = if errors.is_empty() { module_impl::expand(&mut module) } else { TokenStream::new() };
            (out, module.item.into_token_stream())
        }
        other => {
            let error = syn::Error::new_spanned(
                item_keyword(&other),
                "`#[lightning_module]` goes on a struct that derives `Module` and on its impl block",
            );
            let mut tokens = other.into_token_stream();
            tokens.extend(error.to_compile_error());
            return tokens;
        }
    };
    // On error, emit the item with its helper attributes stripped, so that the only errors the
    // user sees are ours (no cascade of "cannot find attribute `hook`").
    match errors.into_result() {
        Ok(()) => quote!(#emitted #output),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#emitted #e)
        }
    }
}

fn item_keyword(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Enum(e) => e.enum_token.into_token_stream(),
        syn::Item::Fn(f) => f.sig.fn_token.into_token_stream(),
        syn::Item::Trait(t) => t.trait_token.into_token_stream(),
        syn::Item::Union(u) => u.union_token.into_token_stream(),
        syn::Item::Mod(m) => m.mod_token.into_token_stream(),
        other => other.to_token_stream(),
    }
}

/// `#[hook]` that was not consumed by a `#[lightning_module]` impl block.
pub fn stray_hook(input: TokenStream) -> TokenStream {
    let error = syn::Error::new_spanned(
        hook_target(&input),
        "`#[hook]` must be used on a method inside a `#[lightning_module]` impl block\n\
         help: add `#[lightning_module]` above the `impl` block that contains this method",
    )
    .to_compile_error();
    quote!(#input #error)
}

fn hook_target(input: &TokenStream) -> TokenStream {
    match syn::parse2::<syn::ItemFn>(input.clone()) {
        Ok(f) => f.sig.ident.into_token_stream(),
        Err(_) => match syn::parse2::<syn::ImplItemFn>(input.clone()) {
            Ok(f) => f.sig.ident.into_token_stream(),
            Err(_) => input.clone(),
        },
    }
}
