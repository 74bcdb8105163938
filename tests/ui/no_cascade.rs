// Each mistake is reported once: the module still implements what the macros could generate, so
// its uses (here `Trainer::fit`) and its other hooks bring no follow-on errors.
use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
    #[hparam(default)]
    lr: f64,
}

#[lightning_module]
impl Model {
    #[hook]
    fn training_step(&self, batch: Tensor<2>) -> Tensor<1> {
        self.layer.forward(batch).mean()
    }

    #[hook]
    fn on_train_batch_end(&mut self, _outputs: Option<&StepOutput>, _batch: &Tensor<2>, _batch_idx: usize) {}

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(burn::optim::AdamConfig::new().init(), self.lr)
    }
}

fn fit(mut trainer: Trainer<Model>, model: Model) {
    let _ = trainer.fit(model, ());
}

fn main() {}
