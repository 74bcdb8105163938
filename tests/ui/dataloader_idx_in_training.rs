use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
impl Model {
    // Lightning passes `dataloader_idx` to the evaluation and predict steps only.
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize, dataloader_idx: usize) -> Tensor<1> {
        let _ = dataloader_idx;
        self.layer.forward(batch).mean()
    }

    #[hook]
    fn on_train_batch_start(&mut self, _batch: &Tensor<2>, _batch_idx: usize, _dataloader_idx: usize) {}

    // Where it is passed, it is a `usize`.
    #[hook]
    fn validation_step(&self, batch: Tensor<2>, _batch_idx: usize, _dataloader_idx: u8, cx: &mut StepContext) {
        cx.log("val_loss", self.layer.forward(batch).mean());
    }
}

fn main() {}
