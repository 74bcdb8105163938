//! Code generation. Every generated path is fully qualified; helper items live inside `const _`.

pub mod data_options;
mod docs;
mod module_impl;
mod module_struct;
pub mod runtime;

use crate::errors::Errors;
use crate::{check, parse};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// Where the runtime lives, seen from a user's crate: `<facade>::__private`, the facade being
/// `::burn_lightning` or the path of `crate = path`.
pub fn private_path(krate: &syn::Path) -> TokenStream {
    quote!(#krate::__private)
}

/// A path as text, as a user writes it (`::burn_lightning`), for string attributes and docs.
pub fn path_text(path: &syn::Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
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
    let mut errors = Errors::new();
    let (output, emitted) = match item {
        syn::Item::Struct(item) => {
            let krate = parse::struct_args(args, &mut errors);
            let mut module = parse::module_struct(item, krate, &mut errors);
            check::module_struct(&module, &mut errors);
            if !matches!(module.item.fields, syn::Fields::Named(_)) {
                // burn's `#[derive(Module)]` panics on these: our error is the one to read.
                remove_derive(&mut module.item, "Module");
            }
            // Generated even when a check failed: without `HasHparams`, the impl block would
            // report a missing `#[lightning_module]` on top of the real error.
            let out = module_struct::expand(&mut module);
            (out, module.item.into_token_stream())
        }
        syn::Item::Impl(item) => {
            let mut module = parse::module_impl(args, item, &mut errors);
            let out = match check::module_impl(&mut module, &mut errors) {
                Some(valid) => module_impl::expand(&mut module, &valid),
                None => TokenStream::new(),
            };
            (out, module.item.into_token_stream())
        }
        other => {
            let keyword = item_keyword(&other);
            let error = syn::Error::new_spanned(
                &keyword,
                format!(
                    "`#[lightning_module]` cannot be used on {}: it goes on a struct that derives `Module`, and on that struct's impl block",
                    match keyword.to_string().as_str() {
                        "enum" => "an enum",
                        "fn" => "a function",
                        "trait" => "a trait",
                        "union" => "a union",
                        "mod" => "a module",
                        _ => "this item",
                    }
                ),
            );
            errors.push(error);
            (TokenStream::new(), other.into_token_stream())
        }
    };
    // On error, emit the item with its helper attributes stripped, so that the only errors the
    // user sees are ours (no cascade of "cannot find attribute `hook`"), and what could still be
    // generated (no cascade of "`Model` is not a LightningModule").
    match errors.check() {
        Ok(()) => quote!(#emitted #output),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#emitted #output #e)
        }
    }
}

/// Removes `name` from the struct's `#[derive(..)]` lists.
fn remove_derive(item: &mut syn::ItemStruct, name: &str) {
    for attr in &mut item.attrs {
        if !attr.path().is_ident("derive") {
            continue;
        }
        let Ok(paths) =
            attr.parse_args_with(syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
        else {
            continue;
        };
        let kept = paths
            .iter()
            .filter(|p| p.segments.last().is_none_or(|s| s.ident != name));
        *attr = syn::parse_quote!(#[derive(#(#kept),*)]);
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

#[cfg(test)]
mod tests {
    use super::lightning_module;
    use quote::quote;

    /// `crate = path` reaches every path of the generated code: nothing names `burn_lightning`.
    #[test]
    fn crate_path_replaces_the_facade() {
        let module = quote! {
            #[derive(Module, Debug)]
            pub struct Model {
                layer: Linear,
                #[hparam(default = 1e-3)]
                lr: f64,
            }
        };
        let out = lightning_module(quote!(crate = renamed), module).to_string();
        assert!(!out.contains("burn_lightning"), "{out}");
        assert!(out.contains("renamed :: __private :: HasHparams"), "{out}");
        assert!(out.contains("\"renamed::__private::serde\""), "{out}");

        let hooks = quote! {
            impl Model {
                #[renamed::hook]
                fn training_step(&self, batch: Tensor<2>, _i: usize) -> Result<Tensor<1>, MyError> {
                    todo!()
                }
                #[hook]
                fn configure_optimizers(&self) -> OptimizerConfig {
                    todo!()
                }
            }
        };
        let out = lightning_module(quote!(crate = "crate::renamed"), hooks).to_string();
        assert!(!out.contains("burn_lightning"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
        assert!(
            out.contains("crate :: renamed :: __private :: __codegen :: hook_result"),
            "{out}"
        );
        assert!(out.contains("crate :: renamed :: __private :: TrainingStep"), "{out}");
    }

    #[test]
    fn the_facade_is_burn_lightning_by_default() {
        let hooks = quote! {
            impl Model {
                #[hook]
                fn configure_optimizers(&self) -> OptimizerConfig {
                    todo!()
                }
            }
        };
        let out = lightning_module(quote!(), hooks).to_string();
        assert!(
            out.contains(":: burn_lightning :: __private :: LightningModule"),
            "{out}"
        );
    }

    #[test]
    fn a_bad_crate_path_is_reported() {
        let module = quote! {
            #[derive(Module, Debug)]
            pub struct Model { layer: Linear }
        };
        let out = lightning_module(quote!(crate = 1), module).to_string();
        assert!(
            out.contains("`crate` takes the path of the `burn_lightning` crate"),
            "{out}"
        );
    }
}
