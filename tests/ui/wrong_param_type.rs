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
    fn training_step(&self, batch: Tensor<2>, batch_idx: u32) -> Tensor<1> {
        let _ = batch_idx;
        self.layer.forward(batch).mean()
    }

    #[hook]
    fn on_train_batch_end(&mut self, _outputs: &StepOutput, _batch: &Tensor<2>, _batch_idx: usize) {}
}

fn main() {}
