//! Monitors of the optimization: [`LearningRateMonitor`] (Lightning's callback of that name),
//! [`grad_norm`] (Lightning's `grad_norm` utility) and [`GradientNormMonitor`], the callback
//! behind the `track_grad_norm` flag of Lightning 1.x, which logs it.

use crate::hooks::{Callback, LightningModule};
use crate::optim::{Gradients, Interval, Optimizer};
use crate::{EpochContext, Error, StepContext, Tensor};
use burn::module::{Module, ModuleVisitor, Param};
use std::collections::BTreeMap;

/// Logs the learning rate of every optimizer (Lightning's `LearningRateMonitor`), under
/// `lr-Optimizer` (Lightning's `lr-{optimizer class}`; burn's optimizers are type-erased).
///
/// As in Lightning, values go straight to the loggers at the current step and into
/// `callback_metrics`: with the default interval, the rates of step-wise schedulers at the
/// start of every training batch that logs (every `log_every_n_steps`), those of epoch-wise
/// schedulers at the start of every epoch, and those of optimizers without a scheduler at both.
/// Reading a learning rate does not touch the device. A run without a logger is an error at
/// `on_train_start`, as in Lightning.
#[derive(Clone, Debug, Default)]
pub struct LearningRateMonitor {
    logging_interval: Option<Interval>,
}

impl LearningRateMonitor {
    /// Logs at the interval of each optimizer's scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Logs every optimizer's rate at this interval only (Lightning's `logging_interval`):
    /// every logging step or every epoch, whatever its scheduler's interval.
    pub fn logging_interval(mut self, interval: Interval) -> Self {
        self.logging_interval = Some(interval);
        self
    }

    /// The rates due at `at` (Lightning's `_extract_stats`): with an explicit logging
    /// interval, every optimizer's; else those whose scheduler steps at `at`, and those
    /// without a scheduler.
    fn due(&self, rates: &[crate::optim::LearningRate], at: Interval) -> BTreeMap<String, f64> {
        rates
            .iter()
            .filter(|rate| self.logging_interval.is_some() || rate.interval.is_none_or(|i| i == at))
            .map(|rate| (rate.name.clone(), rate.lr))
            .collect()
    }
}

impl<M: LightningModule> Callback<M> for LearningRateMonitor {
    fn on_train_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if !cx.has_logger() {
            cx.fail(Error::config(
                "logger",
                "`LearningRateMonitor` needs a logger to write to: keep the default logger or add one with \
                 `.logger(...)`, or remove the callback",
            ));
        }
    }

    fn on_train_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if self.logging_interval == Some(Interval::Epoch) || !cx.logs_this_step() {
            return;
        }
        let due = self.due(cx.learning_rates(), Interval::Step);
        cx.send_to_loggers(due);
    }

    fn on_train_epoch_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if self.logging_interval == Some(Interval::Step) {
            return;
        }
        let due = self.due(cx.learning_rates(), Interval::Epoch);
        cx.send_to_loggers(due);
    }
}

/// The `norm_type`-norm of the gradient of every parameter of `module` that has one, under
/// `grad_{norm_type}_norm/{parameter path}`, and of all of them together under
/// `grad_{norm_type}_norm_total` (Lightning's `grad_norm`, with its key names: `grad_2.0_norm/l1.weight`).
/// `f64::INFINITY` is the largest absolute value. The norms stay one-element tensors on the
/// device, so logging them (`cx.log_dict(...)` in `on_before_optimizer_step`) reads them only
/// when the step's values are written.
///
/// A `norm_type` that is not positive is an error, as in Lightning.
pub fn grad_norm<M: Module>(
    module: &M,
    grads: &Gradients,
    norm_type: f64,
) -> Result<BTreeMap<String, Tensor<1>>, Error> {
    if norm_type.is_nan() || norm_type <= 0.0 {
        return Err(Error::Config {
            flag: "norm_type",
            message: format!("must be a positive number or infinity, got {norm_type}"),
        });
    }
    let mut visitor = ParamNorms {
        grads,
        norm_type,
        path: Vec::new(),
        norms: Vec::new(),
    };
    module.visit(&mut visitor);
    let label = python_float(norm_type);
    let total = combine(visitor.norms.iter().map(|(_, n)| n.clone()), norm_type);
    let mut out: BTreeMap<String, Tensor<1>> = visitor
        .norms
        .into_iter()
        .map(|(path, norm)| (format!("grad_{label}_norm/{path}"), norm))
        .collect();
    if let Some(total) = total {
        out.insert(format!("grad_{label}_norm_total"), total);
    }
    Ok(out)
}

/// The norm of the vector of `norms` (what the total of per-parameter norms is).
fn combine(norms: impl Iterator<Item = Tensor<1>>, norm_type: f64) -> Option<Tensor<1>> {
    let norms: Vec<Tensor<1>> = norms.collect();
    if norms.is_empty() {
        return None;
    }
    let all = Tensor::cat(norms, 0);
    Some(vector_norm(all, norm_type))
}

/// The `p`-norm of a one-dimensional tensor, as a one-element tensor.
fn vector_norm(values: Tensor<1>, p: f64) -> Tensor<1> {
    let abs = values.abs();
    if p.is_infinite() {
        abs.max()
    } else if p == 1.0 {
        abs.sum()
    } else if p == 2.0 {
        abs.powi_scalar(2).sum().sqrt()
    } else {
        abs.powf_scalar(p).sum().powf_scalar(1.0 / p)
    }
}

/// How Python prints a float (`2.0`, `0.5`, `inf`): Lightning's keys hold `float(norm_type)`.
fn python_float(value: f64) -> String {
    if value.is_infinite() {
        "inf".to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

struct ParamNorms<'a> {
    grads: &'a Gradients,
    norm_type: f64,
    /// The names entered, down to the parameter's own (`l1`, `weight`).
    path: Vec<String>,
    norms: Vec<(String, Tensor<1>)>,
}

impl ModuleVisitor for ParamNorms<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let flat: Tensor<1> = grad.flatten(0, D - 1);
            self.norms
                .push((self.path.join("."), vector_norm(flat, self.norm_type)));
        }
    }
}

/// Logs [`grad_norm`] of the module's gradients in `on_before_optimizer_step`, on the steps
/// whose values reach the loggers (every `log_every_n_steps`) and only then: other steps
/// compute nothing. Added by `Trainer::builder().track_grad_norm(p)` (the flag of Lightning
/// 1.x, which logged the same keys), or as a callback.
#[derive(Clone, Debug)]
pub struct GradientNormMonitor {
    norm_type: f64,
}

impl GradientNormMonitor {
    /// Logs the `norm_type`-norms (2.0 for the Euclidean norm, `f64::INFINITY` for the largest
    /// absolute value). A `norm_type` that is not positive is an error when the trainer is built.
    pub fn new(norm_type: f64) -> Self {
        Self { norm_type }
    }

    pub(crate) fn check(norm_type: f64) -> Result<(), Error> {
        if norm_type.is_nan() || norm_type <= 0.0 {
            return Err(Error::config(
                "track_grad_norm",
                format!(
                    "{norm_type} is not a norm: use a positive number (2.0 for the Euclidean norm) or f64::INFINITY"
                ),
            ));
        }
        Ok(())
    }
}

impl<M: LightningModule> Callback<M> for GradientNormMonitor {
    fn on_before_optimizer_step(
        &mut self,
        module: &mut M,
        _optimizer: &Optimizer,
        grads: &Gradients,
        cx: &mut StepContext<'_>,
    ) {
        if !cx.logs_this_step() || grads.is_empty() {
            return;
        }
        match grad_norm(module, grads, self.norm_type) {
            Ok(norms) => cx.log_dict(norms),
            Err(e) => cx.fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    fn layer_and_grads() -> (Linear, Gradients) {
        let device = crate::Device::default().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5, 2.0, 1.0], [2, 3]), &device);
        let loss = layer.forward(x).powi_scalar(2).sum();
        let grads = Gradients::from_loss(&loss, &layer);
        (layer, grads)
    }

    fn values(tensor: Tensor<2>) -> Vec<f64> {
        tensor.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
    }

    fn scalar(tensor: &Tensor<1>) -> f64 {
        tensor.clone().into_scalar::<f64>()
    }

    #[test]
    fn grad_norm_has_lightnings_keys_and_torchs_norms() {
        let (layer, grads) = layer_and_grads();
        let weight = values(grads.get::<2>(layer.weight.id).unwrap());
        let bias = grads
            .get::<1>(layer.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        let p_norm = |v: &[f64], p: f64| v.iter().map(|x| x.abs().powf(p)).sum::<f64>().powf(1.0 / p);

        for p in [1.0, 2.0, 3.0] {
            let norms = grad_norm(&layer, &grads, p).unwrap();
            let label = python_float(p);
            let keys: Vec<&String> = norms.keys().collect();
            assert_eq!(
                keys,
                [
                    &format!("grad_{label}_norm/bias"),
                    &format!("grad_{label}_norm/weight"),
                    &format!("grad_{label}_norm_total")
                ]
            );
            let (w, b) = (p_norm(&weight, p), p_norm(&bias, p));
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
            assert!(close(scalar(&norms[&format!("grad_{label}_norm/weight")]), w));
            assert!(close(scalar(&norms[&format!("grad_{label}_norm/bias")]), b));
            // Lightning: the norm of the vector of per-parameter norms.
            assert!(close(
                scalar(&norms[&format!("grad_{label}_norm_total")]),
                p_norm(&[w, b], p)
            ));
        }

        let max = weight.iter().chain(&bias).fold(0.0f64, |m, x| m.max(x.abs()));
        let norms = grad_norm(&layer, &grads, f64::INFINITY).unwrap();
        assert!((scalar(&norms["grad_inf_norm_total"]) - max).abs() < 1e-5);
    }

    #[test]
    fn a_norm_type_that_is_not_positive_is_an_error() {
        let (layer, grads) = layer_and_grads();
        for p in [0.0, -2.0, f64::NAN] {
            let error = grad_norm(&layer, &grads, p).unwrap_err().to_string();
            assert!(error.contains("positive"), "{error}");
        }
        assert!(
            GradientNormMonitor::check(0.0)
                .unwrap_err()
                .to_string()
                .contains("track_grad_norm")
        );
    }

    #[test]
    fn python_prints_floats_so() {
        assert_eq!(python_float(2.0), "2.0");
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(f64::INFINITY), "inf");
    }
}
