//! Fine-tuning: Lightning's `BaseFinetuning` ([`Finetuning`], [`BaseFinetuning`] and its helpers
//! [`freeze`], [`make_trainable`], [`FinetuneOptimizer::unfreeze_and_add_param_group`]) and
//! `BackboneFinetuning` ([`BackboneFinetuning`]).
//!
//! Freezing uses burn's `set_require_grad(false)`, not `Module::freeze`: a frozen parameter gets
//! no gradient and its forward is not recorded (a frozen prefix of the network costs neither
//! its backward nor its graph), while dropout stays on and, with `train_bn`, `BatchNorm` layers
//! keep training, as torch's `requires_grad = False` leaves them. burn's `freeze` would also turn
//! those off.

use crate::hooks::{Callback, LightningModule};
use crate::optim::param_groups::is_buffer;
use crate::optim::{ParamGroupConfig, Params};
use crate::{EpochContext, Error, HookContext, JsonValue, Stage, Tensor};
use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// A part of a module to freeze or unfreeze (Lightning's `modules` argument): its parameters,
/// and which of them, and of its training flags, belong to `BatchNorm` layers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Part {
    params: Params,
    batch_norm_params: BTreeSet<ParamId>,
    batch_norm_flags: BTreeSet<ParamId>,
}

impl Part {
    /// The sub-module `part` (`Part::of(&module.backbone)`): its ids are those the module holds.
    pub fn of<P: Module>(part: &P) -> Self {
        struct Find {
            path: Vec<String>,
            types: Vec<String>,
            part: Part,
            entries: Vec<(ParamId, String)>,
        }
        impl Find {
            fn in_batch_norm(&self) -> bool {
                self.types.last().is_some_and(|t| t == "Struct:BatchNorm")
            }
        }
        impl ModuleVisitor for Find {
            fn enter_module(&mut self, name: &str, container_type: &str) {
                self.path.push(name.to_string());
                self.types.push(container_type.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
                self.types.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let path = self.path.join(".");
                if self.in_batch_norm() {
                    if is_buffer("BatchNorm", &path) {
                        return;
                    }
                    self.part.batch_norm_params.insert(param.id);
                }
                self.entries.push((param.id, path));
            }
            fn visit_flag(&mut self, flag: &Param<Flag>) {
                if self.in_batch_norm() {
                    self.part.batch_norm_flags.insert(flag.id);
                }
            }
        }
        let mut find = Find {
            path: Vec::new(),
            types: Vec::new(),
            part: Part::default(),
            entries: Vec::new(),
        };
        part.visit(&mut find);
        find.part.params = Params::from_entries(find.entries);
        find.part
    }

    /// Its parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Lightning's `filter_params(modules, train_bn)`: its parameters, without those of its
    /// `BatchNorm` layers unless `train_bn`.
    pub fn filter_params(&self, train_bn: bool) -> Params {
        let mut params = self.params.clone();
        if !train_bn {
            let batch_norm = Params::from_entries(
                self.params
                    .entries()
                    .iter()
                    .filter(|(id, _)| self.batch_norm_params.contains(id))
                    .cloned()
                    .collect(),
            );
            params = params.except(&batch_norm);
        }
        params
    }

    fn ids(&self) -> Vec<u64> {
        self.params
            .ids()
            .chain(self.batch_norm_flags.iter().copied())
            .map(|id| id.val())
            .collect()
    }
}

/// Sets the gradient requirement of the chosen parameters and the training flag of the chosen
/// `BatchNorm` layers.
struct SetTrainable<'a> {
    params: &'a dyn Fn(ParamId) -> Option<bool>,
    flags: &'a dyn Fn(ParamId) -> Option<bool>,
}

impl ModuleMapper for SetTrainable<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match (self.params)(param.id) {
            Some(trainable) => param.set_require_grad(trainable),
            None => param,
        }
    }

    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        match (self.flags)(flag.id) {
            Some(training) => flag.with_value(training),
            None => flag,
        }
    }
}

/// Lightning's `BaseFinetuning.freeze(modules, train_bn)`: the parameters of `part` stop
/// requiring gradients; its `BatchNorm` layers keep training with `train_bn` (their parameters
/// require gradients, their statistics update), else they freeze too and their statistics
/// stop updating. Dropout is left as it is.
///
/// Where torch differs: a `BatchNorm` frozen with `train_bn = false` normalizes with its running
/// statistics here (burn's evaluation behaviour), where torch's layer with
/// `track_running_stats = False` still normalizes each batch with the batch's own.
pub fn freeze<M: Module>(module: M, part: &Part, train_bn: bool) -> M {
    let in_part: BTreeSet<ParamId> = part.params.ids().collect();
    module.map(&mut SetTrainable {
        params: &|id| {
            in_part
                .contains(&id)
                .then(|| train_bn && part.batch_norm_params.contains(&id))
        },
        flags: &|id| part.batch_norm_flags.contains(&id).then_some(train_bn),
    })
}

/// Lightning's `BaseFinetuning.make_trainable(modules)`: every parameter of `part` requires
/// gradients again and its `BatchNorm` layers train.
pub fn make_trainable<M: Module>(module: M, part: &Part) -> M {
    let in_part: BTreeSet<ParamId> = part.params.ids().collect();
    module.map(&mut SetTrainable {
        params: &|id| in_part.contains(&id).then_some(true),
        flags: &|id| part.batch_norm_flags.contains(&id).then_some(true),
    })
}

/// An optimizer as `finetune_function` sees it (Lightning's `optimizer` argument): its param
/// groups' rates, and the changes a fine-tuning makes, which the trainer applies once the
/// callback's `on_train_epoch_start` returns.
pub struct FinetuneOptimizer<'c, 'a> {
    index: usize,
    cx: &'c mut EpochContext<'a>,
    unfrozen: &'c mut Vec<Part>,
}

impl FinetuneOptimizer<'_, '_> {
    /// Its position in what `configure_optimizers` returned.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many param groups it has.
    pub fn group_count(&self) -> usize {
        self.rates().count()
    }

    /// The learning rate of param group `group` (torch's `param_groups[group]["lr"]`).
    pub fn group_lr(&self, group: usize) -> Option<f64> {
        self.rates().find(|rate| rate.group == group).map(|rate| rate.lr)
    }

    fn rates(&self) -> impl Iterator<Item = &crate::LearningRate> {
        self.cx
            .learning_rates()
            .iter()
            .filter(|rate| rate.optimizer == self.index)
    }

    /// Sets the rate of param group `group` (torch's `param_groups[group]["lr"] = lr`).
    pub fn set_group_lr(&mut self, group: usize, lr: f64) {
        self.cx.set_param_group_lr(self.index, group, lr);
    }

    /// Adds a param group (torch's `add_param_group`).
    pub fn add_param_group(&mut self, group: ParamGroupConfig) {
        self.cx.add_param_group(self.index, group);
    }

    /// Lightning's `unfreeze_and_add_param_group(modules, optimizer, lr, initial_denom_lr,
    /// train_bn)`: makes `part` trainable ([`make_trainable`]) and adds its parameters (without
    /// its `BatchNorm` layers' unless `train_bn`; without those the optimizer already updates)
    /// as a new param group, at `lr`, else at the first group's rate divided by
    /// `initial_denom_lr`. Returns the module.
    pub fn unfreeze_and_add_param_group<M: Module>(
        &mut self,
        module: M,
        part: &Part,
        lr: Option<f64>,
        initial_denom_lr: f64,
        train_bn: bool,
    ) -> M {
        let module = make_trainable(module, part);
        let lr = lr.unwrap_or_else(|| self.group_lr(0).unwrap_or(f64::NAN) / initial_denom_lr);
        let params = part.filter_params(train_bn);
        if !params.is_empty() {
            self.add_param_group(ParamGroupConfig::new(params).lr(lr));
        }
        self.unfrozen.push(part.clone());
        module
    }
}

/// Lightning's `BaseFinetuning`, as a trait: freeze parts of the module before training
/// ([`freeze_before_training`](Self::freeze_before_training), called at `setup`, before
/// `configure_optimizers`), and at each training epoch's start unfreeze them and add them to
/// the optimizer ([`finetune_function`](Self::finetune_function), called for each optimizer).
/// Wrap it in [`BaseFinetuning`] to add it to the trainer.
///
/// ```ignore
/// struct FeatureExtractorFreezeUnfreeze { unfreeze_at_epoch: usize }
///
/// impl Finetuning<MyModel> for FeatureExtractorFreezeUnfreeze {
///     fn freeze_before_training(&mut self, module: MyModel) -> MyModel {
///         let part = Part::of(&module.feature_extractor);
///         freeze(module, &part, true)
///     }
///     fn finetune_function(&mut self, module: MyModel, epoch: usize, optimizer: &mut FinetuneOptimizer) -> MyModel {
///         if epoch != self.unfreeze_at_epoch {
///             return module;
///         }
///         let part = Part::of(&module.feature_extractor);
///         optimizer.unfreeze_and_add_param_group(module, &part, None, 10.0, true)
///     }
/// }
/// // configure_optimizers: `OptimizerConfig::new(AdamConfig::new(), lr).param_group(Params::trainable(self))`
/// trainer_builder.callback(BaseFinetuning::new(FeatureExtractorFreezeUnfreeze { unfreeze_at_epoch: 10 }))
/// ```
///
/// The optimizer should hold the trainable parameters only (`Params::trainable(self)`, torch's
/// `filter(lambda p: p.requires_grad, ...)`): parameters it already updates are not added again.
pub trait Finetuning<M>: Send + 'static {
    /// Freezes what trains later (called at `setup` of `fit`).
    fn freeze_before_training(&mut self, module: M) -> M;

    /// Unfreezes at epoch `epoch` (0-based), for `optimizer`, what should train from now on.
    fn finetune_function(&mut self, module: M, epoch: usize, optimizer: &mut FinetuneOptimizer<'_, '_>) -> M;

    /// State saved in checkpoints besides which parts were unfrozen.
    fn state_dict(&self) -> Option<JsonValue> {
        None
    }

    /// Restores what [`state_dict`](Self::state_dict) saved.
    fn load_state_dict(&mut self, _state: JsonValue) -> Result<(), Error> {
        Ok(())
    }
}

/// A [`Finetuning`] as a callback (Lightning's `BaseFinetuning` subclass):
/// `.callback(BaseFinetuning::new(MyFinetuning { .. }))`. Its checkpoint state records which
/// parts were unfrozen (the optimizer's state records their param groups), so that a resumed
/// fit trains them again.
pub struct BaseFinetuning<F> {
    finetuning: F,
    driver: Driver,
}

impl<F> BaseFinetuning<F> {
    /// The callback of `finetuning`.
    pub fn new(finetuning: F) -> Self {
        Self {
            finetuning,
            driver: Driver::default(),
        }
    }

    /// The [`Finetuning`] it drives.
    pub fn finetuning(&self) -> &F {
        &self.finetuning
    }
}

/// What every fine-tuning callback does around its [`Finetuning`].
#[derive(Default)]
struct Driver {
    /// The parts unfrozen so far (Lightning's `_internal_optimizer_metadata`).
    unfrozen: Vec<Part>,
    /// A resume restored `unfrozen`: they are made trainable again once the fit starts.
    restored: bool,
}

impl Driver {
    fn setup<M: Module, F: Finetuning<M>>(finetuning: &mut F, module: &mut M, stage: Stage) {
        if stage == Stage::Fit {
            replace_with::replace_with_or_abort(module, |module| finetuning.freeze_before_training(module));
        }
    }

    /// A resumed fit: the parts the saved fit unfroze train again (their param groups were
    /// restored with the optimizer). Lightning restores the groups but leaves the parameters
    /// frozen by `freeze_before_training`.
    fn on_fit_start<M: Module>(&mut self, module: &mut M) {
        if std::mem::take(&mut self.restored) {
            for part in &self.unfrozen {
                *module = make_trainable(module.clone(), part);
            }
        }
    }

    fn on_train_epoch_start<M: Module, F: Finetuning<M>>(
        &mut self,
        finetuning: &mut F,
        module: &mut M,
        cx: &mut EpochContext<'_>,
    ) {
        let epoch = cx.current_epoch;
        let optimizers = cx
            .learning_rates()
            .iter()
            .map(|rate| rate.optimizer)
            .max()
            .map_or(0, |i| i + 1);
        for index in 0..optimizers {
            let mut optimizer = FinetuneOptimizer {
                index,
                cx: &mut *cx,
                unfrozen: &mut self.unfrozen,
            };
            replace_with::replace_with_or_abort(module, |module| {
                finetuning.finetune_function(module, epoch, &mut optimizer)
            });
        }
    }

    fn state_dict(&self, own: Option<JsonValue>) -> JsonValue {
        let unfrozen: Vec<JsonValue> = self.unfrozen.iter().map(|part| serde_json::json!(part.ids())).collect();
        serde_json::json!({ "unfrozen": unfrozen, "finetuning": own })
    }

    /// Restores the parts unfrozen; returns the [`Finetuning`]'s own state.
    fn load_state_dict(&mut self, state: &JsonValue) -> Result<Option<JsonValue>, Error> {
        let parts: Vec<Vec<u64>> = state
            .get("unfrozen")
            .and_then(|u| serde_json::from_value(u.clone()).ok())
            .ok_or_else(|| Error::Checkpoint("the fine-tuning state has no `unfrozen` parts".into()))?;
        self.unfrozen = parts
            .into_iter()
            .map(|ids| Part {
                // Which ids are flags or BatchNorm parameters does not matter to make them
                // trainable: both are set.
                params: Params::from_entries(ids.iter().map(|id| (ParamId::from(*id), String::new())).collect()),
                batch_norm_params: BTreeSet::new(),
                batch_norm_flags: ids.into_iter().map(ParamId::from).collect(),
            })
            .collect();
        self.restored = true;
        Ok(state.get("finetuning").filter(|own| !own.is_null()).cloned())
    }
}

/// The name of a type without its path and generics.
fn short_name<T: ?Sized>() -> Cow<'static, str> {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    Cow::Borrowed(base.rsplit("::").next().unwrap_or(base))
}

/// The `Callback` methods of a fine-tuning callback: `$finetuning` is its [`Finetuning`] field.
macro_rules! finetuning_callback {
    ($finetuning:ident) => {
        fn setup(&mut self, module: &mut M, stage: Stage, _cx: &mut HookContext<'_>) {
            Driver::setup(&mut self.$finetuning, module, stage);
        }

        fn on_fit_start(&mut self, module: &mut M, _cx: &mut HookContext<'_>) {
            self.driver.on_fit_start(module);
        }

        fn on_train_epoch_start(&mut self, module: &mut M, cx: &mut EpochContext<'_>) {
            self.driver
                .on_train_epoch_start(&mut self.$finetuning, module, cx);
        }

        fn state_dict(&mut self) -> Option<JsonValue> {
            Some(self.driver.state_dict(self.$finetuning.state_dict()))
        }

        fn load_state_dict(&mut self, state: JsonValue) -> Result<(), Error> {
            match self.driver.load_state_dict(&state)? {
                Some(own) => self.$finetuning.load_state_dict(own),
                None => Ok(()),
            }
        }
    };
}

impl<M: LightningModule, F: Finetuning<M>> Callback<M> for BaseFinetuning<F> {
    fn name(&self) -> Cow<'static, str> {
        short_name::<F>()
    }

    finetuning_callback!(finetuning);
}

/// Lightning's `BackboneFinetuning`: the sub-module `select` picks (Lightning's `backbone`
/// attribute) is frozen before training and unfrozen at epoch `unfreeze_backbone_at_epoch`
/// (default 10) as a new param group at `backbone_initial_lr`, else the first group's rate times
/// `backbone_initial_ratio_lr` (default 0.1); from the next epoch on its rate is multiplied by
/// `lambda_func(epoch + 1)` (default 2.0) each epoch, up to the first group's rate when
/// `should_align` (default).
///
/// ```ignore
/// let finetuning = BackboneFinetuning::new(|model: &LitTransfer| &model.backbone).unfreeze_backbone_at_epoch(5);
/// // configure_optimizers: the head alone, `OptimizerConfig::new(AdamConfig::new(), 1e-3).for_params(&self.head)`
/// ```
///
/// The backbone is frozen with burn's `set_require_grad(false)`: its forward is not recorded
/// and it gets no gradients, so while it is frozen a step costs less (`cargo bench --bench
/// finetuning`). Its `BatchNorm` layers keep training (their parameters require gradients and
/// their statistics update), as Lightning's `freeze` leaves them; `train_bn` decides whether they
/// join the new param group.
pub struct BackboneFinetuning<M> {
    backbone: Backbone<M>,
    driver: Driver,
}

/// [`BackboneFinetuning`]'s settings and state.
struct Backbone<M> {
    select: Box<dyn Fn(&M) -> Part + Send>,
    unfreeze_at_epoch: usize,
    lambda_func: Box<dyn Fn(usize) -> f64 + Send>,
    initial_ratio_lr: f64,
    initial_lr: Option<f64>,
    should_align: bool,
    initial_denom_lr: f64,
    train_bn: bool,
    verbose: bool,
    previous_backbone_lr: Option<f64>,
}

impl<M: Module + 'static> BackboneFinetuning<M> {
    /// Fine-tunes the sub-module `select` returns (`|model: &MyModel| &model.backbone`), with
    /// Lightning's defaults.
    pub fn new<B: Module>(select: impl Fn(&M) -> &B + Send + 'static) -> Self {
        Self {
            backbone: Backbone {
                select: Box::new(move |module: &M| Part::of(select(module))),
                unfreeze_at_epoch: 10,
                lambda_func: Box::new(|_| 2.0),
                initial_ratio_lr: 0.1,
                initial_lr: None,
                should_align: true,
                initial_denom_lr: 10.0,
                train_bn: true,
                verbose: false,
                previous_backbone_lr: None,
            },
            driver: Driver::default(),
        }
    }

    /// The epoch (0-based) the backbone is unfrozen at.
    pub fn unfreeze_backbone_at_epoch(mut self, epoch: usize) -> Self {
        self.backbone.unfreeze_at_epoch = epoch;
        self
    }

    /// What the backbone's rate is multiplied by at each epoch after the unfreezing, given the
    /// epoch's number plus one (Lightning's `lambda_func`; default 2.0).
    pub fn lambda_func(mut self, lambda: impl Fn(usize) -> f64 + Send + 'static) -> Self {
        self.backbone.lambda_func = Box::new(lambda);
        self
    }

    /// The backbone's first rate as a fraction of the first group's (default 0.1).
    pub fn backbone_initial_ratio_lr(mut self, ratio: f64) -> Self {
        self.backbone.initial_ratio_lr = ratio;
        self
    }

    /// The backbone's first rate, in place of the ratio.
    pub fn backbone_initial_lr(mut self, lr: f64) -> Self {
        self.backbone.initial_lr = Some(lr);
        self
    }

    /// Whether the backbone's rate stops at the first group's (default true).
    pub fn should_align(mut self, align: bool) -> Self {
        self.backbone.should_align = align;
        self
    }

    /// Lightning's `initial_denom_lr` (default 10), which its `BackboneFinetuning` passes on to
    /// `unfreeze_and_add_param_group` where it has no effect (the rate is always given).
    pub fn initial_denom_lr(mut self, denom: f64) -> Self {
        self.backbone.initial_denom_lr = denom;
        self
    }

    /// Whether the backbone's `BatchNorm` layers join its param group (default true).
    pub fn train_bn(mut self, train_bn: bool) -> Self {
        self.backbone.train_bn = train_bn;
        self
    }

    /// Traces the rates at each epoch from the unfreezing on (target `burn_lightning`, level
    /// info; Lightning logs them).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.backbone.verbose = verbose;
        self
    }

    /// The backbone's rate, once unfrozen.
    pub fn backbone_lr(&self) -> Option<f64> {
        self.backbone.previous_backbone_lr
    }
}

impl<M: Module + 'static> Finetuning<M> for Backbone<M> {
    fn freeze_before_training(&mut self, module: M) -> M {
        // Lightning's `freeze(pl_module.backbone)`, whose `train_bn` is its default, true.
        let part = (self.select)(&module);
        freeze(module, &part, true)
    }

    fn finetune_function(&mut self, module: M, epoch: usize, optimizer: &mut FinetuneOptimizer<'_, '_>) -> M {
        let current_lr = optimizer.group_lr(0).unwrap_or(f64::NAN);
        if epoch == self.unfreeze_at_epoch {
            let initial = self.initial_lr.unwrap_or(current_lr * self.initial_ratio_lr);
            self.previous_backbone_lr = Some(initial);
            let part = (self.select)(&module);
            let module = optimizer.unfreeze_and_add_param_group(
                module,
                &part,
                Some(initial),
                self.initial_denom_lr,
                self.train_bn,
            );
            if self.verbose {
                tracing::info!(target: "burn_lightning", "Current lr: {current_lr}, Backbone lr: {initial}");
            }
            module
        } else if epoch > self.unfreeze_at_epoch
            && let Some(previous) = self.previous_backbone_lr
        {
            let mut next = (self.lambda_func)(epoch + 1) * previous;
            if self.should_align && next > current_lr {
                next = current_lr;
            }
            let last = optimizer.group_count().saturating_sub(1);
            optimizer.set_group_lr(last, next);
            self.previous_backbone_lr = Some(next);
            if self.verbose {
                tracing::info!(target: "burn_lightning", "Current lr: {current_lr}, Backbone lr: {next}");
            }
            module
        } else {
            module
        }
    }

    fn state_dict(&self) -> Option<JsonValue> {
        Some(serde_json::json!({ "previous_backbone_lr": self.previous_backbone_lr }))
    }

    fn load_state_dict(&mut self, state: JsonValue) -> Result<(), Error> {
        self.previous_backbone_lr = state.get("previous_backbone_lr").and_then(JsonValue::as_f64);
        Ok(())
    }
}

impl<M: LightningModule> Callback<M> for BackboneFinetuning<M> {
    fn name(&self) -> Cow<'static, str> {
        short_name::<Self>()
    }

    finetuning_callback!(backbone);
}
