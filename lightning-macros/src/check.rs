//! The rules a `#[lightning_module]` must follow, one function per rule (serde's `check.rs`).
//! Type-level facts (argument and return types) are left to rustc through spanned glue code.

use crate::hook_table::{Ctx, Mode};
use crate::model::{HookFn, ModuleImpl, ModuleStruct, Optimization};
use crate::parse::Errors;
use syn::spanned::Spanned;

pub fn module_struct(module: &ModuleStruct, errors: &mut Errors) {
    has_named_fields(module, errors);
    derives_module(module, errors);
}

fn has_named_fields(module: &ModuleStruct, errors: &mut Errors) {
    if !matches!(module.item.fields, syn::Fields::Named(_)) {
        errors.spanned(
            &module.item.ident,
            "`#[lightning_module]` expects a struct with named fields, like the burn modules `#[derive(Module)]` builds",
        );
    }
}

/// The attribute must sit above `#[derive(Module)]`: it rewrites fields before the derive reads them.
fn derives_module(module: &ModuleStruct, errors: &mut Errors) {
    let derives_module = module.item.attrs.iter().any(|attr| {
        if !attr.path().is_ident("derive") {
            return false;
        }
        let mut found = false;
        let _ = attr.parse_nested_meta(|meta| {
            found |= meta.path.segments.last().is_some_and(|s| s.ident == "Module");
            Ok(())
        });
        found
    });
    if !derives_module {
        errors.spanned(
            &module.item.ident,
            format!(
                "`{}` must derive burn's `Module` below `#[lightning_module]`\n\
                 help: add `#[derive(Module, Debug)]` on the line after `#[lightning_module]`",
                module.item.ident
            ),
        );
    }
}

pub fn module_impl(module: &ModuleImpl, errors: &mut Errors) {
    if module.item.trait_.is_some() {
        errors.spanned(
            &module.item.self_ty,
            "`#[lightning_module]` goes on the inherent impl block of the module (`impl MyModel { .. }`), not on a trait impl",
        );
        return;
    }
    no_duplicate_hooks(&module.hooks, errors);
    for hook in &module.hooks {
        takes_self_by_reference(hook, errors);
        is_plain_method(hook, errors);
        has_expected_parameters(hook, errors);
        context_matches(hook, errors);
        belongs_to_mode(hook, module.mode, errors);
        step_output_is_nameable(hook, errors);
    }
}

fn no_duplicate_hooks(hooks: &[HookFn], errors: &mut Errors) {
    for (i, hook) in hooks.iter().enumerate() {
        if let Some(first) = hooks[..i].iter().find(|h| h.spec.name == hook.spec.name) {
            errors.spanned(
                &hook.method,
                format!(
                    "duplicate hook `{}`: it is already implemented by `{}`",
                    hook.spec.name, first.method
                ),
            );
        }
    }
}

fn takes_self_by_reference(hook: &HookFn, errors: &mut Errors) {
    let name = hook.spec.name;
    match hook.sig.receiver() {
        None => errors.spanned(
            &hook.sig,
            format!("hook `{name}` must be a method: add `&self` or `&mut self` as its first parameter"),
        ),
        Some(receiver) if !matches!(receiver.kind, syn::ReceiverKind::Reference(..)) => {
            errors.spanned(
                receiver,
                format!(
                    "hook `{name}` must take `&self` or `&mut self`: the trainer keeps ownership of the module between hooks\n\
                     help: write `&mut self` to change the module, `&self` to read it"
                ),
            )
        }
        Some(_) => {}
    }
}

fn is_plain_method(hook: &HookFn, errors: &mut Errors) {
    let name = hook.spec.name;
    if let Some(asyncness) = &hook.sig.asyncness {
        errors.spanned(asyncness, format!("hook `{name}` cannot be `async`: the trainer calls hooks synchronously"));
    }
    if let Some(param) = hook
        .sig
        .generics
        .params
        .iter()
        .find(|p| !matches!(p, syn::GenericParam::Lifetime(_)))
    {
        errors.spanned(
            param,
            format!("hook `{name}` cannot be generic: the trainer calls it with one fixed signature"),
        );
    }
}

fn has_expected_parameters(hook: &HookFn, errors: &mut Errors) {
    let spec = hook.spec;
    let found = hook.param_types().len();
    let expected = spec.params.len();
    let fits = found == expected || (spec.ctx.is_some() && found == expected + 1);
    if fits {
        return;
    }
    let plural = |n: usize| if n == 1 { "parameter" } else { "parameters" };
    let wanted = if spec.params.is_empty() {
        "no parameters".to_string()
    } else {
        format!("{expected} {}", plural(expected))
    };
    let optional_cx = match spec.ctx {
        Some(ctx) => format!(", optionally followed by `cx: &mut {}`", ctx.type_name()),
        None => String::new(),
    };
    let span_target: &dyn quote::ToTokens =
        if hook.sig.inputs.is_empty() { &hook.sig } else { &hook.sig.inputs };
    errors.spanned(
        span_target,
        format!(
            "hook `{}` takes {wanted} after the receiver{optional_cx}, but `{}` has {found}\n\
             note: expected `fn {}(&mut self, {})`",
            spec.name,
            hook.method,
            spec.name,
            spec.params_for_humans()
        ),
    );
}

/// The context type decides what a hook may log, so a wrong one is worth its own message.
fn context_matches(hook: &HookFn, errors: &mut Errors) {
    let Some(expected) = hook.spec.ctx else { return };
    if !hook.takes_context {
        return;
    }
    let Some(ty) = hook.param_types().last().copied() else { return };
    let Some(found) = context_type_name(ty) else { return };
    if found != expected.type_name() {
        errors.spanned(
            ty,
            format!(
                "hook `{}` receives `&mut {}`, not `&mut {found}`: {}\n\
                 note: Lightning finds this only at run time; here the context type decides what a hook may log",
                hook.spec.name,
                expected.type_name(),
                expected.what_it_logs(),
            ),
        );
    }
}

/// `HookContext`, `EpochContext` or `StepContext` when `ty` names one of them.
fn context_type_name(ty: &syn::Type) -> Option<&'static str> {
    let syn::Type::Reference(reference) = ty else { return None };
    let syn::Type::Path(path) = &*reference.elem else { return None };
    let last = path.path.segments.last()?.ident.to_string();
    [Ctx::Hook, Ctx::Epoch, Ctx::Step]
        .into_iter()
        .map(Ctx::type_name)
        .find(|name| *name == last)
}

fn belongs_to_mode(hook: &HookFn, mode: Optimization, errors: &mut Errors) {
    if mode == Optimization::Manual && hook.spec.mode == Mode::Automatic {
        errors.spanned(
            &hook.method,
            format!(
                "hook `{}` is never called under manual optimization: `training_step` drives the optimizer itself\n\
                 help: remove `manual_optimization` from `#[lightning_module(..)]`, or do this work inside `training_step`",
                hook.spec.name
            ),
        );
    }
}

fn step_output_is_nameable(hook: &HookFn, errors: &mut Errors) {
    if hook.spec.step.is_none() {
        return;
    }
    if let Some(syn::Type::ImplTrait(ty)) = hook.return_type() {
        errors.push(syn::Error::new(
            ty.span(),
            format!(
                "`{}` must return a named type: its output type is recorded on the module\n\
                 help: replace `impl ..` with the concrete type",
                hook.spec.name
            ),
        ));
    }
}
