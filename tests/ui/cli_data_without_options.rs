use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use serde::{Deserialize, Serialize};

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
impl Model {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<1> {
        self.layer.forward(batch).mean()
    }
    #[hook]
    fn validation_step(&self, _batch: Tensor<2>, _batch_idx: usize) {}
    #[hook]
    fn test_step(&self, _batch: Tensor<2>, _batch_idx: usize) {}
    #[hook]
    fn predict_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch)
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

/// Its fields are options, but it does not describe them.
#[derive(Serialize, Deserialize, Default)]
pub struct Data {
    batch_size: usize,
}

impl DataModule<Tensor<2>> for Data {}

fn main() {
    let _ = LightningCli::<Model, Data>::new(|_, device| Model {
        layer: LinearConfig::new(4, 1).init(device),
    });
}
