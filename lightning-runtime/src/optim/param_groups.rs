//! Parameter groups the torch way: which parameters a group holds ([`Params`]: by sub-module,
//! by name pattern, by a predicate), each group with its own learning rate and weight decay
//! ([`ParamGroupConfig`]), and the optimizer's class and the way to build one optimizer per
//! weight decay ([`OptimizerSource`]), on top of burn's `ModuleOptimizer::with_group`.

use crate::{Error, Tensor};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{
    AdaGrad, AdaGradConfig, Adafactor, AdafactorConfig, Adam, AdamConfig, AdamW, AdamWConfig, Adan, AdanConfig,
    DynOptimizer, DynState, Lamb, LambConfig, Lion, LionConfig, ModuleOptimizer, Muon, MuonConfig, RmsProp,
    RmsPropConfig, Sgd, SgdConfig, StateSink, StateSource,
};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One parameter as a [`Params::matching`] predicate sees it.
#[derive(Clone, Copy, Debug)]
pub struct ParamInfo<'a> {
    path: &'a str,
    module_type: &'a str,
    shape: &'a [usize],
}

impl<'a> ParamInfo<'a> {
    /// Its path from the module given to [`Params`] (`blocks.0.ln_1.gamma`), as burn's
    /// records and checkpoints name it.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The last segment of its path: the field that holds it (`weight`, `bias`, `gamma`).
    pub fn name(&self) -> &'a str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }

    /// The type of the module that holds it (`Linear`, `LayerNorm`, `Embedding`): torch's
    /// `isinstance(module, nn.Linear)` in minGPT's rule.
    pub fn module_type(&self) -> &'a str {
        self.module_type
    }

    /// Whether the module that holds it is a `T` (compares the type's name, without its path and
    /// generics): `p.in_module::<Linear>()`.
    pub fn in_module<T>(&self) -> bool {
        self.module_type == short_type_name(std::any::type_name::<T>())
    }

    /// Its shape, read without initializing a lazy parameter.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Its number of dimensions (nanoGPT decays the parameters with 2 or more).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Whether it is a bias: a field named `bias` (burn's `Linear`, `Conv*`) or `beta` (the
    /// shift of burn's normalization layers, torch's `bias`).
    pub fn is_bias(&self) -> bool {
        matches!(self.name(), "bias") || (self.is_in_norm_layer() && self.name() == "beta")
    }

    /// Whether a normalization layer holds it (`LayerNorm`, `BatchNorm`, `GroupNorm`,
    /// `InstanceNorm`, `RmsNorm`, `LocalResponseNorm`).
    pub fn is_in_norm_layer(&self) -> bool {
        NORM_LAYERS.contains(&self.module_type)
    }

    /// Whether an `Embedding` holds it.
    pub fn is_embedding(&self) -> bool {
        self.module_type == "Embedding"
    }
}

/// burn's normalization layers.
const NORM_LAYERS: &[&str] = &[
    "LayerNorm",
    "BatchNorm",
    "GroupNorm",
    "InstanceNorm",
    "RmsNorm",
    "LocalResponseNorm",
];

/// `burn_nn::modules::linear::Linear<..>` -> `Linear`.
fn short_type_name(full: &str) -> &str {
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics.rsplit("::").next().unwrap_or(without_generics)
}

/// A set of a module's parameters, in the order the module holds them: what a param group
/// holds (torch's `{"params": [...]}`).
///
/// It is made from the module in `configure_optimizers`, as torch code builds its lists from
/// `self.named_parameters()`: by sub-module ([`of`](Self::of)), by name pattern
/// ([`named`](Self::named)), by a predicate ([`matching`](Self::matching)), or with minGPT's
/// rule ([`no_decay`](Self::no_decay) and [`decay`](Self::decay)). Sets combine with
/// [`union`](Self::union) and [`except`](Self::except). A `BatchNorm`'s running statistics are
/// buffers, not parameters: no set holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    entries: Vec<(ParamId, String)>,
}

impl Params {
    /// Every parameter of `module` (a sub-module: `Params::of(&self.head)`, torch's
    /// `self.head.parameters()`). Paths are relative to `module`.
    pub fn of<M: Module>(module: &M) -> Self {
        Self::matching(module, |_| true)
    }

    /// The parameters of `module` for which `keep` is true, as torch code filters
    /// `named_parameters()`: `Params::matching(self, |p| p.in_module::<Linear>() && p.name() == "weight")`.
    pub fn matching<M: Module>(module: &M, mut keep: impl FnMut(&ParamInfo<'_>) -> bool) -> Self {
        let mut entries = Vec::new();
        visit_params(module, |id, info| {
            if keep(info) {
                entries.push((id, info.path.to_string()));
            }
        });
        Self { entries }
    }

    /// The parameters of `module` whose path matches the regular expression `pattern`
    /// (`r"^backbone\."`, `r"\.bias$"`). An invalid pattern is an error.
    pub fn named<M: Module>(module: &M, pattern: &str) -> Result<Self, Error> {
        let group = burn::module::ParamGroup::from_regex(pattern).map_err(|e| Error::Hook {
            hook: "configure_optimizers",
            message: format!("`Params::named` was given `{pattern}`, which is not a regular expression: {e:?}"),
        })?;
        Ok(Self::matching(module, |p| {
            group.matches(&ParamId::new(), Some(p.path()))
        }))
    }

    /// The parameters of `module` that minGPT does not decay: biases, every parameter of a
    /// normalization layer, and embeddings (minGPT's `no_decay` set; [`decay`](Self::decay) is
    /// the rest).
    pub fn no_decay<M: Module>(module: &M) -> Self {
        Self::matching(module, |p| p.is_bias() || p.is_in_norm_layer() || p.is_embedding())
    }

    /// The parameters of `module` minGPT decays: all but [`no_decay`](Self::no_decay)'s (the
    /// weights of `Linear`, convolutions, attention projections...).
    pub fn decay<M: Module>(module: &M) -> Self {
        Self::matching(module, |p| !(p.is_bias() || p.is_in_norm_layer() || p.is_embedding()))
    }

    /// The parameters of `module` that require gradients (torch's
    /// `filter(lambda p: p.requires_grad, self.parameters())`, what an optimizer takes when a
    /// fine-tuning callback froze part of the module). Reading this initializes lazy parameters.
    pub fn trainable<M: Module>(module: &M) -> Self {
        let trainable = TrainableIds::of(module);
        Self::matching(module, |_| true).filter_ids(|id| trainable.contains(&id))
    }

    /// These parameters and those of `other` not already in (torch's `list(a) + list(b)`
    /// without duplicates).
    #[must_use]
    pub fn union(mut self, other: Params) -> Self {
        let known: BTreeSet<ParamId> = self.ids().collect();
        self.entries
            .extend(other.entries.into_iter().filter(|(id, _)| !known.contains(id)));
        self
    }

    /// These parameters without those of `other`.
    #[must_use]
    pub fn except(self, other: &Params) -> Self {
        let drop: BTreeSet<ParamId> = other.ids().collect();
        self.filter_ids(|id| !drop.contains(&id))
    }

    fn filter_ids(mut self, mut keep: impl FnMut(ParamId) -> bool) -> Self {
        self.entries.retain(|(id, _)| keep(*id));
        self
    }

    /// How many parameters (tensors) it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The parameters' paths, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, path)| path.as_str())
    }

    /// The parameters' ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.entries.iter().map(|(id, _)| *id)
    }

    /// Whether it holds the parameter `id`.
    pub fn contains(&self, id: ParamId) -> bool {
        self.entries.iter().any(|(own, _)| *own == id)
    }

    pub(crate) fn from_entries(entries: Vec<(ParamId, String)>) -> Self {
        Self { entries }
    }

    pub(crate) fn entries(&self) -> &[(ParamId, String)] {
        &self.entries
    }
}

/// Calls `f` with every float parameter of `module` (not `BatchNorm`'s running statistics), its
/// id and what a predicate sees of it. Reads no tensor and initializes no lazy parameter.
pub(crate) fn visit_params<M: Module>(module: &M, mut f: impl FnMut(ParamId, &ParamInfo<'_>)) {
    struct Walk<'f, F> {
        path: Vec<String>,
        types: Vec<String>,
        f: &'f mut F,
    }
    impl<F: FnMut(ParamId, &ParamInfo<'_>)> ModuleVisitor for Walk<'_, F> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push(name.to_string());
            self.types.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
            self.types.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // The container entered last is the type that holds the field ("Struct:Linear").
            let container = self.types.last().map_or("", String::as_str);
            let module_type = container.split_once(':').map_or(container, |(_, name)| name);
            let path = self.path.join(".");
            if is_buffer(module_type, &path) {
                return;
            }
            let shape = param.lazy_shape();
            let info = ParamInfo {
                path: &path,
                module_type,
                shape: shape.as_slice(),
            };
            (self.f)(param.id, &info);
        }
    }
    module.visit(&mut Walk {
        path: Vec::new(),
        types: Vec::new(),
        f: &mut f,
    });
}

/// Whether the float value at `path`, held by a `module_type`, is a buffer (torch's
/// `register_buffer`) rather than a parameter: burn's `BatchNorm` running statistics.
pub(crate) fn is_buffer(module_type: &str, path: &str) -> bool {
    module_type == "BatchNorm" && (path.ends_with("running_mean") || path.ends_with("running_var"))
}

/// The ids of the parameters that require gradients.
struct TrainableIds(BTreeSet<ParamId>);

impl TrainableIds {
    fn of<M: Module>(module: &M) -> BTreeSet<ParamId> {
        let mut visitor = TrainableIds(BTreeSet::new());
        module.visit(&mut visitor);
        visitor.0
    }
}

impl ModuleVisitor for TrainableIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.0.insert(param.id);
        }
    }
}

/// One param group (torch's `{"params": ..., "lr": ..., "weight_decay": ..., "name": ...}`):
/// its parameters and what it overrides of the optimizer's defaults. Give it to
/// [`OptimizerConfig::param_group`](crate::OptimizerConfig::param_group); a parameter belongs to
/// one group at most (torch refuses a parameter in two), and the optimizer updates only the
/// parameters of its groups.
#[derive(Clone, Debug)]
pub struct ParamGroupConfig {
    pub(crate) params: Params,
    pub(crate) lr: Option<f64>,
    pub(crate) weight_decay: Option<f64>,
    pub(crate) name: Option<String>,
}

impl ParamGroupConfig {
    /// A group of `params` with the optimizer's learning rate and weight decay.
    pub fn new(params: Params) -> Self {
        Self {
            params,
            lr: None,
            weight_decay: None,
            name: None,
        }
    }

    /// Its own learning rate (the base rate its scheduler starts from).
    #[must_use]
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }

    /// Its own weight decay (AdamW's decoupled decay; L2 for Adam, SGD, RMSprop, Adagrad, as
    /// torch's `weight_decay` is for each). Needs the optimizer's configuration, not a built
    /// `ModuleOptimizer`: see [`OptimizerSource`].
    #[must_use]
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }

    /// Its name: `LearningRateMonitor` logs it as `lr-AdamW/{name}` instead of `lr-AdamW/pg2`
    /// (Lightning's `name` key of a param group).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Its parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }
}

impl From<Params> for ParamGroupConfig {
    fn from(params: Params) -> Self {
        Self::new(params)
    }
}

/// Builds another optimizer of the same kind and settings with another weight decay, for a
/// param group that has its own.
pub(crate) trait GroupFactory: Send + Sync {
    fn build(&self, weight_decay: f64) -> SharedOptimizer;
}

/// A type-erased burn optimizer, shared: what `ModuleOptimizer::with_group` takes for a group.
#[derive(Clone)]
pub(crate) struct SharedOptimizer(pub(crate) Arc<dyn DynOptimizer>);

impl DynOptimizer for SharedOptimizer {
    fn step_dyn(
        &self,
        rank: usize,
        lr: burn::optim::LearningRate,
        tensor: burn::tensor::kind::BridgeTensor,
        grad: burn::tensor::kind::BridgeTensor,
        state: Option<DynState>,
    ) -> (burn::tensor::kind::BridgeTensor, Option<DynState>) {
        self.0.step_dyn(rank, lr, tensor, grad, state)
    }

    fn to_device_dyn(&self, state: DynState, device: &burn::tensor::Device) -> DynState {
        self.0.to_device_dyn(state, device)
    }

    fn state_flatten(&self, prefix: &str, state: &DynState, out: &mut StateSink) {
        self.0.state_flatten(prefix, state, out);
    }

    fn state_unflatten(
        &self,
        rank: usize,
        prefix: &str,
        src: &mut StateSource,
        device: &burn::tensor::Device,
    ) -> Option<DynState> {
        self.0.state_unflatten(rank, prefix, src, device)
    }
}

/// What [`OptimizerConfig::new`](crate::OptimizerConfig::new) takes: a burn optimizer, as its
/// configuration (`AdamWConfig::new()`), built (`AdamWConfig::new().build()`) or as a
/// `ModuleOptimizer` (`AdamWConfig::new().init()`; an optimizer of your own goes in this way,
/// `ModuleOptimizer::from(mine)`). Implemented for every optimizer of burn 0.22.1 but L-BFGS,
/// which is not a per-parameter optimizer.
///
/// The configuration is the torch way (`torch.optim.AdamW(groups, lr=..., weight_decay=...)`):
/// `LearningRateMonitor` knows its class (`lr-AdamW`), and param groups may each have their own
/// weight decay. A built optimizer keeps its class, but its weight decay is fixed. A
/// `ModuleOptimizer` is type-erased: it logs as `lr-Optimizer`, and groups may only change the
/// learning rate.
pub trait OptimizerSource {
    /// The optimizer and what the trainer needs to know of it.
    #[doc(hidden)]
    fn into_parts(self) -> OptimizerParts;
}

/// What an [`OptimizerSource`] gives the trainer.
#[doc(hidden)]
pub struct OptimizerParts {
    pub(crate) optimizer: ModuleOptimizer,
    /// torch's class name (`AdamW`), or `Optimizer` when unknown.
    pub(crate) class: Cow<'static, str>,
    /// The optimizer's own weight decay, when known.
    pub(crate) weight_decay: Option<f64>,
    pub(crate) factory: Option<Arc<dyn GroupFactory>>,
}

impl OptimizerSource for ModuleOptimizer {
    fn into_parts(self) -> OptimizerParts {
        OptimizerParts {
            optimizer: self,
            class: Cow::Borrowed("Optimizer"),
            weight_decay: None,
            factory: None,
        }
    }
}

/// The `weight_decay` of a burn optimizer's configuration, read through its serialized form
/// (its fields are private): a number (AdamW's decoupled decay) or `{"penalty": x}` (an L2
/// penalty), `null` for none. f32 values come back as written (`0.1`, not `0.100000001`).
fn configured_weight_decay<C: serde::Serialize>(config: &C) -> Option<f64> {
    let value = serde_json::to_value(config).ok()?;
    let stored = match value.get("weight_decay")? {
        serde_json::Value::Null => return Some(0.0),
        serde_json::Value::Number(n) => n.as_f64()?,
        other => other.get("penalty").and_then(serde_json::Value::as_f64)?,
    };
    // burn keeps it as an `f32`: its shortest decimal form is what was written.
    (stored as f32).to_string().parse().ok()
}

/// Builds optimizers from a configuration whose weight decay is an optional L2 penalty.
struct PenaltyFactory<C, F>(C, F);

impl<C, O, F> GroupFactory for PenaltyFactory<C, F>
where
    C: Clone + Send + Sync,
    O: burn::optim::Optimizer,
    F: Fn(C, Option<burn::optim::decay::WeightDecayConfig>) -> O + Send + Sync,
{
    fn build(&self, weight_decay: f64) -> SharedOptimizer {
        let penalty = (weight_decay != 0.0).then(|| burn::optim::decay::WeightDecayConfig::new(weight_decay as f32));
        SharedOptimizer(Arc::new((self.1)(self.0.clone(), penalty)))
    }
}

macro_rules! penalty_sources {
    ($($config:ident => $optimizer:ident, $class:literal;)*) => {$(
        impl OptimizerSource for $config {
            fn into_parts(self) -> OptimizerParts {
                OptimizerParts {
                    optimizer: self.init(),
                    class: Cow::Borrowed($class),
                    weight_decay: configured_weight_decay(&self),
                    factory: Some(Arc::new(PenaltyFactory(self, |config: $config, penalty: Option<burn::optim::decay::WeightDecayConfig>| {
                        config.with_weight_decay(penalty).build()
                    }))),
                }
            }
        }

        impl OptimizerSource for $optimizer {
            fn into_parts(self) -> OptimizerParts {
                OptimizerParts {
                    optimizer: self.into(),
                    class: Cow::Borrowed($class),
                    weight_decay: None,
                    factory: None,
                }
            }
        }
    )*};
}

// torch's class names, which Lightning's `LearningRateMonitor` keys show.
penalty_sources! {
    AdamConfig => Adam, "Adam";
    SgdConfig => Sgd, "SGD";
    RmsPropConfig => RmsProp, "RMSprop";
    AdaGradConfig => AdaGrad, "Adagrad";
}

/// AdamW's decoupled weight decay.
struct AdamWFactory(AdamWConfig);

impl GroupFactory for AdamWFactory {
    fn build(&self, weight_decay: f64) -> SharedOptimizer {
        SharedOptimizer(Arc::new(self.0.clone().with_weight_decay(weight_decay as f32).build()))
    }
}

impl OptimizerSource for AdamWConfig {
    fn into_parts(self) -> OptimizerParts {
        OptimizerParts {
            optimizer: self.init(),
            class: Cow::Borrowed("AdamW"),
            weight_decay: configured_weight_decay(&self),
            factory: Some(Arc::new(AdamWFactory(self))),
        }
    }
}

impl OptimizerSource for AdamW {
    fn into_parts(self) -> OptimizerParts {
        OptimizerParts {
            optimizer: self.into(),
            class: Cow::Borrowed("AdamW"),
            weight_decay: None,
            factory: None,
        }
    }
}

macro_rules! named_sources {
    ($($config:ident => $optimizer:ident, $class:literal;)*) => {$(
        impl OptimizerSource for $config {
            fn into_parts(self) -> OptimizerParts {
                OptimizerParts {
                    optimizer: self.init(),
                    class: Cow::Borrowed($class),
                    weight_decay: configured_weight_decay(&self),
                    factory: None,
                }
            }
        }

        impl OptimizerSource for $optimizer {
            fn into_parts(self) -> OptimizerParts {
                OptimizerParts {
                    optimizer: self.into(),
                    class: Cow::Borrowed($class),
                    weight_decay: None,
                    factory: None,
                }
            }
        }
    )*};
}

// burn's other optimizers: their class is known; a group's own weight decay is not built for them.
named_sources! {
    LionConfig => Lion, "Lion";
    AdanConfig => Adan, "Adan";
    LambConfig => Lamb, "Lamb";
    AdafactorConfig => Adafactor, "Adafactor";
    MuonConfig => Muon, "Muon";
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Block {
        ln: LayerNorm,
        fc: Linear,
    }

    #[derive(Module, Debug)]
    struct Gpt {
        wte: Embedding,
        blocks: Vec<Block>,
        head: Linear,
    }

    fn gpt() -> Gpt {
        let device = crate::Device::default();
        Gpt {
            wte: EmbeddingConfig::new(10, 4).init(&device),
            blocks: (0..2)
                .map(|_| Block {
                    ln: LayerNormConfig::new(4).init(&device),
                    fc: LinearConfig::new(4, 4).init(&device),
                })
                .collect(),
            head: LinearConfig::new(4, 10).with_bias(false).init(&device),
        }
    }

    #[test]
    fn min_gpts_rule_splits_weights_from_biases_norms_and_embeddings() {
        let model = gpt();
        let decay: Vec<_> = Params::decay(&model).paths().map(str::to_string).collect();
        let no_decay: Vec<_> = Params::no_decay(&model).paths().map(str::to_string).collect();
        assert_eq!(decay, ["blocks.0.fc.weight", "blocks.1.fc.weight", "head.weight"]);
        assert_eq!(
            no_decay,
            [
                "wte.weight",
                "blocks.0.ln.gamma",
                "blocks.0.ln.beta",
                "blocks.0.fc.bias",
                "blocks.1.ln.gamma",
                "blocks.1.ln.beta",
                "blocks.1.fc.bias",
            ]
        );
        let all = Params::of(&model);
        assert_eq!(all.len(), decay.len() + no_decay.len());
        assert!(Params::decay(&model).except(&Params::of(&model)).is_empty());
    }

    #[test]
    fn groups_are_chosen_by_sub_module_pattern_and_predicate() {
        let model = gpt();
        assert_eq!(Params::of(&model.head).paths().collect::<Vec<_>>(), ["weight"]);
        let named = Params::named(&model, r"^blocks\.1\.").unwrap();
        assert_eq!(named.len(), 4);
        assert!(Params::named(&model, "[").is_err(), "an invalid pattern is an error");
        let linear_weights = Params::matching(&model, |p| p.in_module::<Linear>() && p.name() == "weight");
        assert_eq!(linear_weights.len(), 3);
        let two_d = Params::matching(&model, |p| p.rank() >= 2);
        assert_eq!(two_d.len(), 4, "nanoGPT's rule counts the embedding");
        let union = Params::of(&model.head).union(named.clone()).union(named);
        assert_eq!(union.len(), 5, "no duplicates");
    }

    #[test]
    fn the_configured_weight_decay_is_read_as_written() {
        assert_eq!(
            configured_weight_decay(&AdamWConfig::new().with_weight_decay(0.1)),
            Some(0.1)
        );
        assert_eq!(configured_weight_decay(&AdamConfig::new()), Some(0.0));
        let adam = AdamConfig::new().with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(0.01)));
        assert_eq!(configured_weight_decay(&adam), Some(0.01));
    }
}
