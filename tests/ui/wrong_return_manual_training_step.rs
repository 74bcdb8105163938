use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl Model {
    #[hook]
    fn training_step(&mut self, batch: Tensor<2>, _batch_idx: usize) -> f32 {
        self.layer.forward(batch).mean().into_scalar()
    }
}

fn main() {}
