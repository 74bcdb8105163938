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
    fn training_step(&mut self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) {
        let loss = self.layer.forward(batch).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
    }
}

fn main() {}
