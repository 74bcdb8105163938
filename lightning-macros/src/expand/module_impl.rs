//! `#[lightning_module]` on the impl block: the `LightningModule` implementation (the static
//! dispatch table), the capability markers `Trainer::fit` and friends require, and the docs.
//!
//! Each hook becomes a trait method forwarding to the user's method. Arguments and the return
//! conversion carry the spans of the user's parameter and return types, so a type error points
//! at the user's signature.

use super::{docs, private_path, runtime::variant, table_tokens};
use crate::hook_table::Step;
use crate::model::{HookFn, ModuleImpl, Optimization};
use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

const RT: &str = "::burn_lightning::__private";

/// Appends the generated docs to the impl block and returns the items that go beside it.
pub fn expand(module: &mut ModuleImpl) -> TokenStream {
    let section = docs::module_impl_section(module);
    module.item.attrs.push(syn::parse_quote!(#[doc = #section]));

    let rt = private_path();
    let self_ty = &module.item.self_ty;
    let (impl_generics, _, where_clause) = module.item.generics.split_for_impl();

    let step = |which: Step| module.hooks.iter().find(|h| h.spec.step == Some(which));
    let unit = quote!(());
    let batch = [Step::Training, Step::Validation, Step::Test, Step::Predict]
        .into_iter()
        .find_map(|s| step(s).and_then(|h| h.param_types().first().map(|ty| quote!(#ty))))
        .unwrap_or_else(|| unit.clone());
    let output = |which: Step| {
        step(which)
            .and_then(HookFn::return_type)
            .map(|ty| quote!(#ty))
            .unwrap_or_else(|| unit.clone())
    };
    let train_extra = match step(Step::Training) {
        Some(hook) => {
            let ret = output(Step::Training);
            let span = return_span(hook);
            match module.mode {
                Optimization::Automatic => quote_spanned!(span=> <#ret as #rt::IntoTrainingOutput>::Extra),
                Optimization::Manual => quote_spanned!(span=> <#ret as #rt::IntoManualOutput>::Extra),
            }
        }
        None => unit.clone(),
    };
    let validation_output = output(Step::Validation);
    let test_output = output(Step::Test);
    let prediction = output(Step::Predict);
    let mode = match module.mode {
        Optimization::Automatic => quote!(#rt::Optimization::Automatic),
        Optimization::Manual => quote!(#rt::Optimization::Manual),
    };
    let overridden: Vec<_> = module.hooks.iter().map(|h| variant(h.spec)).collect();
    let methods = module.hooks.iter().map(|hook| forward(hook, self_ty, module.mode));

    let markers = markers(module);

    quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #rt::LightningModule for #self_ty #where_clause {
                type Batch = #batch;
                type TrainExtra = #train_extra;
                type ValidationOutput = #validation_output;
                type TestOutput = #test_output;
                type Prediction = #prediction;
                const OPTIMIZATION: #rt::Optimization = #mode;
                const OVERRIDDEN: #rt::HookSet = #rt::HookSet::of(&[#(#rt::Hook::#overridden),*]);

                #(#methods)*
            }

            #markers
        };
    }
}

/// `TrainingStep`, `ConfigureOptimizers`, ...: what `Trainer::fit`, `validate`, `test` and
/// `predict` require, so a missing hook is a trait-bound error at the call.
fn markers(module: &ModuleImpl) -> TokenStream {
    let rt = private_path();
    let self_ty = &module.item.self_ty;
    let (impl_generics, _, where_clause) = module.item.generics.split_for_impl();
    let has = |name: &str| module.hooks.iter().any(|h| h.spec.name == name);
    let mut traits = Vec::new();
    for (hook, marker) in [
        ("training_step", "TrainingStep"),
        ("validation_step", "ValidationStep"),
        ("test_step", "TestStep"),
        ("predict_step", "PredictStep"),
        ("configure_optimizers", "ConfigureOptimizers"),
    ] {
        if has(hook) {
            traits.push(format_ident!("{marker}"));
        }
    }
    traits.push(match module.mode {
        Optimization::Automatic => format_ident!("AutomaticOptimization"),
        Optimization::Manual => format_ident!("ManualOptimization"),
    });
    let mode_span = module.mode_span;
    quote_spanned! {mode_span=>
        #(
            #[automatically_derived]
            impl #impl_generics #rt::#traits for #self_ty #where_clause {}
        )*
    }
}

fn return_span(hook: &HookFn) -> Span {
    match &hook.sig.output {
        syn::ReturnType::Default => hook.sig.ident.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    }
}

fn forward(hook: &HookFn, self_ty: &syn::Type, mode: Optimization) -> TokenStream {
    let spec = hook.spec;
    let rt = private_path();
    let name = format_ident!("{}", spec.name);
    let method = &hook.method;
    let user_types = hook.param_types();

    let names: Vec<_> = spec.params.iter().map(|(n, _)| format_ident!("{n}")).collect();
    let types: Vec<_> = spec.params.iter().map(|(_, ty)| table_tokens(ty, RT)).collect();
    // Each argument carries the span of the user's parameter type: a mismatch points there.
    let args: Vec<_> = names
        .iter()
        .zip(&user_types)
        .map(|(n, ty)| {
            let mut n = n.clone();
            n.set_span(n.span().resolved_at(Span::call_site()).located_at(ty.span()));
            quote!(#n)
        })
        .collect();

    let cx_param = spec.ctx.map(|ctx| {
        let ty = format_ident!("{}", ctx.type_name());
        quote!(, cx: &mut #rt::#ty<'_>)
    });
    let cx_arg = hook.takes_context.then(|| quote!(, cx));
    let unused_cx = (spec.ctx.is_some() && !hook.takes_context).then(|| quote!(let _ = cx;));

    let ret_span = return_span(hook);
    let (ret, conversion) = match spec.step {
        Some(Step::Training) => {
            let conversion = match mode {
                Optimization::Automatic => quote!(#rt::IntoTrainingOutput::into_training_output(__value)),
                Optimization::Manual => quote!(#rt::IntoManualOutput::into_manual_output(__value)),
            };
            (
                quote!(-> ::core::option::Option<#rt::StepOutput<Self::TrainExtra>>),
                respan(conversion, ret_span),
            )
        }
        Some(_) => (
            {
                let ret = table_tokens(spec.ret, RT);
                quote!(-> #ret)
            },
            quote!(::core::option::Option::Some(__value)),
        ),
        None => {
            let ret = (!spec.ret.is_empty()).then(|| {
                let ret = table_tokens(spec.ret, RT);
                quote!(-> #ret)
            });
            let conversion = match spec.convert {
                Some((_, conversion)) => {
                    respan(table_tokens(&conversion.replace("$v", "__value"), RT), ret_span)
                }
                None => respan(quote!(__value), ret_span),
            };
            (ret.unwrap_or_default(), conversion)
        }
    };

    quote! {
        #[inline]
        #[allow(unused_variables, clippy::unused_unit, clippy::let_unit_value, clippy::needless_lifetimes)]
        fn #name(&mut self #(, #names: #types)* #cx_param) #ret {
            #unused_cx
            let __value = <#self_ty>::#method(self #(, #args)* #cx_arg);
            #conversion
        }
    }
}

/// Gives every token of `tokens` the location of `span` (keeping call-site hygiene).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = TokenTree::Group(new);
            } else {
                tree.set_span(span.resolved_at(Span::call_site()));
            }
            tree
        })
        .collect()
}
