//! `predict_step` takes images without labels, but the datamodule's predict loader yields
//! labelled pairs (it implements `DataModule<Labelled>`, one type for every stage).
use burn::nn::Linear;
use burn_lightning::prelude::*;

#[derive(Clone, Debug)]
pub struct Labelled {
    pub images: Tensor<2>,
    pub labels: Tensor<1, Int>,
}

#[derive(Clone, Debug)]
pub struct Images {
    pub images: Tensor<2>,
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
impl Model {
    #[hook]
    fn training_step(&self, batch: Labelled, _batch_idx: usize) -> Tensor<1> {
        let _ = batch.labels;
        self.layer.forward(batch.images).mean()
    }

    #[hook]
    fn predict_step(&self, batch: Images, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.images)
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(burn::optim::AdamConfig::new(), 1e-3)
    }
}

pub struct Data;

impl DataModule<Labelled> for Data {}

fn predict(mut trainer: Trainer<Model>, mut model: Model) {
    let _ = trainer.predict(&mut model, Data);
}

fn main() {}
