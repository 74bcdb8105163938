//! Hooks that return `Result` and use `?`: with a custom error (thiserror), with the runtime's
//! own `Error` (not wrapped twice), and with an alias that hides the error type.
#![deny(warnings)]

use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn_lightning::LightningModule;
use burn_lightning::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("batch {0} is empty")]
    EmptyBatch(usize),
    #[error("no callbacks today")]
    NoCallbacks,
}

fn check_batch(batch: &Tensor<2>, batch_idx: usize) -> Result<(), DataError> {
    if batch.dims()[0] == 0 {
        Err(DataError::EmptyBatch(batch_idx))
    } else {
        Ok(())
    }
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
    #[hparam(default = 1e-3)]
    lr: f64,
}

#[lightning_module]
impl Model {
    /// A custom error type, through `?`.
    #[hook]
    fn training_step(&self, batch: Tensor<2>, batch_idx: usize, cx: &mut StepContext) -> Result<Tensor<1>, DataError> {
        check_batch(&batch, batch_idx)?;
        let loss = self.layer.forward(batch).mean();
        cx.log("train_loss", &loss);
        Ok(loss)
    }

    /// The runtime's own error.
    #[hook]
    fn validation_step(
        &self,
        batch: Tensor<2>,
        batch_idx: usize,
        cx: &mut StepContext,
    ) -> Result<Tensor<1>, burn_lightning::Error> {
        check_batch(&batch, batch_idx).map_err(burn_lightning::Error::user)?;
        let loss = self.layer.forward(batch).mean();
        cx.log("val_loss", &loss);
        Ok(loss)
    }

    /// An alias whose error type is hidden.
    #[hook]
    fn predict_step(&self, batch: Tensor<2>, _batch_idx: usize) -> std::io::Result<Tensor<2>> {
        Ok(self.layer.forward(batch))
    }

    #[hook]
    fn configure_optimizers(&self) -> Result<OptimizerConfig, Error> {
        Ok(OptimizerConfig::new(AdamConfig::new().init(), self.lr))
    }

    #[hook]
    fn configure_callbacks(&self) -> Result<Callbacks<Self>, DataError> {
        Err(DataError::NoCallbacks)
    }

    #[hook]
    fn on_fit_start(&mut self) -> Result<(), Error> {
        Ok(())
    }

    #[hook]
    fn on_before_batch_transfer(&mut self, batch: Tensor<2>, _dataloader_idx: usize) -> Result<Tensor<2>, DataError> {
        Ok(batch)
    }

    /// Generic over the batch type (instantiated at each stage's), with the context, failing.
    #[hook]
    fn on_after_batch_transfer<B: Clone + Send>(
        &mut self,
        batch: B,
        dataloader_idx: usize,
        cx: &mut HookContext,
    ) -> Result<B, DataError> {
        let _ = cx.sanity_checking();
        match dataloader_idx {
            usize::MAX => Err(DataError::NoCallbacks),
            _ => Ok(batch),
        }
    }

    #[hook]
    fn on_train_batch_start(&mut self, _batch: &Tensor<2>, batch_idx: usize) -> Result<BatchControl, DataError> {
        Ok(if batch_idx > 10 {
            BatchControl::StopEpoch
        } else {
            BatchControl::Continue
        })
    }
}

/// The associated types are the `Ok` types.
fn outputs<
    M: LightningModule<Batch = Tensor<2>, ValidationOutput = Tensor<1>, Prediction = Tensor<2>, TrainExtra = ()>,
>() {
}

#[test]
fn hooks_returning_results_keep_their_error_types() {
    outputs::<Model>();
    let device = Device::default();
    let mut model = Model {
        layer: LinearConfig::new(4, 1).init(&device),
        lr: 1e-3,
    };
    // The error keeps its type as the source of `Error::User`.
    match LightningModule::configure_callbacks(&mut model) {
        Err(Error::User(source)) => assert!(matches!(
            source.downcast_ref::<DataError>(),
            Some(DataError::NoCallbacks)
        )),
        Err(other) => panic!("expected Error::User, got {other}"),
        Ok(_) => panic!("expected an error"),
    }
}
