use burn::nn::Linear;
use burn_lightning::prelude::*;

/// A learning-rate schedule, without serde's derives.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub warmup: usize,
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
    #[hparam(default = 1e-3)]
    lr: f64,
    #[hparam]
    schedule: Schedule,
}

fn main() {}
