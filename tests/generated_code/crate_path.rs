//! `#[lightning_module(crate = path)]`: generated code reaches the facade through `path`, as
//! `#[serde(crate = "...")]` does, for crates that rename or re-export `burn_lightning`.
#![deny(warnings)]

/// The facade under another name (what a crate that re-exports it offers).
mod renamed {
    pub use burn_lightning::*;
    // Generated code goes through `<path>::__private`, which the glob re-exports; named here to
    // show what a re-exporting crate must provide.
    #[doc(hidden)]
    pub use burn_lightning::__private;
}

use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use renamed::prelude::{Device, Module, OptimizerConfig, StepContext, Tensor};

/// A module whose struct and impl name the facade with a path and with a string.
#[renamed::lightning_module(crate = renamed)]
#[derive(Module, Debug)]
pub struct Model {
    layer: Linear,
    /// Adam's learning rate.
    #[hparam(default = 1e-3)]
    lr: f64,
}

#[renamed::lightning_module(crate = "crate::crate_path::renamed")]
impl Model {
    #[renamed::hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = self.layer.forward(batch).mean();
        cx.log("train_loss", &loss);
        loss
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().init(), self.lr)
    }
}

#[test]
fn a_renamed_facade_reaches_every_generated_path() {
    fn fits<M: renamed::TrainingStep + renamed::ConfigureOptimizers>() {}
    fits::<Model>();
    let device = Device::default();
    let model = Model {
        layer: LinearConfig::new(4, 1).init(&device),
        lr: 0.5,
    };
    assert_eq!(model.hparams(), ModelHparams::new().with_lr(0.5));
    // The serde derive reaches serde through `renamed::__private::serde`.
    assert_eq!(serde_json::to_string(&model.hparams()).unwrap(), r#"{"lr":0.5}"#);
    let defaults: ModelHparams = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, ModelHparams::new());
    assert!(serde_json::from_str::<ModelHparams>(r#"{"lr":"fast"}"#).is_err());
}
