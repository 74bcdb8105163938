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
    fn on_sanity_check_start(&mut self) {}

    #[hook(name = "on_exception")]
    fn failed(&mut self, _error: &Error) {}
}

fn main() {}
