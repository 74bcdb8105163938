use burn::nn::Linear;
use burn_lightning::prelude::*;

#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
impl Model {
    #[hook]
    fn on_fit_start(&mut self) {}
}

fn main() {}
