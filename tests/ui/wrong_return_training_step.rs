use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
impl Model {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Vec<f32> {
        let _ = self.layer.forward(batch);
        Vec::new()
    }
}

fn main() {}
