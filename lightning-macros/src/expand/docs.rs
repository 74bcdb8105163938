//! Generated rustdoc: what a reader of `cargo doc` learns about a LightningModule.

use crate::hook_table::{Group, Owner};
use crate::model::{ModuleImpl, ModuleStruct, Optimization};
use crate::parse::first_doc_line;
use quote::ToTokens;

/// Markdown table cells must not contain `|` or line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn code(tokens: &impl ToTokens) -> String {
    format!("`{}`", cell(&type_text(tokens)))
}

/// Tokens as a reader writes them (`Vec<f64>`, not `Vec < f64 >`).
pub fn type_text(tokens: &impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    // Token streams print `Vec < f64 >`; tighten the common cases for reading.
    text.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace(" :: ", "::")
}

/// The table of `#[hparam]` fields: name, type, default, doc.
pub fn hparams_table(module: &ModuleStruct) -> String {
    if module.hparams.is_empty() {
        return "This module has no hyperparameters: mark fields with `#[hparam]` to add some.".into();
    }
    let mut out = String::from("| name | type | default | description |\n|---|---|---|---|\n");
    for h in &module.hparams {
        let default = h.default.as_ref().map_or_else(|| "*required*".to_string(), code);
        let doc = first_doc_line(&h.docs).unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            h.ident,
            code(&h.ty),
            default,
            cell(&doc)
        ));
    }
    out
}

/// Appended to the module struct's docs.
pub fn module_struct_section(module: &ModuleStruct) -> String {
    let ident = &module.item.ident;
    // Intra-doc links resolve from the user's crate, through the facade's path.
    let krate = super::path_text(&module.krate);
    let krate = krate.trim_start_matches("::");
    format!(
        "# LightningModule\n\n\
         `{ident}` is a LightningModule: a [`Trainer`]({krate}::Trainer) fits, validates, tests and \
         predicts with it. Its hooks and its optimization mode are listed on its implementation of \
         [`LightningModule`]({krate}::LightningModule), under *Trait Implementations*.\n\n\
         ## Hyperparameters\n\n{}\n\
         Build them with [`{ident}Hparams`]; the trainer saves them to `hparams.yaml`.",
        hparams_table(module)
    )
}

/// Put on the impl block: optimization mode and the hooks it implements, linked to the methods.
pub fn module_impl_section(module: &ModuleImpl) -> String {
    let mode = match module.mode {
        Optimization::Automatic => {
            "**Optimization: automatic.** `training_step` returns the loss; the trainer runs backward, \
             gradient clipping, the optimizer step and the learning-rate scheduler."
        }
        Optimization::Manual => {
            "**Optimization: manual** (`#[lightning_module(manual_optimization)]`). `training_step` calls \
             `cx.manual_backward` and steps the optimizers itself (`cx.optimizer_step`, or each handle of \
             `self.optimizers()`); schedulers are not stepped for it: `cx.lr_schedulers()` steps them by hand."
        }
    };
    let optimizers = optimizers_line(module);
    let mut hooks: Vec<_> = module.hooks.iter().collect();
    hooks.sort_by_key(|h| {
        (
            h.spec.group,
            crate::hook_table::HOOKS.iter().position(|s| s.name == h.spec.name),
        )
    });
    let mut table = String::from("| hook | method | when the trainer calls it | description |\n|---|---|---|---|\n");
    let mut last_group: Option<Group> = None;
    for hook in hooks {
        let group = (last_group != Some(hook.spec.group)).then(|| hook.spec.group.title());
        last_group = Some(hook.spec.group);
        let also = if hook.spec.owner == Owner::Both {
            " (after callbacks)"
        } else {
            ""
        };
        let description = hook.summary.clone().unwrap_or_default();
        table.push_str(&format!(
            "| {}[`{}`](#method.{}) | `{}` | {}{also} | {} |\n",
            group.map(|g| format!("*{g}:* ")).unwrap_or_default(),
            hook.spec.name,
            hook.spec.name,
            hook.method,
            cell(hook.spec.doc.split(". ").next().unwrap_or(hook.spec.doc)),
            cell(&description),
        ));
    }
    if module.hooks.is_empty() {
        table = "No hooks: mark methods with `#[hook]`.\n".into();
    }
    format!("# Hooks of this LightningModule\n\n{mode}\n\n{optimizers}\n\n{table}")
}

/// What `configure_optimizers` returns, from its return type: how many optimizers, and who
/// steps them and their schedulers.
fn optimizers_line(module: &ModuleImpl) -> String {
    let Some(hook) = module.hooks.iter().find(|h| h.spec.name == "configure_optimizers") else {
        return "**Optimizers:** none (no `configure_optimizers`), so `Trainer::fit` cannot train it.".into();
    };
    let Some(ty) = hook.value_type() else {
        return "**Optimizers:** `configure_optimizers` returns nothing.".into();
    };
    let count = match ty {
        syn::Type::Tuple(tuple) => format!("{} optimizers", tuple.elems.len()),
        syn::Type::Array(array) => format!("{} optimizers", array.len.to_token_stream()),
        _ => "one optimizer".to_string(),
    };
    let schedulers = match module.mode {
        Optimization::Automatic => "the trainer steps it and its scheduler, if it has one",
        Optimization::Manual if count == "one optimizer" => {
            "`training_step` steps it (`cx.optimizer_step`) and its scheduler, if it has one (`cx.lr_scheduler()`)"
        }
        Optimization::Manual => {
            "each with its own parameters (`for_params`) and optionally its own scheduler; `training_step` steps \
             each through its handle (`let (opt_g, opt_d) = self.optimizers();`, `opt_g.step(cx, self, grads)`) \
             and their schedulers by hand (`cx.lr_scheduler_of(opt_g)`)"
        }
    };
    format!(
        "**Optimizers:** `configure_optimizers` returns {} ({count}): {schedulers}.",
        code(ty)
    )
}
