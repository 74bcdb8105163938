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
    async fn on_fit_start(&mut self) {}

    #[hook]
    fn setup<S: Into<Stage>>(&mut self, stage: S) {
        let _ = stage;
    }

    #[hook]
    fn predict_step(&self, batch: Tensor<2>, _batch_idx: usize) -> impl Clone {
        self.layer.forward(batch)
    }

    #[hook]
    #[hook]
    fn on_fit_end(&mut self) {}
}

fn main() {}
