//! Gradients as `backward` returns them, with their clipping (Lightning's `gradient_clip_val` and
//! `gradient_clip_algorithm`) and the accumulation schedule (`accumulate_grad_batches`).

use crate::{Error, Tensor};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use std::collections::BTreeMap;

/// The gradients of a module's parameters, as `backward` returns them.
#[derive(Debug)]
pub struct Gradients {
    pub(super) params: GradientsParams,
}

impl Gradients {
    /// Back-propagates `loss` and keeps the gradients of `module`'s parameters.
    pub fn from_loss<M: Module>(loss: &Tensor<1>, module: &M) -> Self {
        Self {
            params: GradientsParams::from_grads(loss.backward(), module),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            params: GradientsParams::new(),
        }
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The gradient of one parameter.
    pub fn get<const D: usize>(&self, id: ParamId) -> Option<Tensor<D>> {
        self.params.get(id)
    }

    /// burn's gradients.
    pub fn params(&self) -> &GradientsParams {
        &self.params
    }

    /// burn's gradients, to replace them (the all-reduce across processes).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn params_mut(&mut self) -> &mut GradientsParams {
        &mut self.params
    }

    /// The global L2 norm of the gradients of `module`'s parameters (reads the device).
    pub fn norm<M: Module>(&self, module: &M) -> f64 {
        self.norm_tensor(module).map_or(0.0, |norm| norm.into_scalar::<f64>())
    }

    /// The global L2 norm as a one-element tensor, left on the device; `None` without gradients.
    pub fn norm_tensor<M: Module>(&self, module: &M) -> Option<Tensor<1>> {
        let mut visitor = SquaredNorm {
            grads: &self.params,
            total: None,
        };
        module.visit(&mut visitor);
        visitor.total.map(Tensor::sqrt)
    }

    /// Clips in place, as torch's `clip_grad_norm_` (every gradient scaled by
    /// `min(1, max / (norm + 1e-6))`) or `clip_grad_value_`. The scale stays a tensor: clipping
    /// does not wait for the device.
    pub fn clip<M: Module>(&mut self, module: &M, clip: GradientClip) {
        let scale = match clip {
            GradientClip::Norm(max) => match self.norm_tensor(module) {
                Some(norm) => Some(norm.add_scalar(1e-6).recip().mul_scalar(max).clamp_max(1.0)),
                None => return,
            },
            GradientClip::Value(_) => None,
        };
        let mut visitor = ClipVisitor {
            grads: &mut self.params,
            clip,
            scale,
        };
        module.visit(&mut visitor);
    }

    /// Adds `other` to these gradients, parameter by parameter (a parameter with a gradient in
    /// only one of them keeps that one): how gradients are accumulated over several batches.
    /// The sums stay on the device.
    pub fn accumulate<M: Module>(&mut self, module: &M, other: Gradients) {
        let mut visitor = AddVisitor {
            sum: &mut self.params,
            other: other.params,
        };
        module.visit(&mut visitor);
    }

    /// These gradients moved to `device` (data-parallel training averages them on rank zero's).
    pub(crate) fn moved_to<M: Module>(self, device: &crate::Device, module: &M) -> Self {
        Self {
            params: self.params.to_device(device, module),
        }
    }

    /// Multiplies every gradient of `module`'s parameters by `factor`, on the device.
    pub fn scale<M: Module>(&mut self, module: &M, factor: f64) {
        let mut visitor = ScaleVisitor {
            grads: &mut self.params,
            factor,
        };
        module.visit(&mut visitor);
    }
}

struct AddVisitor<'a> {
    sum: &'a mut GradientsParams,
    other: GradientsParams,
}

impl ModuleVisitor for AddVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(other) = self.other.remove::<D>(param.id) {
            let sum = match self.sum.remove::<D>(param.id) {
                Some(grad) => grad + other,
                None => other,
            };
            self.sum.register::<D>(param.id, sum);
        }
    }
}

struct ScaleVisitor<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Lightning's `accumulate_grad_batches`, and its `GradientAccumulationScheduler`: how many
/// batches' gradients are summed (each loss divided by that number) before the optimizer steps,
/// from a given epoch on. Built from a number (`4`, the same for every epoch) or with
/// [`new`](Self::new) from `(epoch, factor)` pairs; epoch 0 gets 1 unless the schedule says
/// otherwise. The optimizer also steps on the last batch of every epoch, with the gradients of
/// the batches of that shorter window averaged over their actual count.
///
/// Lightning takes a schedule as a callback; here it is the value of the
/// [`accumulate_grad_batches`](crate::TrainerBuilder::accumulate_grad_batches) flag, so the two
/// cannot be set against each other.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GradientAccumulationScheduler {
    /// Epoch it starts at, and the factor from then on (signed to report negative input).
    scheduling: BTreeMap<usize, i64>,
}

impl GradientAccumulationScheduler {
    /// A schedule of `(epoch, factor)` pairs: from `epoch` on, accumulate `factor` batches.
    /// For example `[(0, 8), (4, 4), (8, 1)]`.
    pub fn new(scheduling: impl IntoIterator<Item = (usize, usize)>) -> Self {
        Self {
            scheduling: scheduling
                .into_iter()
                .map(|(epoch, factor)| (epoch, i64::try_from(factor).unwrap_or(i64::MAX)))
                .collect(),
        }
    }

    /// The number of batches accumulated in `epoch` (Lightning's
    /// `get_accumulate_grad_batches`).
    pub fn factor(&self, epoch: usize) -> usize {
        self.scheduling
            .range(..=epoch)
            .next_back()
            .map_or(1, |(_, factor)| usize::try_from(*factor).unwrap_or(1).max(1))
    }

    /// Whether any epoch accumulates more than one batch.
    pub fn accumulates(&self) -> bool {
        self.scheduling.values().any(|factor| *factor > 1)
    }

    /// The `(epoch, factor)` pairs (factors signed, as given).
    pub(crate) fn schedule(&self) -> &BTreeMap<usize, i64> {
        &self.scheduling
    }

    /// Every factor must be at least 1.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        match self.scheduling.iter().find(|(_, factor)| **factor < 1) {
            Some((epoch, factor)) => Err(Error::config(
                "accumulate_grad_batches",
                format!("{factor} batches (from epoch {epoch}) accumulates nothing; use 1 (no accumulation) or more"),
            )),
            None => Ok(()),
        }
    }
}

impl Default for GradientAccumulationScheduler {
    fn default() -> Self {
        Self::from(1usize)
    }
}

impl From<usize> for GradientAccumulationScheduler {
    fn from(factor: usize) -> Self {
        Self::new([(0, factor)])
    }
}

impl From<i32> for GradientAccumulationScheduler {
    fn from(factor: i32) -> Self {
        Self {
            scheduling: BTreeMap::from([(0, i64::from(factor))]),
        }
    }
}

/// Gradient clipping (Lightning's `gradient_clip_val` with `gradient_clip_algorithm`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum GradientClip {
    /// Scale all gradients so that their global L2 norm is at most this.
    Norm(f64),
    /// Clamp every gradient value into `[-v, v]`.
    Value(f64),
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squared = grad.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + squared,
                None => squared,
            });
        }
    }
}

struct ClipVisitor<'a> {
    grads: &'a mut GradientsParams,
    clip: GradientClip,
    /// The norm's scale, a one-element tensor.
    scale: Option<Tensor<1>>,
}

impl ModuleVisitor for ClipVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let clipped = match (self.clip, &self.scale) {
                (GradientClip::Value(v), _) => grad.clamp(-v, v),
                (GradientClip::Norm(_), Some(scale)) => grad.mul(scale.clone().reshape([1; D])),
                (GradientClip::Norm(_), None) => grad,
            };
            self.grads.register::<D>(param.id, clipped);
        }
    }
}

/// Lightning's `gradient_clip_algorithm`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ClipAlgorithm {
    #[default]
    Norm,
    Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    /// A linear layer on the autodiff device and the gradients of a loss whose gradient norm is
    /// well above 1.
    fn layer_and_grads() -> (Linear, Gradients) {
        let device = crate::Device::default().autodiff();
        let layer = LinearConfig::new(4, 3).init(&device);
        let grads = grads_of(&layer);
        (layer, grads)
    }

    fn grads_of(layer: &Linear) -> Gradients {
        let device = crate::Device::default().autodiff();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5, 2.0, 1.0, -1.0, 4.0], [2, 4]),
            &device,
        );
        let loss = layer.forward(x).powi_scalar(2).sum().mul_scalar(10.0);
        Gradients::from_loss(&loss, layer)
    }

    fn grad_values(layer: &Linear, grads: &Gradients) -> Vec<f32> {
        let weight = grads.get::<2>(layer.weight.id).expect("a weight gradient");
        let bias = grads
            .get::<1>(layer.bias.as_ref().expect("a bias").id)
            .expect("a bias gradient");
        let mut values = weight.into_data().try_to_vec::<f32>().unwrap();
        values.extend(bias.into_data().try_to_vec::<f32>().unwrap());
        values
    }

    #[test]
    fn clipping_by_norm_scales_like_torch_clip_grad_norm() {
        let (layer, grads) = layer_and_grads();
        let before = grad_values(&layer, &grads);
        let norm = before.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
        assert!(norm > 1.0, "the test needs a norm above the limit: {norm}");
        assert!((grads.norm(&layer) - norm).abs() < 1e-3 * norm);

        // torch: every gradient times min(1, max / (norm + 1e-6)).
        let mut clipped = grads;
        clipped.clip(&layer, GradientClip::Norm(0.5));
        let scale = 0.5 / (norm + 1e-6);
        for (after, before) in grad_values(&layer, &clipped).iter().zip(&before) {
            assert!(
                ((*after as f64) - (*before as f64) * scale).abs() < 1e-5,
                "{after} vs {before} * {scale}"
            );
        }
        assert!((clipped.norm(&layer) - 0.5).abs() < 1e-4);

        // Below the limit the scale is clamped to 1: nothing changes.
        let mut grads = grads_of(&layer);
        grads.clip(&layer, GradientClip::Norm(norm * 2.0));
        assert_eq!(grad_values(&layer, &grads), before);
    }

    #[test]
    fn clipping_by_value_clamps_every_gradient() {
        let (layer, mut grads) = layer_and_grads();
        let before = grad_values(&layer, &grads);
        grads.clip(&layer, GradientClip::Value(0.25));
        let after = grad_values(&layer, &grads);
        for (a, b) in after.iter().zip(&before) {
            assert_eq!(*a, b.clamp(-0.25, 0.25));
        }
    }
}
