use burn::nn::Linear;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
}

/// An alias that hides its error type, which is not a `std::error::Error`.
mod checked {
    pub type Result<T> = std::result::Result<T, String>;
}

#[lightning_module]
impl Model {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Result<Tensor<1>, String> {
        if batch.dims()[0] == 0 {
            return Err("empty batch".to_string());
        }
        Ok(self.layer.forward(batch).mean())
    }

    #[hook]
    fn on_fit_start(&mut self) -> checked::Result<()> {
        Ok(())
    }

    #[hook]
    fn train_dataloader(&self) -> Result<Vec<Tensor<2>>, std::io::Error> {
        Ok(Vec::new())
    }
}

fn main() {}
