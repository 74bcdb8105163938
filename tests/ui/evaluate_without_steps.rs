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
}

fn evaluate(mut trainer: Trainer<Model>, mut model: Model) {
    let _ = trainer.validate(&mut model, ());
    let _ = trainer.test(&mut model, ());
    let _ = trainer.predict(&mut model, ());
}

fn main() {}
