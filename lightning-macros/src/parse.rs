//! From the user's tokens to the [model](crate::model): reads attributes, strips the helper
//! attributes (`#[hook]`, `#[hparam]`) and records what it saw. Rules live in [check](crate::check).

use crate::errors::Errors;
use crate::hook_table;
use crate::model::{HookFn, Hparam, ModuleImpl, ModuleStruct, Optimization};
use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::{Span, TokenStream};

#[derive(FromMeta, Default)]
struct ImplArgs {
    manual_optimization: darling::util::Flag,
    /// `crate = path`: where the facade is, when not at `::burn_lightning`.
    #[darling(rename = "crate")]
    krate: Option<CratePath>,
}

/// The path of `crate = some::path` or `crate = "some::path"` (serde's `#[serde(crate = "..")]`):
/// where generated code finds the `burn_lightning` facade when the user's crate renamed it or
/// re-exports it.
struct CratePath(syn::Path);

impl FromMeta for CratePath {
    fn from_expr(expr: &syn::Expr) -> darling::Result<Self> {
        crate_path(expr).map(Self).map_err(darling::Error::from)
    }
}

fn crate_path(expr: &syn::Expr) -> syn::Result<syn::Path> {
    match expr {
        syn::Expr::Path(syn::ExprPath { qself: None, path, .. }) => Ok(path.clone()),
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(text),
            ..
        }) => text.parse_with(syn::Path::parse_mod_style).map_err(|_| {
            syn::Error::new(
                text.span(),
                format!(
                    "`crate` takes the path of the `burn_lightning` crate, but `{}` is not a path",
                    text.value()
                ),
            )
        }),
        other => Err(syn::Error::new_spanned(
            other,
            "`crate` takes the path of the `burn_lightning` crate\nhelp: write `crate = path::to::burn_lightning`",
        )),
    }
}

/// The facade's path in generated code: `::burn_lightning` unless `crate = path` says otherwise.
pub fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::burn_lightning)
}

#[derive(FromMeta, Default)]
struct HookArgs {
    /// Implement this hook under another method name: `name = "on_train_epoch_end"`.
    name: Option<HookName>,
}

/// The string of `#[hook(name = "...")]`; darling would say "Unexpected type `path`" for an
/// unquoted name.
struct HookName(syn::LitStr);

impl FromMeta for HookName {
    fn from_expr(expr: &syn::Expr) -> darling::Result<Self> {
        match expr {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            }) => Ok(Self(name.clone())),
            other => {
                let written = quote::ToTokens::to_token_stream(other).to_string();
                Err(darling::Error::custom(format!(
                    "`name` takes the hook's name as a string\nhelp: write `#[hook(name = \"{written}\")]`"
                ))
                .with_span(other))
            }
        }
    }
}

#[derive(FromMeta, Default)]
struct HparamArgs {
    default: Option<syn::Expr>,
}

/// `#[lightning_module]` on a struct takes no arguments but `crate = path`; returns the facade's
/// path.
pub fn struct_args(args: TokenStream, errors: &mut Errors) -> syn::Path {
    let mut krate = None;
    if args.is_empty() {
        return default_crate_path();
    }
    match NestedMeta::parse_meta_list(args) {
        Ok(list) => {
            for arg in list {
                if let NestedMeta::Meta(syn::Meta::NameValue(nv)) = &arg
                    && nv.path.is_ident("crate")
                {
                    if krate.is_some() {
                        errors.spanned(&nv.path, "duplicate `crate` argument");
                        continue;
                    }
                    match crate_path(&nv.value) {
                        Ok(path) => krate = Some(path),
                        Err(e) => errors.push(e),
                    }
                    continue;
                }
                let help = match &arg {
                    NestedMeta::Meta(meta) if meta.path().is_ident("manual_optimization") => {
                        "\nhelp: `manual_optimization` goes on the impl block: `#[lightning_module(manual_optimization)] impl ..`"
                    }
                    _ => "",
                };
                errors.spanned(
                    &arg,
                    format!("`#[lightning_module]` on a struct takes no arguments other than `crate = path`{help}"),
                );
            }
        }
        Err(e) => errors.push(e),
    }
    krate.unwrap_or_else(default_crate_path)
}

pub fn module_struct(mut item: syn::ItemStruct, krate: syn::Path, errors: &mut Errors) -> ModuleStruct {
    let mut hparams = Vec::new();
    if let syn::Fields::Named(fields) = &mut item.fields {
        for field in &mut fields.named {
            let mut marked = None;
            let mut kept = Vec::with_capacity(field.attrs.len());
            for attr in std::mem::take(&mut field.attrs) {
                if is_path(attr.path(), "hparam", &krate) {
                    if marked.is_some() {
                        errors.spanned(&attr, "duplicate `#[hparam]` attribute");
                        continue;
                    }
                    marked = Some(hparam_args(&attr, errors));
                } else {
                    kept.push(attr);
                }
            }
            field.attrs = kept;
            if let Some(args) = marked {
                let docs = field
                    .attrs
                    .iter()
                    .filter(|a| a.path().is_ident("doc"))
                    .cloned()
                    .collect();
                // Hyperparameters are configuration, not parameters: burn must not look for a
                // sub-module in them.
                field.attrs.push(syn::parse_quote!(#[module(skip)]));
                hparams.push(Hparam {
                    ident: field.ident.clone().expect("named field"),
                    ty: field.ty.clone(),
                    default: args.default,
                    docs,
                });
            }
        }
    }
    ModuleStruct { item, hparams, krate }
}

fn hparam_args(attr: &syn::Attribute, errors: &mut Errors) -> HparamArgs {
    // darling would say "Unexpected meta-item format `word`" for a bare `default`.
    if let syn::Meta::List(list) = &attr.meta
        && let Ok(items) = NestedMeta::parse_meta_list(list.tokens.clone())
        && let Some(path) = items.iter().find_map(|item| match item {
            NestedMeta::Meta(syn::Meta::Path(path)) if path.is_ident("default") => Some(path),
            _ => None,
        })
    {
        errors.spanned(
            path,
            "`default` needs a value: the hyperparameter's default\nhelp: write `#[hparam(default = value)]`, or `#[hparam]` for a required hyperparameter",
        );
        return HparamArgs::default();
    }
    match &attr.meta {
        syn::Meta::Path(_) => HparamArgs::default(),
        meta => HparamArgs::from_meta(meta).unwrap_or_else(|e| {
            errors.push_darling(e);
            HparamArgs::default()
        }),
    }
}

pub fn module_impl(args: TokenStream, mut item: syn::ItemImpl, errors: &mut Errors) -> ModuleImpl {
    let args = match NestedMeta::parse_meta_list(args.clone()) {
        Ok(list) => ImplArgs::from_list(&list).unwrap_or_else(|e| {
            errors.push_darling(e.with_span(&args));
            ImplArgs::default()
        }),
        Err(e) => {
            errors.push(e);
            ImplArgs::default()
        }
    };
    let krate = args.krate.map_or_else(default_crate_path, |CratePath(path)| path);
    let (mode, mode_span) = if args.manual_optimization.is_present() {
        (Optimization::Manual, args.manual_optimization.span())
    } else {
        (Optimization::Automatic, Span::call_site())
    };

    let mut hooks = Vec::new();
    for impl_item in &mut item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut hook_attr = None;
        let mut kept = Vec::with_capacity(method.attrs.len());
        for attr in std::mem::take(&mut method.attrs) {
            if is_hook_path(attr.path(), &krate) {
                if hook_attr.is_some() {
                    errors.spanned(&attr, "duplicate `#[hook]` attribute");
                    continue;
                }
                hook_attr = Some(attr);
            } else {
                kept.push(attr);
            }
        }
        method.attrs = kept;

        let Some(attr) = hook_attr else {
            if let Some(spec) = hook_table::find(&method.sig.ident.to_string())
                && spec.owner != hook_table::Owner::Callback
            {
                errors.spanned(
                    &method.sig.ident,
                    format!(
                        "method `{}` has the name of a hook but is not marked `#[hook]`, so the trainer would never call it\n\
                         help: add `#[hook]` above it, or rename it",
                        spec.name
                    ),
                );
            }
            continue;
        };
        let hook_args = match &attr.meta {
            syn::Meta::Path(_) => HookArgs::default(),
            meta => match HookArgs::from_meta(meta) {
                Ok(args) => args,
                // Which hook the method implements is unknown: say nothing more about it.
                Err(e) => {
                    errors.push_darling(e);
                    continue;
                }
            },
        };
        let (name, name_span) = match hook_args.name {
            Some(HookName(name)) => (name.value(), name.span()),
            None => (method.sig.ident.to_string(), method.sig.ident.span()),
        };
        let Some(spec) = hook_table::find(&name).filter(|s| s.owner != hook_table::Owner::Callback) else {
            errors.push(unknown_hook(&name, name_span));
            continue;
        };
        let expected = spec.params.len();
        let types: Vec<&syn::Type> = method
            .sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                syn::FnArg::Typed(pat) => Some(&*pat.ty),
                syn::FnArg::Receiver(_) => None,
            })
            .collect();
        let found = types.len();
        // The context is a `&mut` reference after the hook's parameters; with an optional
        // `dataloader_idx` left out, `(batch, batch_idx, cx)` has as many as
        // `(batch, batch_idx, dataloader_idx)`, and the context's `&mut` tells them apart.
        let last_is_mut_ref = types
            .last()
            .is_some_and(|ty| matches!(ty, syn::Type::Reference(r) if r.mutability.is_some()));
        let takes_context = spec.ctx.is_some()
            && (found == expected + 1 || (spec.dataloader_idx && found == expected && last_is_mut_ref));
        let takes_dataloader_idx = spec.dataloader_idx && found - usize::from(takes_context) == expected;
        hooks.push(HookFn {
            spec,
            method: method.sig.ident.clone(),
            sig: method.sig.clone(),
            takes_context,
            takes_dataloader_idx,
            summary: first_doc_line(&method.attrs),
        });
    }
    ModuleImpl {
        item,
        krate,
        mode,
        mode_span,
        hooks,
    }
}

fn unknown_hook(name: &str, span: Span) -> syn::Error {
    if hook_table::find(name).is_some() {
        return syn::Error::new(
            span,
            format!(
                "`{name}` is a callback hook: a module cannot implement it\n\
                 help: implement `{name}` on a type that implements `Callback` and pass it to `Trainer::builder().callback(..)`"
            ),
        );
    }
    let message = match hook_table::closest_module_hook(name) {
        Some(close) => format!("unknown hook `{name}`\nhelp: a hook with a similar name exists: `{close}`"),
        None => format!(
            "unknown hook `{name}`\n\
             help: `#[hook]` marks methods the trainer calls, such as `training_step` or `on_train_epoch_end`; \
             remove it from helper methods"
        ),
    };
    syn::Error::new(span, message)
}

/// `hook`, `burn_lightning::hook`, `::burn_lightning::hook`, or the same under the path given
/// with `crate = path` (or its end: `renamed::hook` with `crate = crate::renamed`).
fn is_hook_path(path: &syn::Path, krate: &syn::Path) -> bool {
    is_path(path, "hook", krate)
}

fn is_path(path: &syn::Path, name: &str, krate: &syn::Path) -> bool {
    let idents = |path: &syn::Path| -> Vec<String> { path.segments.iter().map(|s| s.ident.to_string()).collect() };
    let segments = idents(path);
    let Some((last, prefix)) = segments.split_last() else {
        return false;
    };
    last == name && (prefix.is_empty() || prefix == ["burn_lightning"] || idents(krate).ends_with(prefix))
}

/// The first paragraph of a doc comment, on one line.
pub fn first_doc_line(attrs: &[syn::Attribute]) -> Option<String> {
    let mut text = String::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        let syn::Meta::NameValue(nv) = &attr.meta else { continue };
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s), ..
        }) = &nv.value
        else {
            continue;
        };
        let line = s.value();
        let line = line.trim();
        if line.is_empty() {
            if text.is_empty() {
                continue;
            }
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(line);
    }
    (!text.is_empty()).then_some(text)
}
