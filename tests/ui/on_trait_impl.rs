use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

trait Hooks {
    fn on_fit_start(&mut self);
}

#[lightning_module]
impl Hooks for Model {
    #[hook]
    fn on_fit_start(&mut self) {}
}

fn main() {}
