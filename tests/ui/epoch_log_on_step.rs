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
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
        cx.log_with("epoch_metric", 1.0, EpochLogOptions::new().on_step(true));
    }
}

fn main() {}
