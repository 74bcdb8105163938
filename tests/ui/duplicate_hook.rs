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
    fn on_train_epoch_end(&mut self) {}

    #[hook(name = "on_train_epoch_end")]
    fn log_weights(&mut self) {}
}

fn main() {}
