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
    fn on_fit_start(&mut self, cx: &mut HookContext) {
        cx.log("started", 1.0);
    }

    #[hook]
    fn on_validation_end(&mut self, cx: &mut HookContext) {
        cx.log_dict([("val_done", 1.0)]);
    }

    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
        cx.log_with("epoch_metric", 1.0, LogOptions::default());
    }
}

fn main() {}
