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
    fn on_fit_start(self) {}

    #[hook]
    fn on_fit_end() {}

    #[hook]
    fn setup(stage: Stage) {
        let _ = stage;
    }
}

fn main() {}
