//! The one table of hooks: every hook a `#[lightning_module]` impl block may implement, with its
//! signature, who may implement it (module, callbacks or both), how its context may log, and
//! its documentation.
//!
//! Everything else is derived from this table: the parser's "did you mean", the signature checks,
//! the generated docs, and (through `__runtime_items!`) the runtime's `LightningModule` and
//! `Callback` traits, its `Hook` enum and its dispatch functions.
//!
//! Types are written as they read inside the runtime crate, with runtime items prefixed `rt::`;
//! the generator replaces `rt::` with `crate::` in the runtime and with the facade's private path
//! in user crates. `Self::` names the module's associated types; for callbacks it becomes `M::`.

/// The context a hook receives as its last (optional) parameter: it decides what the hook may log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ctx {
    /// `&mut HookContext`: trainer state, no logging (Lightning raises if you log there).
    Hook,
    /// `&mut EpochContext`: logging reduced once per epoch only (`on_step` must be false).
    Epoch,
    /// `&mut StepContext`: logging per step and/or per epoch.
    Step,
}

impl Ctx {
    pub fn type_name(self) -> &'static str {
        match self {
            Ctx::Hook => "HookContext",
            Ctx::Epoch => "EpochContext",
            Ctx::Step => "StepContext",
        }
    }

    pub fn what_it_logs(self) -> &'static str {
        match self {
            Ctx::Hook => "logging is not allowed here",
            Ctx::Epoch => "it may log once per epoch",
            Ctx::Step => "it may log per step and per epoch",
        }
    }
}

/// Who implements a hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Owner {
    /// The module and callbacks (callbacks run first, in list order).
    Both,
    /// Only the `#[lightning_module]`.
    Module,
    /// Only callbacks (the module cannot implement it).
    Callback,
}

/// Which optimization mode a module hook belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Any,
    /// Called only under automatic optimization: implementing it in a manual module is an error.
    Automatic,
}

/// The section a hook is listed under in generated docs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Group {
    Setup,
    Data,
    Fit,
    Training,
    Optimization,
    Validation,
    Test,
    Predict,
    Checkpoint,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Setup => "Setup and teardown",
            Group::Data => "Data",
            Group::Fit => "Fit",
            Group::Training => "Training",
            Group::Optimization => "Optimization",
            Group::Validation => "Validation",
            Group::Test => "Test",
            Group::Predict => "Predict",
            Group::Checkpoint => "Checkpoints",
        }
    }
}

/// A step hook's special handling: its output becomes an associated type of the module.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    Training,
    Validation,
    Test,
    Predict,
}

pub struct HookSpec {
    pub name: &'static str,
    pub group: Group,
    /// Parameters after the receiver and before the context: `(name, type)`.
    pub params: &'static [(&'static str, &'static str)],
    /// The context type; `None` for hooks that take no context.
    pub ctx: Option<Ctx>,
    /// Return type of the trait method (`""` for `()`).
    pub ret: &'static str,
    /// How the user's return value becomes `ret`: a trait the user's return type must implement,
    /// and the conversion (`$v` is the value). `None`: the user must return exactly `ret`.
    pub convert: Option<(&'static str, &'static str)>,
    /// Body of the default implementation (runtime side).
    pub default: &'static str,
    pub owner: Owner,
    pub mode: Mode,
    pub step: Option<Step>,
    /// Callbacks that monitor metrics (checkpointing, early stopping) run after the module.
    pub monitors_after_module: bool,
    /// The runtime's marker trait implemented when a module has this hook, which a trainer
    /// entry point requires (`Trainer::fit` needs `TrainingStep`).
    pub marker: Option<&'static Marker>,
    /// Whether the user's method may return `Result<T, E>` (or an alias such as
    /// `std::io::Result<T>`) instead of `T`: an `Err` ends the run with that error, the `Ok`
    /// value is converted as usual.
    ///
    /// Every hook a module implements may fail, as any Python hook may raise. Callback-only hooks
    /// do not take a `Result`: a module cannot implement them, and `Callback` methods return `()`
    /// and report an error with `cx.fail(..)`; `on_exception` in particular runs while the run is
    /// already failing, where a second error would only hide the first.
    pub accepts_result: bool,
    /// Whether the last parameter is Lightning's `dataloader_idx: usize` (the validation, test
    /// and predict step and batch hooks): callbacks always receive it, a module's `#[hook]` method
    /// may leave it out.
    pub dataloader_idx: bool,
    /// Whether the hook runs on the batches of every stage, each of its own batch type (the
    /// batch-transfer hooks, as Lightning's run on training, validation, test and predict
    /// batches). Its parameters and return name the training type `Self::Batch`; the runtime's
    /// trait has a method per other stage ([`STAGE_SUFFIXES`]) taking that stage's type, and the
    /// `#[hook]` method may be generic over the batch type.
    pub per_stage: bool,
    pub doc: &'static str,
}

/// The other stages of a [`HookSpec::per_stage`] hook: the suffix of the runtime trait's method
/// for each (`on_before_batch_transfer_predict`) and the module's batch type of that stage.
pub const STAGE_SUFFIXES: [(&str, &str, &str); 3] = [
    ("val", "Self::ValBatch", "validation"),
    ("test", "Self::TestBatch", "test"),
    ("predict", "Self::PredictBatch", "predict"),
];

const fn hook(name: &'static str, group: Group, doc: &'static str) -> HookSpec {
    HookSpec {
        name,
        group,
        params: &[],
        ctx: Some(Ctx::Hook),
        ret: "",
        convert: None,
        default: "",
        owner: Owner::Both,
        mode: Mode::Any,
        step: None,
        monitors_after_module: false,
        marker: None,
        accepts_result: true,
        dataloader_idx: false,
        per_stage: false,
        doc,
    }
}

impl HookSpec {
    const fn params(mut self, params: &'static [(&'static str, &'static str)]) -> Self {
        self.params = params;
        self
    }
    const fn ctx(mut self, ctx: Option<Ctx>) -> Self {
        self.ctx = ctx;
        self
    }
    const fn returns(mut self, ret: &'static str, default: &'static str) -> Self {
        self.ret = ret;
        self.default = default;
        self
    }
    const fn convert(mut self, bound: &'static str, conversion: &'static str) -> Self {
        self.convert = Some((bound, conversion));
        self
    }
    const fn module_only(mut self) -> Self {
        self.owner = Owner::Module;
        self
    }
    const fn callback_only(mut self) -> Self {
        self.owner = Owner::Callback;
        self.accepts_result = false;
        self
    }
    const fn automatic(mut self) -> Self {
        self.mode = Mode::Automatic;
        self
    }
    const fn step(mut self, step: Step) -> Self {
        self.step = Some(step);
        self.owner = Owner::Module;
        self
    }
    const fn marker(mut self, marker: &'static Marker) -> Self {
        self.marker = Some(marker);
        self
    }
    /// Appends Lightning's `dataloader_idx: usize` to the parameters (see the field).
    const fn with_dataloader_idx(mut self) -> Self {
        self.dataloader_idx = true;
        self
    }
    /// Runs on every stage's batches (see the field).
    const fn per_stage(mut self) -> Self {
        self.per_stage = true;
        self
    }
    const fn monitors_after_module(mut self) -> Self {
        self.monitors_after_module = true;
        self
    }

    /// `Some(&Self::Batch)`-style parameter list rendered for messages: `batch: &Self::Batch, ...`.
    pub fn params_for_humans(&self) -> String {
        let mut parts: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty)| format!("{name}: {}", humanize(ty)))
            .collect();
        if let Some(ctx) = self.ctx {
            parts.push(format!("cx: &mut {}", ctx.type_name()));
        }
        parts.join(", ")
    }
}

/// Types as a user writes them (no `rt::` prefix, no `'_`).
pub fn humanize(ty: &str) -> String {
    ty.replace("rt::", "").replace("<'_, Self>", "<Self>")
}

/// A capability marker trait of the runtime: implemented by `#[lightning_module]` when the
/// module has a hook (or an optimization mode), and required by the trainer's entry points, so
/// that a missing hook is a trait-bound error at the call with the message below.
pub struct Marker {
    pub name: &'static str,
    pub doc: &'static str,
    /// `#[diagnostic::on_unimplemented]` of the trait: `{Self}` is the module's type.
    pub message: &'static str,
    pub label: &'static str,
    pub notes: &'static [&'static str],
}

pub const TRAINING_STEP: Marker = Marker {
    name: "TrainingStep",
    doc: "Implemented by `#[lightning_module]` when the module has a `training_step`.",
    message: "`{Self}` has no `training_step`, so the trainer cannot fit it",
    label: "`Trainer::fit` needs a `training_step`",
    notes: &[
        "add `#[hook] fn training_step(&self, batch: YourBatch, batch_idx: usize, cx: &mut StepContext) -> Tensor<1>` to the `#[lightning_module]` impl block of `{Self}`",
    ],
};

pub const CONFIGURE_OPTIMIZERS: Marker = Marker {
    name: "ConfigureOptimizers",
    doc: "Implemented by `#[lightning_module]` when the module has a `configure_optimizers`.",
    message: "`{Self}` has no `configure_optimizers`, so the trainer has no optimizer to fit it with",
    label: "`Trainer::fit` needs `configure_optimizers`",
    notes: &[
        "add `#[hook] fn configure_optimizers(&self) -> OptimizerConfig` to the `#[lightning_module]` impl block of `{Self}`, for example `OptimizerConfig::new(AdamConfig::new().init(), 1e-3)`",
    ],
};

pub const VALIDATION_STEP: Marker = Marker {
    name: "ValidationStep",
    doc: "Implemented by `#[lightning_module]` when the module has a `validation_step`.",
    message: "`{Self}` has no `validation_step`, so the trainer cannot validate it",
    label: "`Trainer::validate` needs a `validation_step`",
    notes: &[
        "add `#[hook] fn validation_step(&self, batch: YourBatch, batch_idx: usize, cx: &mut StepContext)` to the `#[lightning_module]` impl block of `{Self}`",
    ],
};

pub const TEST_STEP: Marker = Marker {
    name: "TestStep",
    doc: "Implemented by `#[lightning_module]` when the module has a `test_step`.",
    message: "`{Self}` has no `test_step`, so the trainer cannot test it",
    label: "`Trainer::test` needs a `test_step`",
    notes: &[
        "add `#[hook] fn test_step(&self, batch: YourBatch, batch_idx: usize, cx: &mut StepContext)` to the `#[lightning_module]` impl block of `{Self}`",
    ],
};

pub const PREDICT_STEP: Marker = Marker {
    name: "PredictStep",
    doc: "Implemented by `#[lightning_module]` when the module has a `predict_step`.",
    message: "`{Self}` has no `predict_step`, so the trainer cannot predict with it",
    label: "`Trainer::predict` needs a `predict_step`",
    notes: &[
        "add `#[hook] fn predict_step(&self, batch: YourBatch, batch_idx: usize) -> YourPrediction` to the `#[lightning_module]` impl block of `{Self}`",
    ],
};

pub const AUTOMATIC_OPTIMIZATION: Marker = Marker {
    name: "AutomaticOptimization",
    doc: "Implemented by `#[lightning_module]` unless `manual_optimization` is given.",
    message: "`{Self}` uses manual optimization, where the trainer does not drive the optimizer",
    label: "only called under automatic optimization",
    notes: &[],
};

pub const MANUAL_OPTIMIZATION: Marker = Marker {
    name: "ManualOptimization",
    doc: "Implemented by `#[lightning_module(manual_optimization)]`.",
    message: "`{Self}` uses automatic optimization: the trainer runs backward and the optimizer step itself",
    label: "only available under manual optimization",
    notes: &[
        "return the loss from `training_step` and let the trainer optimize, or write `#[lightning_module(manual_optimization)]` on the impl block of `{Self}` to call `manual_backward` and `optimizer_step` yourself",
    ],
};

/// Every marker trait, in the order the runtime declares them.
pub const MARKERS: &[&Marker] = &[
    &TRAINING_STEP,
    &CONFIGURE_OPTIMIZERS,
    &VALIDATION_STEP,
    &TEST_STEP,
    &PREDICT_STEP,
    &AUTOMATIC_OPTIMIZATION,
    &MANUAL_OPTIMIZATION,
];

use Ctx::{Epoch, Step as StepCx};
use Group::*;

const BATCH_IDX: (&str, &str) = ("batch_idx", "usize");
const BATCH_REF: (&str, &str) = ("batch", "&Self::Batch");
const VAL_BATCH_REF: (&str, &str) = ("batch", "&Self::ValBatch");
const TEST_BATCH_REF: (&str, &str) = ("batch", "&Self::TestBatch");
const PREDICT_BATCH_REF: (&str, &str) = ("batch", "&Self::PredictBatch");
/// Lightning's `dataloader_idx`: which of the stage's dataloaders the batch comes from (0 with
/// one). Only the evaluation and predict hooks that have it mark it `with_dataloader_idx`.
pub const DATALOADER_IDX: (&str, &str) = ("dataloader_idx", "usize");

/// Every hook, in the order Lightning's `test_hooks.py` first calls them during `fit`.
pub const HOOKS: &[HookSpec] = &[
    hook("configure_callbacks", Setup, "Returns callbacks to add to the trainer's own; a callback of the same type replaces the trainer's.")
        .ctx(None)
        .returns("rt::Callbacks<Self>", "::std::vec::Vec::new()")
        .module_only(),
    hook("prepare_data", Setup, "Downloads or prepares data once, before `setup`. Do not set state here.")
        .module_only(),
    hook("setup", Setup, "Called at the start of fit, validate, test and predict, with the stage.")
        .params(&[("stage", "rt::Stage")]),
    hook("configure_model", Setup, "Builds layers late, after `setup`; must be idempotent.")
        .module_only(),
    hook("configure_optimizers", Setup, "Returns the optimizer (`OptimizerConfig`: learning rate, optional scheduler), or several as a tuple or array under manual optimization. Required by `Trainer::fit`.")
        .returns("::core::option::Option<::std::vec::Vec<rt::OptimizerConfig>>", "::core::option::Option::None")
        .convert("rt::IntoOptimizerConfig", "::core::option::Option::Some(rt::IntoOptimizerConfig::into_optimizer_configs($v))")
        .module_only()
        .marker(&CONFIGURE_OPTIMIZERS),
    hook("on_fit_start", Fit, "Called at the very beginning of fit, after the optimizers are configured."),
    hook("on_sanity_check_start", Fit, "Called before the sanity-check validation batches.").callback_only(),
    hook("on_sanity_check_end", Fit, "Called after the sanity-check validation batches.").callback_only(),
    hook("train_dataloader", Data, "Returns the training dataloader when no datamodule provides one.")
        .returns("::core::option::Option<rt::Loader<Self::Batch>>", "::core::option::Option::None")
        .convert("rt::IntoLoader<Self::Batch>", "rt::IntoLoader::into_loader($v)")
        .module_only(),
    hook("val_dataloader", Data, "Returns the validation dataloader, or several (a `Vec` or an array, in `dataloader_idx` order), when no datamodule provides them.")
        .returns("::std::vec::Vec<rt::Loader<Self::ValBatch>>", "::std::vec::Vec::new()")
        .convert("rt::IntoLoaders<Self::ValBatch>", "rt::IntoLoaders::into_loaders($v)")
        .module_only(),
    hook("test_dataloader", Data, "Returns the test dataloader, or several (a `Vec` or an array, in `dataloader_idx` order), when no datamodule provides them.")
        .returns("::std::vec::Vec<rt::Loader<Self::TestBatch>>", "::std::vec::Vec::new()")
        .convert("rt::IntoLoaders<Self::TestBatch>", "rt::IntoLoaders::into_loaders($v)")
        .module_only(),
    hook("predict_dataloader", Data, "Returns the prediction dataloader, or several (a `Vec` or an array, in `dataloader_idx` order), when no datamodule provides them.")
        .returns("::std::vec::Vec<rt::Loader<Self::PredictBatch>>", "::std::vec::Vec::new()")
        .convert("rt::IntoLoaders<Self::PredictBatch>", "rt::IntoLoaders::into_loaders($v)")
        .module_only(),
    hook("on_before_batch_transfer", Data, "Alters a batch before it is moved to the device. It runs on the batches of every stage (training, validation with the sanity check, test and predict), as in Lightning: a method taking one batch type serves a module whose steps all take that type, and one generic over the batch type (`fn on_before_batch_transfer<B: YourTrait>(&mut self, batch: B, ..) -> B`) serves stages of different types (a predict batch without labels), each stage's type checked at compile time. A datamodule that implements the hook for a stage's type runs instead of the module's, as in Lightning.")
        .params(&[("batch", "Self::Batch"), ("dataloader_idx", "usize")])
        .returns("Self::Batch", "batch")
        .module_only()
        .per_stage(),
    hook("transfer_batch_to_device", Data, "Moves a batch to the device. The default keeps it as is: the trainer already asks each dataloader for batches on the right device. It runs on the batches of every stage (training, validation with the sanity check, test and predict), as in Lightning: a method taking one batch type serves a module whose steps all take that type, and one generic over the batch type (`fn transfer_batch_to_device<B: YourTrait>(&mut self, batch: B, ..) -> B`) serves stages of different types (a predict batch without labels), each stage's type checked at compile time. A datamodule that implements the hook for a stage's type runs instead of the module's, as in Lightning.")
        .params(&[("batch", "Self::Batch"), ("device", "&rt::Device"), ("dataloader_idx", "usize")])
        .returns("Self::Batch", "{ let _ = device; batch }")
        .module_only()
        .per_stage(),
    hook("on_after_batch_transfer", Data, "Alters a batch after it is on the device (augmentation on the accelerator). It runs on the batches of every stage (training, validation with the sanity check, test and predict), as in Lightning: a method taking one batch type serves a module whose steps all take that type, and one generic over the batch type (`fn on_after_batch_transfer<B: YourTrait>(&mut self, batch: B, ..) -> B`) serves stages of different types (a predict batch without labels), each stage's type checked at compile time. A datamodule that implements the hook for a stage's type runs instead of the module's, as in Lightning.")
        .params(&[("batch", "Self::Batch"), ("dataloader_idx", "usize")])
        .returns("Self::Batch", "batch")
        .module_only()
        .per_stage(),
    hook("on_train_start", Training, "Called after the sanity check, before the first training epoch.").ctx(Some(Epoch)),
    hook("on_train_epoch_start", Training, "Called at the start of each training epoch.").ctx(Some(Epoch)),
    hook("on_train_batch_start", Training, "Called before each training batch. Return `BatchControl::StopEpoch` to end the epoch early.")
        .params(&[BATCH_REF, BATCH_IDX])
        .ctx(Some(StepCx))
        .returns("rt::BatchControl", "rt::BatchControl::Continue")
        .convert("rt::IntoBatchControl", "rt::IntoBatchControl::into_batch_control($v)"),
    hook("training_step", Training, "Computes the loss of one batch. Automatic optimization: return the loss (`Tensor<1>`), a `StepOutput` with extras, or `None` to skip the batch. Manual optimization: call `cx.manual_backward` and `cx.optimizer_step` yourself.")
        .params(&[("batch", "Self::Batch"), BATCH_IDX])
        .ctx(Some(StepCx))
        .returns("::core::option::Option<rt::StepOutput<Self::TrainExtra>>", "::core::option::Option::None")
        .step(Step::Training)
        .marker(&TRAINING_STEP),
    hook("on_before_zero_grad", Optimization, "Called after `training_step` and before `optimizer_zero_grad`.")
        .params(&[("optimizer", "&rt::Optimizer")])
        .ctx(Some(StepCx))
        .automatic(),
    hook("optimizer_zero_grad", Optimization, "Clears gradients. burn's gradients are values returned by `backward`, so the default does nothing. With `accumulate_grad_batches`, called on the first batch of each window only.")
        .params(&[("epoch", "usize"), BATCH_IDX, ("optimizer", "&mut rt::Optimizer")])
        .ctx(Some(StepCx))
        .returns("", "{ let _ = (epoch, batch_idx, optimizer); }")
        .module_only()
        .automatic(),
    hook("on_before_backward", Optimization, "Called before the loss is back-propagated.")
        .params(&[("loss", "&rt::Tensor<1>")])
        .ctx(Some(StepCx)),
    hook("backward", Optimization, "Back-propagates the loss and returns the gradients of this module's parameters.")
        .params(&[("loss", "rt::Tensor<1>")])
        .ctx(Some(StepCx))
        .returns("rt::Gradients", "rt::Gradients::from_loss(&loss, self)")
        .module_only(),
    hook("on_after_backward", Optimization, "Called after backward, with the gradients (log their norms here).")
        .params(&[("grads", "&rt::Gradients")])
        .ctx(Some(StepCx)),
    hook("on_before_optimizer_step", Optimization, "Called before the optimizer updates the parameters, after gradients are final.")
        .params(&[("optimizer", "&rt::Optimizer"), ("grads", "&rt::Gradients")])
        .ctx(Some(StepCx)),
    hook("configure_gradient_clipping", Optimization, "Clips the gradients; the default applies the trainer's `gradient_clip_val` and `gradient_clip_algorithm`.")
        .params(&[("optimizer", "&rt::Optimizer"), ("grads", "&mut rt::Gradients"), ("clip", "::core::option::Option<rt::GradientClip>")])
        .ctx(Some(StepCx))
        .returns("", "{ let _ = optimizer; if let ::core::option::Option::Some(clip) = clip { grads.clip(self, clip); } }")
        .module_only()
        .automatic(),
    hook("optimizer_step", Optimization, "Runs the optimizer step; `optimizer.step(self, closure)` runs the closure (`training_step`, backward, clipping) and then updates the parameters. With `accumulate_grad_batches`, called on the last batch of each window only (the other batches run `training_step` and backward without it).")
        .params(&[("epoch", "usize"), BATCH_IDX, ("optimizer", "&mut rt::Optimizer"), ("closure", "rt::OptimizerClosure<'_, Self>")])
        .ctx(None)
        .returns("", "{ let _ = (epoch, batch_idx); optimizer.step(self, closure); }")
        .module_only()
        .automatic(),
    hook("lr_scheduler_step", Optimization, "Advances the learning-rate scheduler when its `interval` and `frequency` are due; a plateau scheduler gets its monitored metric's value, read after validation.")
        .params(&[("scheduler", "&mut rt::Scheduler"), ("metric", "::core::option::Option<f64>")])
        .returns("", "match metric { ::core::option::Option::Some(metric) => scheduler.step_on(metric), ::core::option::Option::None => scheduler.step() }")
        .module_only()
        .automatic(),
    hook("on_train_batch_end", Training, "Called after each training batch with the step's output (`None` when the batch was skipped).")
        .params(&[("outputs", "::core::option::Option<&rt::StepOutput<Self::TrainExtra>>"), BATCH_REF, BATCH_IDX])
        .ctx(Some(StepCx)),
    hook("on_validation_model_zero_grad", Validation, "Called before in-fit validation.").module_only(),
    hook("on_validation_model_eval", Validation, "Called after the trainer switched the module to evaluation (no autodiff, training flags off).").module_only(),
    hook("on_validation_start", Validation, "Called when a validation run starts.").ctx(Some(Epoch)),
    hook("on_validation_epoch_start", Validation, "Called at the start of the validation epoch.").ctx(Some(Epoch)),
    hook("on_validation_batch_start", Validation, "Called before each validation batch.")
        .params(&[VAL_BATCH_REF, BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .ctx(Some(StepCx)),
    hook("validation_step", Validation, "Evaluates one batch without an autodiff graph; log metrics with `cx.log`. Its output goes to `on_validation_batch_end`.")
        .params(&[("batch", "Self::ValBatch"), BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .ctx(Some(StepCx))
        .returns("::core::option::Option<Self::ValidationOutput>", "::core::option::Option::None")
        .step(Step::Validation)
        .marker(&VALIDATION_STEP),
    hook("on_validation_batch_end", Validation, "Called after each validation batch with the step's output.")
        .params(&[("outputs", "&Self::ValidationOutput"), VAL_BATCH_REF, BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .ctx(Some(StepCx)),
    hook("on_validation_epoch_end", Validation, "Called at the end of the validation epoch; epoch metrics are reduced after it.").ctx(Some(Epoch)),
    hook("on_validation_end", Validation, "Called when a validation run ends."),
    hook("on_validation_model_train", Validation, "Called after validation inside fit, once the trainer switched the module back to training. Only called if implemented.").module_only(),
    hook("on_train_epoch_end", Training, "Called at the end of each training epoch, after its validation; checkpointing and early-stopping callbacks run after it.")
        .ctx(Some(Epoch))
        .monitors_after_module(),
    hook("on_save_checkpoint", Checkpoint, "Adds entries to a checkpoint before it is written.")
        .params(&[("checkpoint", "&mut rt::Checkpoint")]),
    hook("on_load_checkpoint", Checkpoint, "Reads entries from a checkpoint that is being restored.")
        .params(&[("checkpoint", "&rt::Checkpoint")]),
    hook("on_train_end", Training, "Called when training ends."),
    hook("on_fit_end", Fit, "Called at the very end of fit."),
    hook("teardown", Setup, "Called at the end of fit, validate, test and predict, with the stage.")
        .params(&[("stage", "rt::Stage")]),
    hook("on_test_model_eval", Test, "Called after the trainer switched the module to evaluation for testing.").module_only(),
    hook("on_test_start", Test, "Called when the test run starts.").ctx(Some(Epoch)),
    hook("on_test_epoch_start", Test, "Called at the start of the test epoch.").ctx(Some(Epoch)),
    hook("on_test_batch_start", Test, "Called before each test batch.")
        .params(&[TEST_BATCH_REF, BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .ctx(Some(StepCx)),
    hook("test_step", Test, "Evaluates one test batch without an autodiff graph; log metrics with `cx.log`.")
        .params(&[("batch", "Self::TestBatch"), BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .ctx(Some(StepCx))
        .returns("::core::option::Option<Self::TestOutput>", "::core::option::Option::None")
        .step(Step::Test)
        .marker(&TEST_STEP),
    hook("on_test_batch_end", Test, "Called after each test batch with the step's output.")
        .params(&[("outputs", "&Self::TestOutput"), TEST_BATCH_REF, BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .ctx(Some(StepCx)),
    hook("on_test_epoch_end", Test, "Called at the end of the test epoch.").ctx(Some(Epoch)),
    hook("on_test_end", Test, "Called when the test run ends."),
    hook("on_test_model_train", Test, "Called after testing if implemented.").module_only(),
    hook("on_predict_model_eval", Predict, "Called after the trainer switched the module to evaluation for prediction.").module_only(),
    hook("on_predict_start", Predict, "Called when prediction starts."),
    hook("on_predict_epoch_start", Predict, "Called at the start of the prediction epoch."),
    hook("on_predict_batch_start", Predict, "Called before each prediction batch.")
        .params(&[PREDICT_BATCH_REF, BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx(),
    hook("predict_step", Predict, "Predicts one batch; `Trainer::predict` collects and returns the predictions.")
        .params(&[("batch", "Self::PredictBatch"), BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx()
        .returns("::core::option::Option<Self::Prediction>", "::core::option::Option::None")
        .step(Step::Predict)
        .marker(&PREDICT_STEP),
    hook("on_predict_batch_end", Predict, "Called after each prediction batch with the prediction.")
        .params(&[("outputs", "&Self::Prediction"), PREDICT_BATCH_REF, BATCH_IDX, DATALOADER_IDX])
        .with_dataloader_idx(),
    hook("on_predict_epoch_end", Predict, "Called at the end of the prediction epoch."),
    hook("on_predict_end", Predict, "Called when prediction ends."),
    hook("on_exception", Fit, "Called when a run ends with an error.")
        .params(&[("error", "&rt::Error")])
        .callback_only(),
];

pub fn find(name: &str) -> Option<&'static HookSpec> {
    HOOKS.iter().find(|h| h.name == name)
}

/// Hooks a `#[lightning_module]` may implement.
pub fn module_hooks() -> impl Iterator<Item = &'static HookSpec> {
    HOOKS.iter().filter(|h| h.owner != Owner::Callback)
}

/// Hooks a `Callback` may implement.
pub fn callback_hooks() -> impl Iterator<Item = &'static HookSpec> {
    HOOKS.iter().filter(|h| h.owner != Owner::Module)
}

/// The closest module hook name, for "did you mean" (Levenshtein distance, as rustc does).
pub fn closest_module_hook(name: &str) -> Option<&'static str> {
    module_hooks()
        .map(|h| (edit_distance(name, h.name), h.name))
        .filter(|(d, candidate)| *d <= (candidate.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = HOOKS.iter().map(|h| h.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HOOKS.len());
    }

    #[test]
    fn did_you_mean_finds_typos_but_not_unrelated_names() {
        assert_eq!(closest_module_hook("trainig_step"), Some("training_step"));
        assert_eq!(closest_module_hook("on_train_epoch_ends"), Some("on_train_epoch_end"));
        assert_eq!(closest_module_hook("forward"), None);
    }

    #[test]
    fn every_hook_marker_is_declared() {
        for h in HOOKS {
            if let Some(marker) = h.marker {
                assert!(MARKERS.iter().any(|m| m.name == marker.name));
            }
        }
        let mut names: Vec<_> = MARKERS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MARKERS.len());
    }

    #[test]
    fn callback_only_hooks_do_not_accept_result() {
        // Callbacks report errors with `cx.fail`; their hooks return `()`.
        assert!(
            callback_hooks()
                .filter(|h| h.owner == Owner::Callback)
                .all(|h| !h.accepts_result)
        );
        assert!(find("training_step").is_some_and(|h| h.accepts_result));
    }

    #[test]
    fn dataloader_idx_is_the_last_parameter_of_the_evaluation_and_predict_batch_hooks() {
        let with: Vec<_> = HOOKS.iter().filter(|h| h.dataloader_idx).map(|h| h.name).collect();
        for h in HOOKS.iter().filter(|h| h.dataloader_idx) {
            assert_eq!(h.params.last(), Some(&DATALOADER_IDX), "{}", h.name);
        }
        // Lightning passes it to these and never to the training hooks.
        assert_eq!(with.len(), 9, "{with:?}");
        assert!(with.iter().all(|name| !name.contains("train")));
    }

    #[test]
    fn batch_parameters_and_dataloaders_name_their_stages_batch_type() {
        // The training hooks and the transfer hooks take `Self::Batch` (the transfer hooks also
        // each other stage's, through `per_stage`); each other stage's batch hooks, step and
        // dataloader its own type, so callbacks follow.
        for h in HOOKS {
            let stage_type = if h.name.contains("validation") || h.name.starts_with("val_") {
                "Self::ValBatch"
            } else if h.name.contains("test") {
                "Self::TestBatch"
            } else if h.name.contains("predict") {
                "Self::PredictBatch"
            } else {
                "Self::Batch"
            };
            let types = h.params.iter().map(|(_, ty)| *ty).chain([h.ret]);
            for ty in types.filter(|ty| ty.contains("Batch>") || ty.ends_with("Batch")) {
                assert!(ty.contains(stage_type), "{}: {ty}", h.name);
            }
        }
    }

    #[test]
    fn the_batch_transfer_hooks_run_on_every_stage() {
        let per_stage: Vec<_> = HOOKS.iter().filter(|h| h.per_stage).map(|h| h.name).collect();
        assert_eq!(
            per_stage,
            [
                "on_before_batch_transfer",
                "transfer_batch_to_device",
                "on_after_batch_transfer"
            ]
        );
        // Their batch comes first and is what they return: the generated per-stage methods
        // substitute the stage's type for `Self::Batch` in both.
        for h in HOOKS.iter().filter(|h| h.per_stage) {
            assert_eq!(h.params[0], ("batch", "Self::Batch"), "{}", h.name);
            assert_eq!(h.ret, "Self::Batch", "{}", h.name);
        }
    }

    #[test]
    fn every_type_parses() {
        for h in HOOKS {
            for (_, ty) in h.params {
                syn::parse_str::<syn::Type>(&ty.replace("rt::", "crate::")).unwrap();
            }
            if !h.ret.is_empty() {
                syn::parse_str::<syn::Type>(&h.ret.replace("rt::", "crate::")).unwrap();
            }
        }
    }
}
