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
             `cx.manual_backward` and `cx.optimizer_step` itself; schedulers are not stepped for it."
        }
    };
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
    format!("# Hooks of this LightningModule\n\n{mode}\n\n{table}")
}
