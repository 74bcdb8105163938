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
    fn on_validation_epoch_end(&mut self, cx: &mut EpochContext) {
        cx.log_with("val_metric", 1.0, LogOptions::new().on_step(true));
        cx.log_dict_with([("a", 1.0), ("b", 2.0)], LogOptions::new().prog_bar(true));
    }
}

fn main() {}
