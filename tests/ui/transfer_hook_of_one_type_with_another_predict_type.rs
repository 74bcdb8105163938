//! The module's `on_after_batch_transfer` takes the labelled `Labelled`, but `predict_step`
//! takes `Images`: Lightning runs the hook on the predict batches too, so it must take them.
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
    fn on_after_batch_transfer(&self, batch: Labelled, _dataloader_idx: usize) -> Labelled {
        batch
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(burn::optim::AdamConfig::new(), 1e-3)
    }
}

/// A hook generic over the batch type may be generic over nothing else.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Other {
    layer: Linear,
}

#[lightning_module]
impl Other {
    #[hook]
    fn training_step(&self, batch: Labelled, _batch_idx: usize) -> Tensor<1> {
        self.layer.forward(batch.images).mean()
    }

    #[hook]
    fn on_before_batch_transfer<B, const N: usize>(&self, batch: B, _dataloader_idx: usize) -> B {
        batch
    }
}

fn main() {}
