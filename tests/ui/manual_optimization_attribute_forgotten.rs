// A GAN's manual `training_step` ported from Lightning without `automatic_optimization = False`:
// one error, saying to add the attribute, instead of one per manual call.
use burn::nn::Linear;
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Gan {
    generator: Linear,
    discriminator: Linear,
}

#[lightning_module]
impl Gan {
    #[hook]
    fn training_step(&mut self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) {
        let (opt_g, opt_d) = self.optimizers();

        cx.toggle_optimizer(opt_g);
        let g_loss = self.discriminator.forward(self.generator.forward(batch.clone())).mean();
        let grads = cx.manual_backward(self, g_loss);
        opt_g.step(cx, self, grads);
        cx.untoggle_optimizer(opt_g);

        cx.toggle_optimizer(opt_d);
        let d_loss = self.discriminator.forward(batch).mean();
        let grads = cx.manual_backward(self, d_loss);
        opt_d.step(cx, self, grads);
        cx.untoggle_optimizer(opt_d);
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
