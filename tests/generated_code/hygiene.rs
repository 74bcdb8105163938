//! A module with several hooks compiles and runs without warnings even when prelude names are
//! shadowed: the code `#[lightning_module]` generates must use fully qualified paths (serde's
//! `test_gen.rs` trick).
#![deny(warnings)]

use burn::nn::LinearConfig;
use burn_lightning::prelude::*;
use hooks::Batch;
use model::{Regressor, RegressorHparams};

/// Declares unit structs named like prelude items, so that generated code that writes `Option`
/// instead of `::core::option::Option` fails to compile.
macro_rules! shadow_prelude {
    ($($name:ident)*) => {
        $(
            #[allow(dead_code)]
            struct $name;
        )*
    };
}

/// The struct, where `#[lightning_module]` generates the `RegressorHparams` struct and its impls.
/// burn's own `#[derive(Module)]` expands here too and writes `Clone`, `Option` and `Default`
/// unqualified, so those stay unshadowed in this module only.
mod model {
    use burn::nn::Linear;
    use burn_lightning::prelude::*;

    shadow_prelude! {
        Result Ok Err Some None Vec Box String ToString ToOwned Debug PartialEq Eq Send
        Sync Sized Copy Into From Iterator IntoIterator Drop Fn FnMut FnOnce AsRef
    }

    /// A small regression module.
    #[lightning_module]
    #[derive(Module, Debug)]
    pub struct Regressor {
        pub layer: Linear,
        /// Adam's learning rate.
        #[hparam(default = 1e-3)]
        pub lr: f64,
        /// How many batches an epoch trains on at most.
        #[hparam]
        pub max_batches: usize,
    }
}

/// The hooks, where `#[lightning_module]` generates the `LightningModule` implementation: every
/// prelude name is shadowed here.
mod hooks {
    use super::model::Regressor;
    use burn::optim::AdamConfig;
    use burn_lightning::prelude::*;

    shadow_prelude! {
        Result Ok Err Option Some None Vec Box String ToString ToOwned Clone Default Debug
        PartialEq Eq Send Sync Sized Copy Into From Iterator IntoIterator Drop Fn FnMut FnOnce
        AsRef
    }

    /// A regression batch.
    pub struct Batch {
        pub x: Tensor<2>,
        pub y: Tensor<2>,
    }

    impl ::core::clone::Clone for Batch {
        fn clone(&self) -> Self {
            Self {
                x: self.x.clone(),
                y: self.y.clone(),
            }
        }
    }

    #[lightning_module]
    impl Regressor {
        /// Squared error of one batch.
        #[hook]
        fn training_step(&self, batch: Batch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
            let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
            cx.log("train_loss", &loss);
            loss
        }

        #[hook]
        fn validation_step(&self, batch: Batch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
            let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
            cx.log("val_loss", &loss);
            loss
        }

        #[hook]
        fn predict_step(&self, batch: Batch, _batch_idx: usize) -> Tensor<2> {
            self.layer.forward(batch.x)
        }

        #[hook]
        fn configure_optimizers(&self) -> OptimizerConfig {
            OptimizerConfig::new(AdamConfig::new().init(), self.lr)
        }

        #[hook]
        fn on_fit_start(&mut self, cx: &mut HookContext) {
            let _ = cx.sanity_checking();
        }

        #[hook]
        fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
            cx.log("epoch_done", 1.0);
        }

        /// Stops the epoch after `max_batches` batches.
        #[hook(name = "on_train_batch_start")]
        fn limit_batches(&mut self, _batch: &Batch, batch_idx: usize) -> BatchControl {
            if batch_idx >= self.max_batches {
                BatchControl::StopEpoch
            } else {
                BatchControl::Continue
            }
        }

        #[hook]
        fn on_validation_batch_end(&mut self, outputs: &Tensor<1>, _batch: &Batch, _batch_idx: usize) {
            let _ = outputs;
        }

        /// Takes the one batch type of every stage: serves them all.
        #[hook]
        fn transfer_batch_to_device(&mut self, batch: Batch, device: &Device, _dataloader_idx: usize) -> Batch {
            Batch {
                x: batch.x.to_device(device),
                y: batch.y.to_device(device),
            }
        }

        #[hook]
        fn teardown(&mut self, _stage: Stage) {}

        /// May fail: the `Result` is unwrapped by generated code that must not name `Result`.
        #[hook]
        fn on_fit_end(&mut self) -> ::core::result::Result<(), burn_lightning::Error> {
            ::core::result::Result::Ok(())
        }
    }
}

#[test]
fn generated_code_uses_qualified_paths_only() {
    let device = Device::default();
    let model = Regressor {
        layer: LinearConfig::new(4, 1).init(&device),
        lr: 0.01,
        max_batches: 3,
    };
    assert_eq!(model.hparams(), RegressorHparams::new(3).with_lr(0.01));
    assert_eq!(RegressorHparams::new(3).lr, 1e-3);
    assert!(<Regressor as LightningModule>::OVERRIDDEN.contains(Hook::OnTrainBatchStart));
    assert!(!<Regressor as LightningModule>::OVERRIDDEN.contains(Hook::TestStep));
    let batch = Batch {
        x: Tensor::zeros([2, 4], &device),
        y: Tensor::zeros([2, 1], &device),
    };
    assert_eq!(batch.clone().x.dims(), [2, 4]);
}
