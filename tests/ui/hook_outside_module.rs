use burn_lightning::prelude::*;

#[hook]
fn training_step() {}

pub struct Model;

impl Model {
    #[hook]
    fn on_fit_start(&mut self) {}
}

fn main() {}
