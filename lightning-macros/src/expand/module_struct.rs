//! `#[lightning_module]` on the struct: the `<Name>Hparams` struct, `hparams()`, `HasHparams`
//! and the "Hyperparameters" section of the struct's docs.

use super::{docs, path_text, private_path};
use crate::model::ModuleStruct;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

/// Appends the generated docs to the struct and returns the items that go beside it.
pub fn expand(module: &mut ModuleStruct) -> TokenStream {
    let section = docs::module_struct_section(module);
    module.item.attrs.push(syn::parse_quote!(#[doc = ""]));
    module.item.attrs.push(syn::parse_quote!(#[doc = #section]));
    let rt = private_path(&module.krate);
    let serde_crate = format!("{}::__private::serde", path_text(&module.krate));
    let item = &module.item;
    let ident = &item.ident;
    let vis = &item.vis;
    let hparams_ident = format_ident!("{}Hparams", ident);
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();

    let fields: Vec<_> = module.hparams.iter().map(|h| &h.ident).collect();
    let types: Vec<_> = module.hparams.iter().map(|h| &h.ty).collect();
    let field_docs: Vec<_> = module.hparams.iter().map(|h| &h.docs).collect();

    let default_fns: Vec<_> = module
        .hparams
        .iter()
        .map(|h| {
            h.default.as_ref().map(|default| {
                let name = format_ident!("__default_{}", h.ident);
                let ty = &h.ty;
                quote! {
                    #[doc(hidden)]
                    fn #name() -> #ty { #default }
                }
            })
        })
        .collect();
    // Each field is (de)serialized through helpers that compile whatever the field's type: a
    // type that is not a hyperparameter value is reported once, by the assertion below, at the
    // field's type, and not again (four times, at the attribute) by serde's derive.
    let serde_attrs: Vec<_> = module
        .hparams
        .iter()
        .map(|h| {
            let serialize = format!("{hparams_ident}::__serialize_{}", h.ident);
            let deserialize = format!("{hparams_ident}::__deserialize_{}", h.ident);
            let default = h.default.as_ref().map(|_| {
                let path = format!("{hparams_ident}::__default_{}", h.ident);
                quote!(#[serde(default = #path)])
            });
            quote! {
                #default
                #[serde(serialize_with = #serialize, deserialize_with = #deserialize)]
            }
        })
        .collect();
    let serde_fns = module.hparams.iter().map(|h| {
        let ty = &h.ty;
        let serialize = format_ident!("__serialize_{}", h.ident);
        let deserialize = format_ident!("__deserialize_{}", h.ident);
        quote! {
            #[doc(hidden)]
            #[allow(clippy::needless_borrow)]
            fn #serialize<__S: #rt::serde::Serializer>(
                value: &#ty,
                serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                #[allow(unused_imports)]
                use #rt::__codegen::{SerializeFallback as _, SerializeHparam as _};
                (&&#rt::__codegen::Probe::<#ty>::new()).serialize_hparam(value, serializer)
            }

            #[doc(hidden)]
            #[allow(clippy::needless_borrow)]
            fn #deserialize<'de, __D: #rt::serde::Deserializer<'de>>(
                deserializer: __D,
            ) -> ::core::result::Result<#ty, __D::Error> {
                #[allow(unused_imports)]
                use #rt::__codegen::{DeserializeFallback as _, DeserializeHparam as _};
                (&&#rt::__codegen::Probe::<#ty>::new()).deserialize_hparam(deserializer)
            }
        }
    });
    // One error per field whose type is not a hyperparameter value, at the field's type, with
    // `HparamValue`'s message (what to derive).
    let assertions = module.hparams.iter().map(|h| {
        let ty = &h.ty;
        quote_spanned!(ty.span()=> #rt::__codegen::assert_hparam_value::<#ty>();)
    });

    let required: Vec<_> = module.hparams.iter().filter(|h| h.default.is_none()).collect();
    let required_idents: Vec<_> = required.iter().map(|h| &h.ident).collect();
    let required_types: Vec<_> = required.iter().map(|h| &h.ty).collect();
    let init_fields = module.hparams.iter().map(|h| {
        let f = &h.ident;
        match &h.default {
            Some(_) => {
                let default_fn = format_ident!("__default_{}", h.ident);
                quote!(#f: Self::#default_fn())
            }
            None => quote!(#f),
        }
    });
    let withs = module.hparams.iter().filter(|h| h.default.is_some()).map(|h| {
        let f = &h.ident;
        let ty = &h.ty;
        let with = format_ident!("with_{}", h.ident);
        let doc = format!("Sets `{f}` (see [`{hparams_ident}::{f}`]).");
        quote! {
            #[doc = #doc]
            #[must_use]
            pub fn #with(mut self, #f: #ty) -> Self {
                self.#f = #f;
                self
            }
        }
    });
    let default_impl = required.is_empty().then(|| {
        quote! {
            #[automatically_derived]
            impl ::core::default::Default for #hparams_ident {
                fn default() -> Self {
                    Self::new()
                }
            }
        }
    });

    let struct_doc = format!(
        "Hyperparameters of [`{ident}`]: the fields marked `#[hparam]`.\n\n\
         The trainer writes them to `hparams.yaml` in the run directory and into checkpoints; \
         `{ident}::hparams()` reads them back from a module."
    );
    let new_doc = if required.is_empty() {
        "Hyperparameters with every default applied.".to_string()
    } else {
        "Hyperparameters from the required values; the others take their defaults.".to_string()
    };
    let hparams_fn_doc = format!("The hyperparameters of this module, as a [`{hparams_ident}`].");
    let table_doc = docs::hparams_table(module);
    // What `LightningCli` shows for `--model.<name>`: the doc's first paragraph and the default
    // serialized through the field's own serializer.
    let infos = module.hparams.iter().map(|h| {
        let name = h.ident.to_string();
        let ty = docs::type_text(&h.ty);
        let doc = crate::parse::first_doc_line(&h.docs).unwrap_or_default();
        let default = match &h.default {
            Some(_) => {
                let serialize = format_ident!("__serialize_{}", h.ident);
                let default_fn = format_ident!("__default_{}", h.ident);
                quote! {
                    #hparams_ident::#serialize(&#hparams_ident::#default_fn(), #rt::__codegen::JsonSerializer).ok()
                }
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #rt::HparamInfo { name: #name, ty: #ty, doc: #doc, default: #default }
        }
    });

    quote! {
        #[doc = #struct_doc]
        #[doc = ""]
        #[doc = #table_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug, ::core::cmp::PartialEq, #rt::serde::Serialize, #rt::serde::Deserialize)]
        // No `deny_unknown_fields`: hyperparameters saved by a version of the module that had a
        // field since removed still load (`load_from_checkpoint` warns about the ignored keys).
        #[serde(crate = #serde_crate)]
        #vis struct #hparams_ident {
            #(
                #(#field_docs)*
                #serde_attrs
                pub #fields: #types,
            )*
        }

        const _: () = {
            #[allow(dead_code)]
            fn __assert_hparam_values() {
                #(#assertions)*
            }
        };

        #[automatically_derived]
        #[allow(clippy::new_without_default)]
        impl #hparams_ident {
            #[doc = #new_doc]
            #[must_use]
            pub fn new(#(#required_idents: #required_types),*) -> Self {
                Self { #(#init_fields),* }
            }

            #(#withs)*

            #(#default_fns)*

            #(#serde_fns)*
        }

        #default_impl

        #[automatically_derived]
        impl #impl_generics #ident #ty_generics #where_clause {
            #[doc = #hparams_fn_doc]
            pub fn hparams(&self) -> #hparams_ident {
                #hparams_ident { #( #fields: ::core::clone::Clone::clone(&self.#fields), )* }
            }
        }

        #[automatically_derived]
        impl #impl_generics #rt::HasHparams for #ident #ty_generics #where_clause {
            type Hparams = #hparams_ident;

            fn hparams(&self) -> Self::Hparams {
                #ident::hparams(self)
            }

            fn hparam_infos() -> ::std::vec::Vec<#rt::HparamInfo> {
                ::std::vec![#(#infos),*]
            }
        }
    }
}
