//! [`grad_norm`]: Lightning's `grad_norm` utility, the norms of a module's gradients (logged by
//! the `GradientNormMonitor` callback, read by `detect_anomaly`).

use super::Gradients;
use crate::{Error, Tensor};
use burn::module::{Module, ModuleVisitor, Param};
use std::collections::BTreeMap;

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
    }

    #[test]
    fn python_prints_floats_so() {
        assert_eq!(python_float(2.0), "2.0");
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(f64::INFINITY), "inf");
    }
}
