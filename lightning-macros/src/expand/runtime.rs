//! The runtime side of the hook table: `Hook`, `LightningModule`, `Callback` and `dispatch`.
//! Expanded once, inside `burn-lightning-runtime`, so paths are `crate::..`.

use super::table_tokens;
use crate::hook_table::{self, Ctx, HOOKS, HookSpec, MARKERS, Owner, STAGE_SUFFIXES};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

const RT: &str = "crate";

pub fn variant(spec: &HookSpec) -> Ident {
    let camel: String = spec
        .name
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    Ident::new(&camel, Span::call_site())
}

fn context_type(ctx: Ctx) -> TokenStream {
    let ident = format_ident!("{}", ctx.type_name());
    quote!(crate::#ident)
}

fn params(spec: &HookSpec, self_types: &str) -> (Vec<Ident>, Vec<TokenStream>) {
    stage_params(spec, self_types, "Self::Batch")
}

/// As [`params`], with `batch` (a stage's batch type, `Self::ValBatch`) for the training batch
/// type: the parameters of a [`per_stage`](HookSpec::per_stage) hook's method for that stage.
fn stage_params(spec: &HookSpec, self_types: &str, batch: &str) -> (Vec<Ident>, Vec<TokenStream>) {
    spec.params
        .iter()
        .map(|(name, ty)| {
            (
                format_ident!("{name}"),
                table_tokens(
                    &ty.replace("Self::Batch", batch)
                        .replace("Self::", self_types)
                        .replace("Self>", &self_types.replace("::", ">")),
                    RT,
                ),
            )
        })
        .unzip()
}

/// The trait method of each stage of a hook: `(name, batch type, stage)`, the training stage's
/// first; one for the hooks that are not [`per_stage`](HookSpec::per_stage).
pub fn stage_methods(spec: &HookSpec) -> Vec<(Ident, &'static str, &'static str)> {
    let mut methods = vec![(format_ident!("{}", spec.name), "Self::Batch", "training")];
    if spec.per_stage {
        methods.extend(
            STAGE_SUFFIXES
                .iter()
                .map(|(suffix, batch, stage)| (format_ident!("{}_{suffix}", spec.name), *batch, *stage)),
        );
    }
    methods
}

fn doc_of(spec: &HookSpec) -> String {
    let mut doc = spec.doc.to_string();
    if spec.dataloader_idx {
        doc.push_str(
            "\n\n`dataloader_idx` is the index of the stage's dataloader the batch comes from (0 with \
             one); a `#[hook]` method may leave the parameter out.",
        );
    }
    match spec.ctx {
        Some(ctx) => doc.push_str(&format!(
            "\n\nContext: [`{}`](crate::{}): {}.",
            ctx.type_name(),
            ctx.type_name(),
            ctx.what_it_logs()
        )),
        None => doc.push_str("\n\nTakes no context."),
    }
    doc
}

/// The `Hook` enum: expanded in the runtime's `core`, below the traits that name it.
pub fn hook_list() -> TokenStream {
    hook_enum()
}

/// The traits, markers and dispatch functions: expanded in the runtime's `hooks`.
pub fn runtime_items() -> TokenStream {
    let module_trait = module_trait();
    let callback_trait = callback_trait();
    let dispatch = dispatch();
    let markers = marker_traits();
    quote! {
        #module_trait
        #markers
        #callback_trait
        #dispatch
    }
}

/// The capability markers (`TrainingStep`, `ManualOptimization`, ...), with the messages of the
/// hook table: what `Trainer::fit` and friends require.
fn marker_traits() -> TokenStream {
    let traits = MARKERS.iter().map(|marker| {
        let name = format_ident!("{}", marker.name);
        let doc = marker.doc;
        let message = marker.message;
        let label = marker.label;
        let notes = marker.notes;
        quote! {
            #[doc = #doc]
            #[diagnostic::on_unimplemented(
                message = #message,
                label = #label
                #(, note = #notes)*
            )]
            pub trait #name: crate::LightningModule {}
        }
    });
    quote!(#(#traits)*)
}

fn hook_enum() -> TokenStream {
    let variants: Vec<_> = HOOKS.iter().map(variant).collect();
    let names: Vec<_> = HOOKS.iter().map(|h| h.name).collect();
    let docs: Vec<_> = HOOKS.iter().map(|h| h.doc).collect();
    let scopes: Vec<_> = HOOKS
        .iter()
        .map(|h| match h.ctx {
            Some(Ctx::Step) => quote!(crate::LogScope::StepAndEpoch),
            Some(Ctx::Epoch) => quote!(crate::LogScope::Epoch),
            Some(Ctx::Hook) | None => quote!(crate::LogScope::None),
        })
        .collect();
    let owners: Vec<_> = HOOKS
        .iter()
        .map(|h| match h.owner {
            Owner::Both => quote!(crate::HookOwner::ModuleAndCallbacks),
            Owner::Module => quote!(crate::HookOwner::Module),
            Owner::Callback => quote!(crate::HookOwner::Callbacks),
        })
        .collect();
    let count = HOOKS.len();
    quote! {
        /// Every hook the trainer calls, in the order `fit` first calls them.
        ///
        /// Generated from the hook table of `burn-lightning-macros`, the same table the
        /// `#[lightning_module]` macro checks signatures against.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Hook {
            #( #[doc = #docs] #variants, )*
        }

        impl Hook {
            /// All hooks.
            pub const ALL: [Hook; #count] = [#(Hook::#variants),*];

            /// The hook's name, as written in a `#[hook]` method.
            pub const fn name(self) -> &'static str {
                match self { #(Hook::#variants => #names,)* }
            }

            /// What a hook may log (Lightning's per-hook `on_step`/`on_epoch` rules).
            pub const fn log_scope(self) -> crate::LogScope {
                match self { #(Hook::#variants => #scopes,)* }
            }

            /// Who implements the hook.
            pub const fn owner(self) -> crate::HookOwner {
                match self { #(Hook::#variants => #owners,)* }
            }

            /// The hook called `name`, if any.
            pub fn from_name(name: &str) -> ::core::option::Option<Hook> {
                Self::ALL.into_iter().find(|hook| hook.name() == name)
            }
        }
    }
}

/// One method of the module trait: the hook's, or (`batch` other than `Self::Batch`) its method
/// for another stage, hidden, which `#[lightning_module]` implements from the same `#[hook]`.
fn module_method(spec: &HookSpec, name: Ident, batch: &str, stage: &str) -> TokenStream {
    let (names, types) = stage_params(spec, "Self::", batch);
    let cx = spec.ctx.map(|ctx| {
        let ty = context_type(ctx);
        quote!(, cx: &mut #ty<'_>)
    });
    let ret = match spec.ret {
        "" => quote!(()),
        ret => table_tokens(&ret.replace("Self::Batch", batch), RT),
    };
    let default = if spec.default.is_empty() {
        quote!({})
    } else {
        let body = table_tokens(spec.default, RT);
        quote!({ #body })
    };
    // Every hook may fail: the trait method returns `Result`, and the default succeeds.
    let default = quote!({ ::core::result::Result::Ok(#default) });
    let mut doc = doc_of(spec);
    if spec.accepts_result {
        doc.push_str(
            "\n\nThe `#[hook]` method may return `Result<T, E>` instead of `T`, with `E` any \
                 [`HookError`](crate::HookError) (a `std::error::Error + Send + Sync + 'static`, or \
                 [`Error`](crate::Error) itself): an `Err` ends the run with that error.",
        );
    }
    // A per-stage hook's method for another stage is the same hook, on that stage's batches.
    let doc = match batch {
        "Self::Batch" => quote!(#[doc = #doc]),
        _ => {
            let doc = format!("`{}` on the batches of the {stage} stage.", spec.name);
            quote!(#[doc(hidden)] #[doc = #doc])
        }
    };
    quote! {
        #doc
        #[allow(unused_variables)]
        #[inline]
        fn #name(&mut self #(, #names: #types)* #cx) -> ::core::result::Result<#ret, crate::Error> #default
    }
}

fn module_trait() -> TokenStream {
    let methods = hook_table::module_hooks().flat_map(|spec| {
        stage_methods(spec)
            .into_iter()
            .map(move |(name, batch, stage)| module_method(spec, name, batch, stage))
    });
    quote! {
        /// A burn module the [`Trainer`](crate::Trainer) can run: implemented by
        /// `#[lightning_module]` from the `#[hook]` methods of the module's impl block.
        ///
        /// Every hook has a default that does nothing (or the obvious thing), and the generated
        /// implementation overrides exactly the hooks you wrote: the trait *is* the dispatch table,
        /// resolved at compile time, so a hook you did not write costs nothing per step.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` is not a LightningModule",
            label = "the trainer runs LightningModules",
            note = "add `#[lightning_module]` to the struct `{Self}` (above `#[derive(Module)]`) and to an impl block of `{Self}` whose methods are marked `#[hook]`"
        )]
        pub trait LightningModule: crate::burn::module::Module + crate::burn::module::ModuleDisplay + crate::HasHparams + ::core::marker::Sized + 'static {
            /// What the training dataloader yields and `training_step` receives (the batch type
            /// of `training_step`'s `batch` parameter). A module without `training_step` takes the
            /// batch type of its first step among `validation_step`, `test_step` and
            /// `predict_step`.
            type Batch: ::core::clone::Clone + ::core::marker::Send + 'static;
            /// What the validation dataloaders yield and `validation_step` receives; without a
            /// `validation_step`, [`Batch`](Self::Batch).
            type ValBatch: ::core::clone::Clone + ::core::marker::Send + 'static;
            /// What the test dataloaders yield and `test_step` receives; without a `test_step`,
            /// [`ValBatch`](Self::ValBatch) (as `DataModule`'s `Te = V`).
            type TestBatch: ::core::clone::Clone + ::core::marker::Send + 'static;
            /// What the prediction dataloaders yield and `predict_step` receives (images without
            /// labels, say); without a `predict_step`, [`TestBatch`](Self::TestBatch).
            type PredictBatch: ::core::clone::Clone + ::core::marker::Send + 'static;
            /// Extra outputs of `training_step` (besides the loss), seen by `on_train_batch_end`.
            type TrainExtra: 'static;
            /// What `validation_step` returns.
            type ValidationOutput: 'static;
            /// What `test_step` returns.
            type TestOutput: 'static;
            /// What `predict_step` returns; `Trainer::predict` collects these.
            type Prediction: 'static;
            /// Automatic or manual optimization, chosen with `#[lightning_module(manual_optimization)]`.
            const OPTIMIZATION: crate::Optimization;
            /// The hooks this module implements.
            const OVERRIDDEN: crate::HookSet;

            #(#methods)*
        }
    }
}

fn callback_trait() -> TokenStream {
    let methods = hook_table::callback_hooks().map(|spec| {
        let name = format_ident!("{}", spec.name);
        let (names, types) = params(spec, "M::");
        let cx = spec.ctx.map(|ctx| {
            let ty = context_type(ctx);
            quote!(, cx: &mut #ty<'_>)
        });
        let doc = doc_of(spec);
        quote! {
            #[doc = #doc]
            #[allow(unused_variables)]
            #[inline]
            fn #name(&mut self, module: &mut M #(, #names: #types)* #cx) {}
        }
    });
    quote! {
        /// Code that runs at the trainer's hooks, beside the module: progress printing,
        /// checkpointing, early stopping, your own instrumentation.
        ///
        /// For every hook, callbacks run first, in list order, then the module; callbacks whose
        /// [`role`](Callback::role) is [`Monitor`](crate::CallbackRole::Monitor) run after the
        /// module at `on_train_epoch_end`, and checkpointing callbacks run last.
        ///
        /// `Any` is a supertrait so that a `&dyn Callback<M>` can be read back as its type
        /// (`Trainer::callback::<ModelCheckpoint>()`), as Lightning's `trainer.checkpoint_callback`.
        pub trait Callback<M: crate::LightningModule>: ::core::marker::Send + ::core::any::Any {
            /// The name shown in traces and checkpoint keys (the type's name by default).
            fn name(&self) -> ::std::borrow::Cow<'static, str> {
                let full = ::core::any::type_name::<Self>();
                let base = full.split('<').next().unwrap_or(full);
                ::std::borrow::Cow::Borrowed(base.rsplit("::").next().unwrap_or(base))
            }

            /// The key of this callback's state in checkpoints ([`name`](Callback::name) by
            /// default). Two callbacks of one type that must keep separate states (two
            /// `ModelCheckpoint`s with other monitors) give different keys, as in Lightning.
            fn state_key(&self) -> ::std::borrow::Cow<'static, str> {
                self.name()
            }

            /// Where the trainer places this callback among the others.
            fn role(&self) -> crate::CallbackRole {
                crate::CallbackRole::Plain
            }

            /// State saved into checkpoints under [`name`](Callback::name); `None` saves nothing.
            fn state_dict(&mut self) -> ::core::option::Option<crate::JsonValue> {
                ::core::option::Option::None
            }

            /// Restores what [`state_dict`](Callback::state_dict) saved.
            #[allow(unused_variables)]
            fn load_state_dict(&mut self, state: crate::JsonValue) -> ::core::result::Result<(), crate::Error> {
                ::core::result::Result::Ok(())
            }

            #(#methods)*
        }
    }
}

/// The dispatch functions: one per hook, all with the same shape
/// `(module, callbacks, core, after, hook arguments..) -> Result<output, Error>`, so that the
/// loops call every hook the same way. Each traces and calls the callbacks, then the module,
/// running `after` (the after-hook protocol: checkpoint requests) after each of them, and stops
/// at the first failure: an error a hook returned or deferred into the core (a bad `log` call,
/// `cx.fail`) ends the hook there, and no later callback or module hook of it runs.
fn dispatch() -> TokenStream {
    // A per-stage hook has a function per stage, each calling the module's method of its stage,
    // traced and counted as the one hook.
    let stages = HOOKS
        .iter()
        .filter(|h| h.step.is_none())
        .flat_map(|spec| stage_methods(spec).into_iter().map(move |stage| (spec, stage)));
    let functions = stages.map(|(spec, (name, batch, _))| {
        let hook_name = spec.name;
        let variant = variant(spec);
        let (names, types) = stage_params(spec, "M::", batch);
        let cx_arg = spec.ctx.map(|ctx| {
            let ty = context_type(ctx);
            quote!(&mut #ty::new(core, crate::Hook::#variant))
        });
        let cx = cx_arg.as_ref().map(|arg| quote!(, #arg));
        let module_args: Vec<TokenStream> = names.iter().map(|n| quote!(#n)).chain(cx_arg.clone()).collect();

        // `after` runs after each callback and after the module (the trainer writes the
        // checkpoints a hook asked for there, in Lightning's order); a hook's error comes first.
        let call_callback = |filter: TokenStream| {
            quote! {
                for index in 0..callbacks.len() {
                    let callback = &mut callbacks[index];
                    if #filter {
                        {
                            let _span = ::tracing::trace_span!(target: "burn_lightning::hooks", "hook",
                                hook = #hook_name, by = "callback", callback = %callback.name()).entered();
                            callback.#name(module #(, #names)* #cx);
                        }
                        let failed = core.take_error();
                        let flushed = after.after_hook(module, callbacks, core);
                        failed?;
                        flushed?;
                    }
                }
            }
        };
        let callbacks_first = match spec.owner {
            Owner::Module => quote!(let _ = callbacks;),
            _ if spec.monitors_after_module => call_callback(quote!(!callback.role().runs_after_module())),
            _ => call_callback(quote!(true)),
        };
        let callbacks_after = if spec.monitors_after_module {
            call_callback(quote!(callback.role().runs_after_module()))
        } else {
            quote!()
        };
        let ret = if spec.owner == Owner::Callback {
            quote!(())
        } else {
            table_tokens(
                &(if spec.ret.is_empty() { "()" } else { spec.ret })
                    .replace("Self::Batch", batch)
                    .replace("Self::", "M::")
                    .replace("Self>", "M>"),
                RT,
            )
        };
        let module_call = if spec.owner == Owner::Callback {
            quote!(let output = ();)
        } else {
            quote! {
                let output = {
                    let _span = ::tracing::trace_span!(target: "burn_lightning::hooks", "hook",
                        hook = #hook_name, by = "module",
                        overridden = M::OVERRIDDEN.contains(crate::Hook::#variant)).entered();
                    module.#name(#(#module_args),*)
                };
                // What the hook deferred happened before it returned.
                let output = core.take_error().and(output);
                let flushed = after.after_hook(module, callbacks, core);
                let output = output?;
                flushed?;
            }
        };
        quote! {
            #[inline]
            #[allow(clippy::too_many_arguments, clippy::let_unit_value, clippy::unit_arg, unused_variables)]
            pub(crate) fn #name<M: crate::LightningModule, A: crate::hooks::context::AfterHook<M>>(
                module: &mut M,
                callbacks: &mut [::std::boxed::Box<dyn crate::Callback<M>>],
                core: &mut crate::hooks::context::Core,
                after: &mut A,
                #(#names: #types,)*
            ) -> ::core::result::Result<#ret, crate::Error> {
                #callbacks_first
                #module_call
                #callbacks_after
                ::core::result::Result::Ok(output)
            }
        }
    });
    quote! {
        /// One function per hook: traces and calls the callbacks, then the module, and returns
        /// the first error any of them met.
        pub(crate) mod dispatch {
            #(#functions)*
        }
    }
}
