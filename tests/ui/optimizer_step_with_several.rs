use burn::nn::Linear;
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Gan {
    generator: Linear,
    discriminator: Linear,
}

#[lightning_module(manual_optimization)]
impl Gan {
    #[hook]
    fn training_step(&mut self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) {
        // The direct port of Lightning's GAN step: which optimizer steps is not said.
        let g_loss = self.discriminator.forward(self.generator.forward(batch)).mean();
        let grads = cx.manual_backward(self, g_loss);
        cx.optimizer_step(self, grads);
    }

    #[hook]
    fn configure_optimizers(&self) -> (OptimizerConfig, OptimizerConfig) {
        (
            OptimizerConfig::new(AdamConfig::new().init(), 2e-4).for_params(&self.generator),
            OptimizerConfig::new(AdamConfig::new().init(), 2e-4).for_params(&self.discriminator),
        )
    }
}

fn main() {}
