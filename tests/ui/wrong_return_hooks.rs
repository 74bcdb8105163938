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
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<1> {
        self.layer.forward(batch).mean()
    }

    #[hook]
    fn on_train_batch_start(&mut self, _batch: &Tensor<2>, batch_idx: usize) -> u32 {
        batch_idx as u32
    }

    #[hook]
    fn configure_optimizers(&self) {}

    #[hook]
    fn train_dataloader(&self) -> Vec<Tensor<2>> {
        Vec::new()
    }

    #[hook]
    fn on_fit_end(&mut self) -> bool {
        true
    }

    #[hook]
    fn backward(&mut self, loss: Tensor<1>) -> Tensor<1> {
        loss
    }

    #[hook]
    fn on_before_batch_transfer(&mut self, batch: Tensor<2>, _dataloader_idx: usize) {
        let _ = batch;
    }
}

fn main() {}
