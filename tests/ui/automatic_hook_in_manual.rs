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
    fn training_step(&mut self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) {
        let loss = self.layer.forward(batch).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
    }

    #[hook]
    fn optimizer_step(&mut self, _epoch: usize, _batch_idx: usize, optimizer: &mut Optimizer, closure: OptimizerClosure<Self>) {
        optimizer.step(self, closure);
    }

    #[hook]
    fn on_before_zero_grad(&mut self, _optimizer: &Optimizer) {}
}

fn main() {}
