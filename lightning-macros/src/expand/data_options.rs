//! `#[derive(DataOptions)]`: the doc comments of a datamodule's serialized fields, which
//! `LightningCli` shows as the help of its `--data.<field>` options (the fields reach the CLI
//! through serde, which keeps no docs). Small enough to read, check and expand in one place.
//!
//! A field's option is its serde name (`#[serde(rename = "..")]` counts); fields serde skips
//! (`skip`, `skip_serializing`, `skip_deserializing`, `flatten`) have none.

use super::private_path;
use crate::parse::default_crate_path;
use proc_macro2::TokenStream;
use quote::quote;

/// The derive's expansion: `impl DataOptions` listing `(option, doc)` per field.
pub fn derive(input: TokenStream) -> TokenStream {
    let item: syn::DeriveInput = match syn::parse2(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    match expand(&item) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(item: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let krate = crate_path(&item.attrs)?;
    let rt = private_path(&krate);
    let syn::Data::Struct(syn::DataStruct {
        fields: syn::Fields::Named(fields),
        ..
    }) = &item.data
    else {
        return Err(syn::Error::new_spanned(
            &item.ident,
            "`#[derive(DataOptions)]` describes a datamodule's options: it goes on a struct with named fields",
        ));
    };
    let mut options = Vec::new();
    for field in &fields.named {
        let Some(name) = serde_name(field)? else { continue };
        let doc = doc_text(&field.attrs);
        options.push(quote!((#name, #doc)));
    }
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #rt::DataOptions for #ident #ty_generics #where_clause {
            fn option_docs() -> ::std::vec::Vec<(&'static str, &'static str)> {
                ::std::vec![#(#options),*]
            }
        }
    })
}

/// `#[data_options(crate = path)]`: where the facade is, when not at `::burn_lightning`.
fn crate_path(attrs: &[syn::Attribute]) -> syn::Result<syn::Path> {
    let mut krate = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("data_options")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let value: syn::LitStr = meta.value()?.parse()?;
                krate = Some(value.parse_with(syn::Path::parse_mod_style)?);
                Ok(())
            } else {
                Err(meta.error("`#[data_options]` takes `crate = \"path::to::burn_lightning\"` only"))
            }
        })?;
    }
    Ok(krate.unwrap_or_else(default_crate_path))
}

/// The field's name as serde reads it, or `None` when serde skips it.
fn serde_name(field: &syn::Field) -> syn::Result<Option<String>> {
    let mut name = field.ident.as_ref().map(|ident| {
        let text = ident.to_string();
        text.strip_prefix("r#").map(str::to_string).unwrap_or(text)
    });
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if let Ok(value) = meta.value() {
                    let renamed: syn::LitStr = value.parse()?;
                    name = Some(renamed.value());
                } else {
                    // `rename(serialize = "..", deserialize = "..")`: the name read.
                    meta.parse_nested_meta(|inner| {
                        let value: syn::LitStr = inner.value()?.parse()?;
                        if inner.path.is_ident("deserialize") {
                            name = Some(value.value());
                        }
                        Ok(())
                    })?;
                }
            } else if ["skip", "skip_serializing", "skip_deserializing", "flatten"]
                .iter()
                .any(|skip| meta.path.is_ident(skip))
            {
                name = None;
            } else if meta.input.peek(syn::Token![=]) {
                // Other serde options with a value (`default = "..."`, `with = "..."`).
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        })?;
        if name.is_none() {
            return Ok(None);
        }
    }
    Ok(name)
}

/// The doc comment, its lines trimmed and joined with newlines.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(text),
                        ..
                    }),
                ..
            }) => Some(text.value().trim().to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}
