//! The rules a `#[lightning_module]` must follow, one function per rule (serde's `check.rs`).
//! Type-level facts (argument and return types) are left to rustc through spanned glue code.

use crate::errors::Errors;
use crate::hook_table::{Ctx, Mode, Step, humanize};
use crate::model::{HookFn, ModuleImpl, ModuleStruct, Optimization};
use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::ToTokens;

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

/// Checks the impl block and returns, for each hook, whether it passed every check; `None` when
/// the block itself is wrong and nothing should be generated for it.
///
/// The expansion still implements `LightningModule` with the hooks that passed, so that one bad
/// hook is reported once, not again by every use of the module as a `LightningModule`.
///
/// Two rules repair what they report (as serde's checks may change the container), so that rustc
/// adds no error of its own for the same mistake: manual calls without `manual_optimization`
/// switch the block to manual optimization, and a manual `training_step(&self, ..)` gets
/// `&mut self`.
pub fn module_impl(module: &mut ModuleImpl, errors: &mut Errors) -> Option<Vec<bool>> {
    if module.item.trait_.is_some() {
        errors.spanned(
            &module.item.self_ty,
            "`#[lightning_module]` goes on the inherent impl block of the module (`impl MyModel { .. }`), not on a trait impl",
        );
        return None;
    }
    let written_mode = module.mode;
    manual_calls_need_the_attribute(module, errors);
    manual_training_step_takes_mut_self(module, errors);
    let mut valid = Vec::with_capacity(module.hooks.len());
    for (i, hook) in module.hooks.iter().enumerate() {
        let before = errors.count();
        is_not_duplicate(hook, &module.hooks[..i], errors);
        takes_self_by_reference(hook, errors);
        is_plain_method(hook, errors);
        if declares_dataloader_idx_lightning_never_passes(hook, errors) {
            // Said once: the count of parameters is wrong for the same reason.
        } else if has_expected_parameters(hook, errors) {
            context_matches(hook, errors);
        }
        result_is_accepted(hook, errors);
        returns_what_the_hook_returns(hook, errors);
        // The mode as written: when it was inferred from manual calls, the one error says so.
        belongs_to_mode(hook, written_mode, errors);
        step_output_is_nameable(hook, errors);
        valid.push(errors.count() == before);
    }
    Some(valid)
}

/// `earlier`: the hooks before `hook` in the impl block.
fn is_not_duplicate(hook: &HookFn, earlier: &[HookFn], errors: &mut Errors) {
    if let Some(first) = earlier.iter().find(|h| h.spec.name == hook.spec.name) {
        let first = if first.method == first.spec.name {
            format!("the method `{}`", first.method)
        } else {
            format!("`{}` (`#[hook(name = \"{}\")]`)", first.method, first.spec.name)
        };
        errors.spanned(
            &hook.method,
            format!(
                "hook `{}` is implemented twice: {first} already implements it\n\
                 help: a module implements each hook once; merge the two methods, or call one from the other",
                hook.spec.name
            ),
        );
    }
}

fn takes_self_by_reference(hook: &HookFn, errors: &mut Errors) {
    let name = hook.spec.name;
    match hook.sig.receiver() {
        None => errors.spanned(
            name_and_params(&hook.sig),
            format!(
                "hook `{name}` must be a method: it has no `self` parameter\n\
                 help: add `&self` or `&mut self` as its first parameter"
            ),
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
        errors.spanned(
            asyncness,
            format!("hook `{name}` cannot be `async`: the trainer calls hooks synchronously"),
        );
    }
    // A hook that runs on every stage's batches may be generic over the batch type, with one
    // type parameter, its `batch` parameter's type: it is instantiated at each stage's type.
    let batch_param = hook
        .hook_param_types()
        .first()
        .and_then(|ty| match ty {
            syn::Type::Path(path) if path.qself.is_none() => path.path.get_ident(),
            _ => None,
        })
        .filter(|_| hook.spec.per_stage);
    let mut generic = hook
        .sig
        .generics
        .params
        .iter()
        .filter(|p| !matches!(p, syn::GenericParam::Lifetime(_)));
    let first = generic.next();
    let allowed = match first {
        Some(syn::GenericParam::Type(param)) => batch_param == Some(&param.ident),
        _ => false,
    };
    let unexpected = if allowed { generic.next() } else { first };
    if let Some(param) = unexpected {
        let message = match hook.spec.per_stage {
            true => format!(
                "hook `{name}` may be generic over its batch type only\n\
                 help: take one type parameter and the batch as it: `fn {name}<B: YourTrait>(&mut self, batch: B, ..) -> B`"
            ),
            false => format!("hook `{name}` cannot be generic: the trainer calls it with one fixed signature"),
        };
        errors.spanned(param, message);
    }
}

/// Returns whether the parameters fit, so that the context is only checked when there is one.
fn has_expected_parameters(hook: &HookFn, errors: &mut Errors) -> bool {
    let spec = hook.spec;
    let types = hook.param_types();
    let found = types.len();
    let expected = spec.params.len();
    // The optional context comes last and is always a `&mut` reference.
    let context_last = types
        .last()
        .is_some_and(|ty| matches!(ty, syn::Type::Reference(r) if r.mutability.is_some()));
    if found == expected || (spec.ctx.is_some() && found == expected + 1 && context_last) {
        return true;
    }
    // `dataloader_idx` may be left out.
    if spec.dataloader_idx && (found + 1 == expected || (spec.ctx.is_some() && found == expected && context_last)) {
        return true;
    }
    let plural = |n: usize| if n == 1 { "parameter" } else { "parameters" };
    let wanted = match expected {
        0 => "no parameters".to_string(),
        n => format!("{n} {}", plural(n)),
    };
    let optional_cx = match spec.ctx {
        Some(ctx) => format!(" and an optional `cx: &mut {}`", ctx.type_name()),
        None => String::new(),
    };
    let (wanted, optional_cx) = if spec.dataloader_idx {
        let n = expected - 1;
        (
            match n {
                0 => "no parameters".to_string(),
                n => format!("{n} {}", plural(n)),
            },
            format!(", an optional `dataloader_idx: usize`{optional_cx}"),
        )
    } else {
        (wanted, optional_cx)
    };
    let span_target = if hook.sig.inputs.is_empty() {
        name_and_params(&hook.sig)
    } else {
        hook.sig.inputs.to_token_stream()
    };
    errors.spanned(
        span_target,
        format!(
            "hook `{}` takes {wanted} after `self`{optional_cx}, but this method takes {found}\n\
             note: expected `fn {}({})`",
            spec.name,
            hook.method,
            ["&mut self".to_string(), spec.params_for_humans()]
                .join(", ")
                .trim_end_matches(", ")
        ),
    );
    false
}

/// Lightning passes `dataloader_idx` to the validation, test and predict steps and their batch
/// hooks only: a training hook that declares it (ported from `training_step(self, batch,
/// batch_idx, dataloader_idx)`) gets a message that says so, rather than a count of parameters.
/// Returns whether it reported.
fn declares_dataloader_idx_lightning_never_passes(hook: &HookFn, errors: &mut Errors) -> bool {
    // The batch-transfer hooks take it in every stage, training's included.
    if hook.spec.dataloader_idx || hook.spec.params.iter().any(|(name, _)| *name == "dataloader_idx") {
        return false;
    }
    let extra = hook.sig.inputs.iter().find(|arg| {
        matches!(arg, syn::FnArg::Typed(pat)
            if matches!(&*pat.pat, syn::Pat::Ident(ident) if ident.ident.to_string().trim_start_matches('_') == "dataloader_idx"))
    });
    let Some(param) = extra else { return false };
    errors.spanned(
        param,
        format!(
            "hook `{}` has no `dataloader_idx`: Lightning passes it only to the validation, test and predict steps \
             and their `on_*_batch_start` and `on_*_batch_end` hooks, whose stages may have several dataloaders\n\
             help: remove this parameter",
            hook.spec.name
        ),
    );
    true
}

/// The context type decides what a hook may log, so a wrong one is worth its own message.
fn context_matches(hook: &HookFn, errors: &mut Errors) {
    let Some(expected) = hook.spec.ctx else { return };
    if !hook.takes_context {
        return;
    }
    let Some(ty) = hook.param_types().last().copied() else {
        return;
    };
    let Some(found) = context_type_name(ty) else { return };
    if found != expected.type_name() {
        let name = hook.spec.name;
        let may_log = match expected {
            Ctx::Hook => format!("`{name}` may not log (Lightning raises at run time; here it does not compile)"),
            Ctx::Epoch => format!("`{name}` may log once per epoch"),
            Ctx::Step => format!("`{name}` may log per step and per epoch"),
        };
        errors.spanned(
            ty,
            format!(
                "hook `{name}` takes `&mut {}` as its context, not `&mut {found}`\n\
                 note: the context decides what a hook may log: {may_log}",
                expected.type_name(),
            ),
        );
    }
}

/// `HookContext`, `EpochContext` or `StepContext` when `ty` names one of them.
fn context_type_name(ty: &syn::Type) -> Option<&'static str> {
    let syn::Type::Reference(reference) = ty else {
        return None;
    };
    let syn::Type::Path(path) = &*reference.elem else {
        return None;
    };
    let last = path.path.segments.last()?.ident.to_string();
    [Ctx::Hook, Ctx::Epoch, Ctx::Step]
        .into_iter()
        .map(Ctx::type_name)
        .find(|name| *name == last)
}

/// The calls that only compile under manual optimization (they require `ManualOptimization`),
/// as written after a `.`: `cx.manual_backward(self, loss)`, `cx.optimizer_step(self, grads)`.
const MANUAL_CALLS: &[&str] = &["manual_backward", "optimizer_step"];

/// A `training_step` ported from Lightning without `self.automatic_optimization = False` calls
/// `manual_backward` and steps its optimizers: rustc would report every call, the return type
/// and several optimizers (one error each). One error says what to add instead, at the first
/// call, and the block is treated as manual from here on.
fn manual_calls_need_the_attribute(module: &mut ModuleImpl, errors: &mut Errors) {
    if module.mode != Optimization::Automatic {
        return;
    }
    let found = module.item.items.iter().find_map(|item| match item {
        syn::ImplItem::Fn(method) => {
            first_method_call(method.block.to_token_stream(), MANUAL_CALLS).map(|call| (&method.sig.ident, call))
        }
        _ => None,
    });
    let Some((method, call)) = found else { return };
    let self_ty = type_to_string(&module.item.self_ty);
    errors.spanned(
        &call,
        format!(
            "`{method}` calls `{call}`, which needs manual optimization, but this impl block uses automatic optimization\n\
             help: write `#[lightning_module(manual_optimization)]` on the impl block of `{self_ty}` (Lightning's \
             `self.automatic_optimization = False`): then `training_step` runs backward and steps the optimizers itself"
        ),
    );
    module.mode = Optimization::Manual;
}

/// The first `.name(` in `tokens` with `name` one of `names`, at any depth.
fn first_method_call(tokens: TokenStream, names: &[&str]) -> Option<syn::Ident> {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => {
                if let Some(found) = first_method_call(group.stream(), names) {
                    return Some(found);
                }
            }
            TokenTree::Ident(ident) if names.iter().any(|name| ident == name) => {
                let after_dot = i > 0 && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '.');
                let called =
                    matches!(trees.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                if after_dot && called {
                    return Some(syn::Ident::new(&ident.to_string(), ident.span()));
                }
            }
            _ => {}
        }
    }
    None
}

/// Under manual optimization `training_step` passes the module to `cx.manual_backward(self, ..)`
/// and the optimizer steps, which take `&mut`: with `&self` rustc says only "types differ in
/// mutability" at each call. One error at the receiver says why; the method is emitted with
/// `&mut self` so that the calls add nothing.
fn manual_training_step_takes_mut_self(module: &mut ModuleImpl, errors: &mut Errors) {
    if module.mode != Optimization::Manual {
        return;
    }
    let Some(hook) = module.hooks.iter().find(|h| h.spec.step == Some(Step::Training)) else {
        return;
    };
    let Some(receiver) = hook.sig.receiver() else { return };
    let syn::ReceiverKind::Reference(_, _, None) = &receiver.kind else {
        return;
    };
    errors.spanned(
        receiver,
        format!(
            "under manual optimization, `{}` must take `&mut self`: `cx.manual_backward(self, ..)` and the optimizer \
             steps update the module through it\n\
             help: write `&mut self`",
            hook.method
        ),
    );
    let method = hook.method.clone();
    for item in &mut module.item.items {
        if let syn::ImplItem::Fn(function) = item
            && function.sig.ident == method
            && let Some(syn::FnArg::Receiver(receiver)) = function.sig.inputs.first_mut()
            && let syn::ReceiverKind::Reference(_, _, mutability) = &mut receiver.kind
        {
            *mutability = Some(Default::default());
        }
    }
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

/// A hook returns `Result<T, E>` only where the hook table allows it (every hook a module may
/// implement, as of today).
fn result_is_accepted(hook: &HookFn, errors: &mut Errors) {
    if hook.spec.accepts_result || hook.result().is_none() {
        return;
    }
    let Some(ty) = hook.return_type() else { return };
    errors.spanned(
        ty,
        format!(
            "hook `{}` cannot return a `Result`: the hook table does not let it fail\n\
             help: return the value itself; to end the run with an error, call `cx.fail(error)`",
            hook.spec.name
        ),
    );
}

/// Hooks whose return value is used as it is (no conversion trait): a hook that returns `()`
/// must not return a value, which would be dropped without a word, and one that returns a value
/// must say so. A wrong type is left to rustc, at the user's return type. A `Result`'s `Ok`
/// type is what is checked.
fn returns_what_the_hook_returns(hook: &HookFn, errors: &mut Errors) {
    let spec = hook.spec;
    if spec.convert.is_some() || spec.step.is_some() {
        return;
    }
    if !spec.ret.is_empty() {
        if hook.return_type().is_none() {
            let name = spec.name;
            let batch = hook.param_types().first().map(|ty| type_to_string(ty));
            let message = if let (true, Some(batch)) = (spec.ret == "Self::Batch", batch) {
                format!(
                    "hook `{name}` must return the batch\nhelp: add `-> {batch}`, the type of its `batch` parameter"
                )
            } else {
                let ret = humanize(spec.ret);
                format!("hook `{name}` must return `{ret}`\nhelp: add `-> {ret}`")
            };
            errors.spanned(&hook.sig.ident, message);
        }
        return;
    }
    match (hook.value_type(), hook.result()) {
        (None, _) => {}
        (Some(syn::Type::Tuple(unit)), _) if unit.elems.is_empty() => {}
        (Some(ty), None) => errors.spanned(
            &hook.sig.output,
            format!(
                "hook `{}` returns nothing, so the trainer would ignore this `{}`\n\
                 help: remove the return type",
                spec.name,
                type_to_string(ty)
            ),
        ),
        (Some(ty), Some(_)) => errors.spanned(
            ty,
            format!(
                "hook `{}` returns nothing, so the trainer would ignore this `{}`\n\
                 help: return `Result<(), E>` to report errors",
                spec.name,
                type_to_string(ty)
            ),
        ),
    }
}

fn step_output_is_nameable(hook: &HookFn, errors: &mut Errors) {
    let Some(step) = hook.spec.step else { return };
    if let Some(ty @ syn::Type::ImplTrait(_)) = hook.value_type() {
        let output = match step {
            Step::Training => "`TrainExtra`",
            Step::Validation => "`ValidationOutput`",
            Step::Test => "`TestOutput`",
            Step::Predict => "`Prediction`",
        };
        errors.spanned(
            ty,
            format!(
                "hook `{}` cannot return `impl Trait`: its return type becomes the module's {output} type\n\
                 help: write the concrete type",
                hook.spec.name
            ),
        );
    }
}

/// `name(params)`: what an error about the signature as a whole underlines.
fn name_and_params(sig: &syn::Signature) -> TokenStream {
    let mut params = Group::new(Delimiter::Parenthesis, sig.inputs.to_token_stream());
    params.set_span(sig.paren_token.span.join());
    let mut tokens = sig.ident.to_token_stream();
    tokens.extend([TokenTree::Group(params)]);
    tokens
}

/// A type as a user would write it (token streams print `Vec < f32 >`).
fn type_to_string(ty: &syn::Type) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace(" :: ", "::")
        .replace(":: ", "::")
}

#[cfg(test)]
mod tests {
    use super::{MANUAL_CALLS, first_method_call};
    use quote::quote;

    #[test]
    fn finds_manual_calls_at_any_depth_and_only_as_method_calls() {
        let body = quote!({
            if ready {
                let grads = cx.manual_backward(self, loss);
            }
        });
        assert_eq!(
            first_method_call(body, MANUAL_CALLS).unwrap().to_string(),
            "manual_backward"
        );
        // A path, a field or a function of the same name is not the context's method.
        let body = quote!({
            let optimizer_step = manual_backward(x);
            self.optimizer_step;
            Self::optimizer_step(self);
        });
        assert!(first_method_call(body, MANUAL_CALLS).is_none());
    }
}
