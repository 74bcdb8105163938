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
    fn configure_optimizers(&self) -> OptimizerConfig {
        unimplemented!()
    }
}

fn fit(mut trainer: Trainer<Model>, model: Model) {
    let _ = trainer.fit(model, ());
}

fn main() {}
