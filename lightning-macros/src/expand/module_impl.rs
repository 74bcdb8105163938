//! `#[lightning_module]` on the impl block: the `LightningModule` implementation (the static
//! dispatch table), the capability markers `Trainer::fit` and friends require, and the docs.
//!
//! Each hook becomes a trait method forwarding to the user's method. Arguments and the return
//! conversion carry the spans of the user's parameter and return types, so a type error points
//! at the user's signature.

use super::{docs, private_path, runtime::variant, table_tokens};
use crate::hook_table::{AUTOMATIC_OPTIMIZATION, MANUAL_OPTIMIZATION, STAGE_SUFFIXES, Step};
use crate::model::{HookFn, ModuleImpl, Optimization};
use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

/// The items that go beside the impl block. The generated docs go on the `LightningModule`
/// implementation: it is public, where the user's hook methods usually are not.
///
/// `valid` says, for each hook, whether it passed the checks: only those are forwarded to. The
/// associated types and the capability markers still come from every hook, so that one bad hook
/// is reported once, and not again where the module is used.
pub fn expand(module: &mut ModuleImpl, valid: &[bool]) -> TokenStream {
    let section = docs::module_impl_section(module);

    let rt = private_path(&module.krate);
    let self_ty = &module.item.self_ty;
    let (impl_generics, _, where_clause) = module.item.generics.split_for_impl();

    let step = |which: Step| module.hooks.iter().find(|h| h.spec.step == Some(which));
    let unit = quote!(());
    // Each stage's batch type is its step's `batch` parameter. A stage without its step takes
    // the type of the stage before it (as `DataModule<T, V = T, Te = V, P = Te>` does), so that a
    // datamodule of one batch type serves every stage; training, without `training_step`, takes
    // the type of the first step there is.
    let batch_of = |which: Step| step(which).and_then(|h| h.param_types().first().map(|ty| quote!(#ty)));
    let batch = [Step::Training, Step::Validation, Step::Test, Step::Predict]
        .into_iter()
        .find_map(batch_of)
        .unwrap_or_else(|| unit.clone());
    let val_batch = batch_of(Step::Validation).unwrap_or_else(|| batch.clone());
    let test_batch = batch_of(Step::Test).unwrap_or_else(|| val_batch.clone());
    let predict_batch = batch_of(Step::Predict).unwrap_or_else(|| test_batch.clone());
    // What a step hook produces (its `Ok` type when it returns a `Result`). `impl Trait` cannot
    // be an associated type; that error is reported by the checks.
    let output = |which: Step| {
        step(which)
            .and_then(HookFn::value_type)
            .filter(|ty| !matches!(ty, syn::Type::ImplTrait(_)))
            .map(|ty| quote!(#ty))
            .unwrap_or_else(|| unit.clone())
    };
    // Spanned at the user's return type (or method name): a return type that is not a training
    // output is reported there.
    let train_extra = match step(Step::Training) {
        Some(hook) if !matches!(hook.value_type(), Some(syn::Type::ImplTrait(_))) => {
            let span = value_span(hook);
            let ret = match hook.value_type() {
                None => quote_spanned!(span=> ()),
                Some(_) => output(Step::Training),
            };
            let bound = match module.mode {
                Optimization::Automatic => quote!(#rt::IntoTrainingOutput),
                Optimization::Manual => quote!(#rt::IntoManualOutput),
            };
            let item = at(quote!(type TrainExtra = <__UserReturn as #bound>::Extra;), span);
            replace_idents(item, &[format_ident!("__UserReturn")], &[ret])
        }
        _ => quote! { type TrainExtra = (); },
    };
    let validation_output = output(Step::Validation);
    let test_output = output(Step::Test);
    let prediction = output(Step::Predict);
    let mode = match module.mode {
        Optimization::Automatic => quote!(#rt::Optimization::Automatic),
        Optimization::Manual => quote!(#rt::Optimization::Manual),
    };
    let forwarded = || {
        module
            .hooks
            .iter()
            .zip(valid)
            .filter(|(_, valid)| **valid)
            .map(|(hook, _)| hook)
    };
    let overridden: Vec<_> = forwarded().map(|h| variant(h.spec)).collect();
    let methods = forwarded().map(|hook| match hook.spec.per_stage {
        true => per_stage_forwards(hook, self_ty, module.mode, &rt),
        false => forward(hook, &format_ident!("{}", hook.spec.name), self_ty, module.mode, &rt),
    });

    let markers = markers(module);
    let configured = configured_optimizers(module);

    quote! {
        const _: () = {
            #[doc = #section]
            #[automatically_derived]
            impl #impl_generics #rt::LightningModule for #self_ty #where_clause {
                type Batch = #batch;
                type ValBatch = #val_batch;
                type TestBatch = #test_batch;
                type PredictBatch = #predict_batch;
                #train_extra
                type ValidationOutput = #validation_output;
                type TestOutput = #test_output;
                type Prediction = #prediction;
                const OPTIMIZATION: #rt::Optimization = #mode;
                const OVERRIDDEN: #rt::HookSet = #rt::HookSet::of(&[#(#rt::Hook::#overridden),*]);

                #(#methods)*
            }

            #markers
            #configured
        };
    }
}

/// `ConfiguredOptimizers`: the return type of `configure_optimizers` as the module's optimizers
/// (what `self.optimizers()` returns handles for, what `cx.optimizer_step` checks), at the
/// user's return type.
fn configured_optimizers(module: &ModuleImpl) -> TokenStream {
    let rt = private_path(&module.krate);
    let self_ty = &module.item.self_ty;
    let (impl_generics, _, where_clause) = module.item.generics.split_for_impl();
    // Without `configure_optimizers` (which `Trainer::fit` requires anyway), or when it returns
    // `impl Trait` (reported by the checks), the module counts as having one optimizer, so that
    // no second error is reported where it steps one.
    let user_type = module
        .hooks
        .iter()
        .find(|h| h.spec.name == "configure_optimizers")
        .and_then(|hook| {
            let ty = hook.value_type().filter(|ty| !matches!(ty, syn::Type::ImplTrait(_)))?;
            Some((ty.to_token_stream(), value_span(hook)))
        });
    let Some((ty, span)) = user_type else {
        return quote! {
            #[automatically_derived]
            impl #impl_generics #rt::ConfiguredOptimizers for #self_ty #where_clause {
                type Config = #rt::OptimizerConfig;
            }
        };
    };
    let item = at(
        quote! {
            #[automatically_derived]
            impl #impl_generics #rt::ConfiguredOptimizers for #self_ty #where_clause {
                type Config = __UserReturn;
            }
        },
        span,
    );
    replace_idents(item, &[format_ident!("__UserReturn")], &[ty])
}

/// `TrainingStep`, `ConfigureOptimizers`, ...: what `Trainer::fit`, `validate`, `test` and
/// `predict` require, so a missing hook is a trait-bound error at the call.
fn markers(module: &ModuleImpl) -> TokenStream {
    let rt = private_path(&module.krate);
    let self_ty = &module.item.self_ty;
    let (impl_generics, _, where_clause) = module.item.generics.split_for_impl();
    // A duplicated hook (reported by the checks) must not implement its marker twice.
    let mut markers: Vec<&str> = module
        .hooks
        .iter()
        .filter_map(|h| h.spec.marker)
        .map(|m| m.name)
        .collect();
    markers.sort_unstable();
    markers.dedup();
    markers.push(match module.mode {
        Optimization::Automatic => AUTOMATIC_OPTIMIZATION.name,
        Optimization::Manual => MANUAL_OPTIMIZATION.name,
    });
    let traits: Vec<_> = markers.iter().map(|marker| format_ident!("{marker}")).collect();
    let mode_span = module.mode_span;
    quote_spanned! {mode_span=>
        #(
            #[automatically_derived]
            impl #impl_generics #rt::#traits for #self_ty #where_clause {}
        )*
    }
}

/// The span of the user's return type (of its first token: spans cannot be joined here), or of
/// the method's name when it has none.
fn return_span(hook: &HookFn) -> Span {
    match &hook.sig.output {
        syn::ReturnType::Default => hook.sig.ident.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    }
}

/// The span of what the hook produces: the `Ok` type of a `Result`, else as [`return_span`].
fn value_span(hook: &HookFn) -> Span {
    match hook.result() {
        Some(result) => result.ok.span(),
        None => return_span(hook),
    }
}

/// The generic type parameter a per-stage hook takes its batch as
/// (`fn on_after_batch_transfer<B: Augment>(&mut self, batch: B, ..) -> B`), if it is generic.
fn batch_type_param(hook: &HookFn) -> Option<Ident> {
    let first = hook.hook_param_types().into_iter().next()?;
    let syn::Type::Path(path) = first else {
        return None;
    };
    let ident = path.path.get_ident().filter(|_| path.qself.is_none())?;
    hook.sig
        .generics
        .type_params()
        .any(|param| param.ident == *ident)
        .then(|| ident.clone())
}

/// A batch-transfer hook's methods, one per stage: the training stage's as any hook's, and one
/// per other stage on that stage's batch type. A generic hook is instantiated at each stage's
/// type (rustc checks its bounds there); one taking a single type serves the other stages
/// through `*BatchOfHook`, whose message names the stage whose type differs.
fn per_stage_forwards(hook: &HookFn, self_ty: &syn::Type, mode: Optimization, rt: &TokenStream) -> TokenStream {
    let spec = hook.spec;
    let hook_name = format_ident!("{}", spec.name);
    let stage_name = |suffix: &str| format_ident!("{}_{suffix}", spec.name);
    let stage_type = |batch: &str| batch.parse::<TokenStream>().expect("a stage's batch type parses");
    if let Some(param) = batch_type_param(hook) {
        let mut methods = TokenStream::new();
        for (name, batch) in std::iter::once((hook_name, "Self::Batch")).chain(
            STAGE_SUFFIXES
                .iter()
                .map(|(suffix, batch, _)| (stage_name(suffix), *batch)),
        ) {
            let method = forward(hook, &name, self_ty, mode, rt);
            methods.extend(replace_idents(
                method,
                std::slice::from_ref(&param),
                &[stage_type(batch)],
            ));
        }
        return methods;
    }
    let mut methods = forward(hook, &hook_name, self_ty, mode, rt);
    let Some(user_type) = hook.hook_param_types().into_iter().next() else {
        return methods;
    };
    let span = user_type.span();
    let rt_text = rt.to_string();
    let names: Vec<_> = spec.params[1..].iter().map(|(n, _)| format_ident!("{n}")).collect();
    let types: Vec<_> = spec.params[1..]
        .iter()
        .map(|(_, ty)| table_tokens(ty, &rt_text))
        .collect();
    let cx = spec.ctx.map(|ctx| format_ident!("{}", ctx.type_name()));
    let (cx_param, cx_arg) = match &cx {
        Some(ty) => (quote!(, cx: &mut #rt::#ty<'_>), quote!(, cx)),
        None => (quote!(), quote!()),
    };
    for (suffix, batch, _) in STAGE_SUFFIXES {
        let name = stage_name(suffix);
        let batch = stage_type(batch);
        let check = format_ident!(
            "{}BatchOfHook",
            match suffix {
                "val" => "Val",
                "test" => "Test",
                _ => "Predict",
            }
        );
        let through = replace_idents(
            at(quote!(<#batch as #rt::__codegen::#check<__UserType>>::through), span),
            &[format_ident!("__UserType")],
            &[user_type.to_token_stream()],
        );
        methods.extend(quote! {
            #[inline]
            fn #name(&mut self, batch: #batch #(, #names: #types)* #cx_param) -> ::core::result::Result<#batch, #rt::Error> {
                #through(batch, |batch| <Self as #rt::LightningModule>::#hook_name(self, batch #(, #names)* #cx_arg))
            }
        });
    }
    methods
}

fn forward(hook: &HookFn, name: &Ident, self_ty: &syn::Type, mode: Optimization, rt: &TokenStream) -> TokenStream {
    let spec = hook.spec;
    let rt_text = rt.to_string();
    let method = &hook.method;

    let names: Vec<_> = spec.params.iter().map(|(n, _)| format_ident!("{n}")).collect();
    // The trait method is declared with the user's own parameter types (the checks made sure
    // there is one per hook parameter), so a wrong type is rustc's "incompatible type for
    // trait" error at the user's parameter, naming the type the hook takes.
    let mut types: Vec<TokenStream> = hook
        .hook_param_types()
        .into_iter()
        .take(names.len())
        .map(|ty| ty.to_token_stream())
        .collect();
    // A method without the optional `dataloader_idx`: the trait method still receives it.
    let args: Vec<&Ident> = if spec.dataloader_idx && !hook.takes_dataloader_idx {
        types.push(quote!(usize));
        names[..names.len() - 1].iter().collect()
    } else {
        names.iter().collect()
    };

    let cx_param = spec.ctx.map(|ctx| {
        let ty = format_ident!("{}", ctx.type_name());
        quote!(, cx: &mut #rt::#ty<'_>)
    });
    let cx_arg = hook.takes_context.then(|| quote!(, cx));
    let unused_cx = (spec.ctx.is_some() && !hook.takes_context).then(|| quote!(let _ = cx;));

    // What the hook produces (the `Ok` type of a `Result`), or `()` at the method's name.
    let value_span = value_span(hook);
    let user_value = match hook.value_type() {
        Some(ty) => ty.to_token_stream(),
        None => quote_spanned!(value_span=> ()),
    };
    // A `Result` is unwrapped first: its error becomes the run's error (`?`). The error type is
    // named in the turbofish, as the user wrote it (or as `<Alias as HookResult>::Err` covering
    // the alias), so that one that does not convert is reported there, with `HookError`'s message.
    let unwrap_result = hook.result().map(|result| {
        let user_result = hook.return_type().map(ToTokens::to_token_stream).unwrap_or_default();
        let err = match result.err {
            Some(err) => err.to_token_stream(),
            None => around(
                quote!(<),
                user_result.clone(),
                quote!(as #rt::HookResult>::Err),
                return_span(hook),
            ),
        };
        let err_span = result.err.map_or_else(|| return_span(hook), Spanned::span);
        let statement = at(
            quote!(let __value = #rt::__codegen::hook_result::<__UserError, __UserResult>(__value)?;),
            err_span,
        );
        replace_idents(
            statement,
            &[format_ident!("__UserError"), format_ident!("__UserResult")],
            &[err, user_result],
        )
    });
    // A conversion trait is named with the user's type as `Self` (`<UserType as Trait>::f`), so
    // that a type that does not implement it is reported at the user's type, with the trait's
    // `on_unimplemented` message and its parameters spelled out.
    let result_of = |ret: TokenStream| quote!(::core::result::Result<#ret, #rt::Error>);
    let (hook_return, conversion) = match spec.step {
        Some(Step::Training) => {
            let conversion = match mode {
                Optimization::Automatic => {
                    quote!(<__UserReturn as #rt::IntoTrainingOutput>::into_training_output(__value))
                }
                Optimization::Manual => quote!(<__UserReturn as #rt::IntoManualOutput>::into_manual_output(__value)),
            };
            (
                result_of(quote!(::core::option::Option<#rt::StepOutput<Self::TrainExtra>>)),
                conversion,
            )
        }
        Some(_) => (
            result_of(table_tokens(spec.ret, &rt_text)),
            quote!(::core::option::Option::Some(__value)),
        ),
        None => match spec.convert {
            // Several optimizers under automatic optimization do not compile, reported at the
            // user's return type.
            Some(_) if spec.name == "configure_optimizers" && mode == Optimization::Automatic => (
                result_of(table_tokens(spec.ret, &rt_text)),
                at(
                    quote!(::core::option::Option::Some(
                        #rt::__codegen::automatic_optimizer_configs::<__UserReturn>(__value)
                    )),
                    value_span,
                ),
            ),
            Some((bound, conversion)) => {
                let trait_path = bound.split('<').next().unwrap_or(bound);
                let conversion = conversion
                    .replace(&format!("{trait_path}::"), &format!("<__UserReturn as {bound}>::"))
                    .replace("$v", "__value");
                (
                    result_of(table_tokens(spec.ret, &rt_text)),
                    at(table_tokens(&conversion, &rt_text), value_span),
                )
            }
            // The checks made sure the user's return type is there exactly when the hook
            // returns a value: declared as the user wrote it, a wrong one is reported there, by
            // rustc, at the whole `Result<..>` of the signature, which is made to cover exactly
            // the user's type.
            None => (
                around(
                    quote!(::core::result::Result<),
                    user_value.clone(),
                    quote!(, #rt::Error>),
                    value_span,
                ),
                quote!(__value),
            ),
        },
    };

    let doc = hook.summary.as_ref().map(|summary| quote!(#[doc = #summary]));
    let placeholders: Vec<_> = (0..types.len()).map(|i| format_ident!("__UserType{i}")).collect();
    let forward = quote! {
        #doc
        #[inline]
        #[allow(unused_variables, clippy::unused_unit, clippy::let_unit_value, clippy::needless_lifetimes)]
        fn #name(&mut self #(, #names: #placeholders)* #cx_param) -> __HookReturn {
            #unused_cx
            let __value = <#self_ty>::#method(self #(, #args)* #cx_arg);
            __UnwrapResult
            ::core::result::Result::Ok(#conversion)
        }
    };
    // `training_step`'s signature names `Self::TrainExtra`, which only exists when the user's
    // return type is a training output, and rustc reports that from several places of the
    // method: located at the user's return type, the reports are identical and rustc shows one.
    // So is the report of the conversion, which would otherwise underline the whole type.
    let (forward, user_value, hook_return) = match spec.step {
        Some(Step::Training) => (
            at(forward, value_span),
            at(user_value, value_span),
            at(hook_return, value_span),
        ),
        _ => (forward, user_value, hook_return),
    };
    let mut placeholders = placeholders;
    placeholders.extend([
        format_ident!("__UserReturn"),
        format_ident!("__UnwrapResult"),
        format_ident!("__HookReturn"),
    ]);
    let mut types = types;
    types.extend([user_value, unwrap_result.unwrap_or_default(), hook_return]);
    replace_idents(forward, &placeholders, &types)
}

/// `before inner after`, with `before` at the first token of `inner` and `after` at its last:
/// a span rustc computes for the whole covers exactly `inner` (`fallback` when it is empty).
fn around(before: TokenStream, inner: TokenStream, after: TokenStream, fallback: Span) -> TokenStream {
    let first = inner.clone().into_iter().next().map_or(fallback, |tree| match tree {
        TokenTree::Group(group) => group.span_open(),
        tree => tree.span(),
    });
    let last = inner.clone().into_iter().last().map_or(fallback, |tree| match tree {
        TokenTree::Group(group) => group.span_close(),
        tree => tree.span(),
    });
    let mut tokens = at(before, first);
    tokens.extend(inner);
    tokens.extend(at(after, last));
    tokens
}

/// Replaces each of `idents` with the matching token stream of `by`, at any depth: puts the
/// user's own tokens, with their spans, into generated code that [`at`] moved.
fn replace_idents(tokens: TokenStream, idents: &[Ident], by: &[TokenStream]) -> TokenStream {
    tokens
        .into_iter()
        .flat_map(|tree| match tree {
            TokenTree::Ident(ident) => match idents.iter().position(|i| *i == ident) {
                Some(i) => by[i].clone(),
                None => TokenTree::Ident(ident).into(),
            },
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), replace_idents(group.stream(), idents, by));
                new.set_span(group.span());
                TokenTree::Group(new).into()
            }
            other => other.into(),
        })
        .collect()
}

/// Gives every token of `tokens` the span `span`, one of the user's: rustc then reports what
/// fails in these tokens as an error in the user's code, at that place.
fn at(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut new = Group::new(group.delimiter(), at(group.stream(), span));
                new.set_span(span);
                tree = TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
