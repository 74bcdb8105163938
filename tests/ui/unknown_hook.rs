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
    fn trainig_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<1> {
        self.layer.forward(batch).mean()
    }

    #[hook]
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.layer.forward(x)
    }

    #[hook(name = "on_train_epoch_ends")]
    fn epoch_end(&mut self) {}
}

fn main() {}
