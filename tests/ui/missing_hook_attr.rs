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

    fn configure_optimizers(&self) -> OptimizerConfig {
        unimplemented!()
    }

    // A callback-only name is not a module hook: no error for it.
    fn on_sanity_check_start(&self) {}
}

fn main() {}
