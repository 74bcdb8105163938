use burn::nn::Linear;
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl Model {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) {
        let loss = self.layer.forward(batch).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().init(), 1e-3)
    }
}

fn main() {}
