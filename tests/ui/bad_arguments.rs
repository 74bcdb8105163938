use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module(hparams)]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
    #[hparam(defualt = 1e-3)]
    lr: f64,
    #[hparam(default)]
    momentum: f64,
    #[hparam]
    #[hparam]
    decay: f64,
}

#[lightning_module(manual_optimisation)]
impl Model {
    #[hook(nam = "on_fit_start")]
    fn started(&mut self) {}

    #[hook(name = on_fit_end)]
    fn ended(&mut self) {}
}

fn main() {}
