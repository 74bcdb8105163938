use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Debug)]
pub struct Model {
    layer: Linear,
}

#[lightning_module]
pub enum Stage2 {
    Fit,
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Tuple(Linear);

fn main() {}
