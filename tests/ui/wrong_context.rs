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
    fn on_fit_start(&mut self, cx: &mut StepContext) {
        let _ = cx;
    }

    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize, _cx: &mut EpochContext) -> Tensor<1> {
        self.layer.forward(batch).mean()
    }
}

fn main() {}
