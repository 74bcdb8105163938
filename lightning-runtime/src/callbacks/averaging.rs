//! What the weight-averaging callbacks share ([`WeightAveraging`](super::WeightAveraging) and
//! [`StochasticWeightAveraging`](super::StochasticWeightAveraging)): a copy of the module that
//! owns its buffers (torch's `deepcopy`), reading and writing a module's values by parameter id,
//! and torch's averaging rules.

use crate::Tensor;
use crate::optim::param_groups::is_buffer;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use std::any::Any;
use std::collections::HashMap;

/// Which of a module's float values to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    /// Parameters only (torch's `parameters()`).
    Parameters,
    /// Parameters and buffers, `BatchNorm`'s running statistics (torch's `parameters()` and
    /// `buffers()`).
    All,
    /// Buffers only.
    Buffers,
}

impl Which {
    fn takes(self, buffer: bool) -> bool {
        match self {
            Which::Parameters => !buffer,
            Which::All => true,
            Which::Buffers => buffer,
        }
    }
}

/// A module's float values by parameter id, without autodiff: tensor handles, not copies.
#[derive(Default)]
pub(crate) struct Values(HashMap<ParamId, Box<dyn Any + Send>>);

impl Values {
    /// The values of `module` that `which` names.
    pub(crate) fn of<M: Module>(module: &M, which: Which) -> Self {
        let mut visitor = Read {
            which,
            path: Vec::new(),
            types: Vec::new(),
            values: Values::default(),
        };
        module.visit(&mut visitor);
        visitor.values
    }

    pub(crate) fn get<const D: usize>(&self, id: ParamId) -> Option<&Tensor<D>> {
        self.0.get(&id).and_then(|value| value.downcast_ref::<Tensor<D>>())
    }

    pub(crate) fn insert<const D: usize>(&mut self, id: ParamId, value: Tensor<D>) {
        self.0.insert(id, Box::new(value.without_autodiff()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Read {
    which: Which,
    path: Vec<String>,
    types: Vec<String>,
    values: Values,
}

impl ModuleVisitor for Read {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.types.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.types.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let container = self.types.last().map_or("", String::as_str);
        let module_type = container.split_once(':').map_or(container, |(_, name)| name);
        let buffer = is_buffer(module_type, &self.path.join("."));
        if self.which.takes(buffer) {
            self.values.0.insert(param.id, Box::new(param.val().without_autodiff()));
        }
    }
}

/// `module` with the values of `values` in place of its own (by parameter id; the others kept),
/// each on the device and with the autodiff settings (gradient requirement, checkpointing) of
/// the value it replaces.
pub(crate) fn write<M: Module>(module: M, values: &Values) -> M {
    // A running statistic's pending update (from the last forward) would replace what is
    // written at the next read: it is taken in first (`valid` does, on the shared state).
    drop(module.valid());
    module.map(&mut Write { values })
}

struct Write<'a> {
    values: &'a Values,
}

impl ModuleMapper for Write<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.get::<D>(param.id) {
            Some(value) => {
                let value = value.clone();
                param.map(|old| place(&old, value))
            }
            None => param,
        }
    }
}

/// `value` where `old` is: its device, and, on an autodiff device, a new leaf with `old`'s
/// gradient requirement and checkpointing strategy (as burn's optimizer puts an updated
/// parameter back).
fn place<const D: usize>(old: &Tensor<D>, value: Tensor<D>) -> Tensor<D> {
    let device = old.device().without_autodiff();
    let value = value.without_autodiff().to_device(&device);
    if !old.is_autodiff() {
        return value;
    }
    let mut placed = value.autodiff();
    if let Some(strategy) = old.gradient_checkpointing_strategy() {
        placed = placed.with_gradient_checkpointing_strategy(strategy);
    }
    if old.is_require_grad() {
        placed = placed.require_grad();
    }
    placed
}

/// torch's averaging rules (`torch.optim.swa_utils`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rule {
    /// `get_ema_avg_fn(decay)`: `decay * average + (1 - decay) * current`.
    Ema(f64),
    /// `get_swa_avg_fn()`: `average + (current - average) / (n + 1)`, the mean of the `n + 1`
    /// models averaged.
    Mean,
}

/// `average` after torch's `AveragedModel.update_parameters` with `current`'s values (those
/// `current` holds): a copy of them when `n_averaged` is 0, else `rule` applied.
pub(crate) fn update<M: Module>(average: M, current: &Values, rule: Rule, n_averaged: usize) -> M {
    average.map(&mut Update {
        current,
        rule,
        n_averaged,
    })
}

struct Update<'a> {
    current: &'a Values,
    rule: Rule,
    n_averaged: usize,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.current.get::<D>(param.id) else {
            return param;
        };
        let current = current.clone();
        let (rule, n) = (self.rule, self.n_averaged);
        param.map(|average| {
            let current = current.to_device(&average.device());
            if n == 0 {
                return current;
            }
            match rule {
                Rule::Ema(decay) => average.mul_scalar(decay).add(current.mul_scalar(1.0 - decay)),
                Rule::Mean => {
                    let step = current.sub(average.clone()).div_scalar((n + 1) as f64);
                    average.add(step)
                }
            }
        })
    }
}

/// A copy of `module` that shares nothing that changes with it: no autodiff, and its own
/// running statistics (burn's `RunningState` is shared between clones; `valid` makes new ones).
/// torch's `deepcopy(model)`.
pub(crate) fn detached_copy<M: Module>(module: &M) -> M {
    module.valid()
}

/// Whether `module` has buffers (`BatchNorm` running statistics).
pub(crate) fn has_buffers<M: Module>(module: &M) -> bool {
    !Values::of(module, Which::Buffers).is_empty()
}

/// The values of `module` that `which` names, its running statistics up to date: burn's
/// `RunningState` keeps the last forward's update pending until the next forward, so they are
/// read from an evaluation copy, which takes it in.
pub(crate) fn current_values<M: Module>(module: &M, which: Which, buffers: bool) -> Values {
    match buffers && which != Which::Parameters {
        true => Values::of(&module.valid(), which),
        false => Values::of(module, which),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::tensor::TensorData;

    #[derive(Module, Debug)]
    struct Net {
        fc: Linear,
        bn: BatchNorm,
    }

    fn net(device: &crate::Device) -> Net {
        Net {
            fc: LinearConfig::new(2, 3).init(device),
            bn: BatchNormConfig::new(3).init(device),
        }
    }

    fn weights(net: &Net) -> Vec<f32> {
        net.fc.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_average_follows_torchs_rules_and_buffers_are_told_apart() {
        let device = crate::Device::default().autodiff();
        let model = net(&device);
        let first = weights(&model);
        assert_eq!(Values::of(&model, Which::Parameters).0.len(), 4);
        assert_eq!(
            Values::of(&model, Which::Buffers).0.len(),
            2,
            "running mean and variance"
        );
        assert!(has_buffers(&model));

        // EMA: the first update copies, the next blends with 1 - decay.
        let average = detached_copy(&model);
        let average = update(average, &Values::of(&model, Which::All), Rule::Ema(0.5), 0);
        assert_eq!(weights(&average), first);
        let moved = write(model.clone(), &{
            let shifted = model.fc.weight.val().add_scalar(2.0);
            let mut values = Values::default();
            values
                .0
                .insert(model.fc.weight.id, Box::new(shifted.without_autodiff()));
            values
        });
        assert!(
            moved.fc.weight.val().is_require_grad(),
            "a written parameter still trains"
        );
        let average = update(average, &Values::of(&moved, Which::All), Rule::Ema(0.5), 1);
        for (a, w) in weights(&average).iter().zip(&first) {
            assert!((a - (w + 1.0)).abs() < 1e-6);
        }
        // The mean of 3 models: (w, w + 2, w + 2) -> w + 4/3.
        let mean = update(detached_copy(&model), &Values::of(&model, Which::All), Rule::Mean, 0);
        let mean = update(mean, &Values::of(&moved, Which::All), Rule::Mean, 1);
        let mean = update(mean, &Values::of(&moved, Which::All), Rule::Mean, 2);
        for (a, w) in weights(&mean).iter().zip(&first) {
            assert!((a - (w + 4.0 / 3.0)).abs() < 1e-5);
        }
    }

    #[test]
    fn the_copy_does_not_share_running_statistics_with_the_model() {
        let device = crate::Device::default().autodiff();
        let model = net(&device);
        let copy = detached_copy(&model);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, -4.0, 5.0, 6.0], [3, 2]), &device);
        let _ = model.bn.forward(model.fc.forward(x));
        let after = model.valid();
        let moved: Vec<f32> = after.bn.running_mean.value().into_data().try_to_vec().unwrap();
        let kept: Vec<f32> = copy.bn.running_mean.value().into_data().try_to_vec().unwrap();
        assert!(
            moved.iter().any(|v| *v != 0.0),
            "the model's statistics moved: {moved:?}"
        );
        assert_eq!(kept, [0.0; 3], "the copy's did not");
    }
}
