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
    fn training_step(&self, batch: Tensor<2>) -> Tensor<1> {
        self.layer.forward(batch).mean()
    }

    #[hook]
    fn on_fit_start(&mut self, _cx: &mut HookContext, _extra: usize) {}

    #[hook]
    fn setup(&mut self) {}

    #[hook]
    fn configure_optimizers(&self, _lr: f64) -> OptimizerConfig {
        unimplemented!()
    }
}

fn main() {}
