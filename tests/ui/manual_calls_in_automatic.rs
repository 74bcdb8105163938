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
    fn training_step(&mut self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        step_by_hand(self, batch, cx)
    }
}

// Outside the impl block the macro cannot see the calls: the trait bound reports them.
fn step_by_hand(model: &mut Model, batch: Tensor<2>, cx: &mut StepContext) -> Tensor<1> {
    let loss = model.layer.forward(batch).mean();
    let grads = cx.manual_backward(model, loss.clone());
    cx.optimizer_step(model, grads);
    loss
}

fn main() {}
