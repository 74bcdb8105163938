//! `Trainer::builder().seed(s)` reaches the data: `DataModule::set_seed` gets the trainer's seed
//! before `prepare_data` and `setup` of every run, so a datamodule that seeds its dataloaders'
//! shuffle with it trains on the batches in the same order when rerun with the same seed.
//!
//! The module starts from constant weights (no draws from the device's generator), so the only
//! thing a seed can change here is the order of the batches.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader, shuffled_pair_loader, values};

/// A linear regressor trained with SGD: its final weights depend on the order of the batches.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Regressor {
    layer: Linear,
}

impl Regressor {
    fn new() -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }

    /// The bits of every weight and bias.
    fn bits(&self) -> Vec<u32> {
        let weight = values(self.layer.weight.val());
        let bias = values(self.layer.bias.as_ref().expect("a bias").val());
        weight.iter().chain(&bias).map(|v| v.to_bits()).collect()
    }
}

#[lightning_module]
impl Regressor {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        self.loss(batch)
    }

    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.05)
    }
}

/// A datamodule whose training loader is shuffled with its seed: `default_seed` unless the
/// trainer gives one. Records its calls.
struct Shuffled {
    seed: u64,
    calls: Vec<String>,
}

impl Shuffled {
    fn new(default_seed: u64) -> Self {
        Self {
            seed: default_seed,
            calls: Vec::new(),
        }
    }
}

impl DataModule<Pair> for Shuffled {
    fn set_seed(&mut self, seed: u64) {
        self.calls.push(format!("set_seed({seed})"));
        self.seed = seed;
    }

    fn prepare_data(&mut self) -> Result<(), Error> {
        self.calls.push("prepare_data".into());
        Ok(())
    }

    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        self.calls.push(format!("setup({stage})"));
        Ok(())
    }

    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(shuffled_pair_loader(64, 4, self.seed))
    }

    fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(8, 4))
    }
}

fn trainer(root: &std::path::Path, seed: Option<u64>) -> Trainer<Regressor> {
    let builder = Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .num_sanity_val_steps(0)
        .max_epochs(3);
    match seed {
        Some(seed) => builder.seed(seed),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Fits a fresh model on a fresh datamodule (default seed 0); its final weights' bits and the
/// datamodule's calls.
fn fit(seed: Option<u64>) -> (Vec<u32>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Shuffled::new(0);
    let model = trainer(dir.path(), seed).fit(Regressor::new(), &mut data).unwrap();
    (model.bits(), data.calls)
}

#[test]
fn the_same_seed_gives_the_same_batch_order_and_weights_and_another_seed_does_not() {
    let (weights_a, calls_a) = fit(Some(7));
    let (weights_b, _) = fit(Some(7));
    let (weights_c, calls_c) = fit(Some(8));
    assert_eq!(weights_a.len(), 66);
    assert_eq!(
        weights_a, weights_b,
        "same seed, same batch order: bit-identical weights"
    );
    assert_ne!(weights_a, weights_c, "another seed, another batch order: other weights");
    // The weights moved: the comparison is between trained models.
    assert_ne!(weights_a, Regressor::new().bits());
    assert_eq!(calls_a, ["set_seed(7)", "prepare_data", "setup(fit)"]);
    assert_eq!(calls_c, ["set_seed(8)", "prepare_data", "setup(fit)"]);
}

#[test]
fn without_a_trainer_seed_the_datamodule_keeps_its_own() {
    let (weights_unseeded, calls) = fit(None);
    assert_eq!(calls, ["prepare_data", "setup(fit)"], "set_seed is not called");
    // The datamodule's default seed is 0: the same order as a trainer seeded with 0.
    let (weights_zero, _) = fit(Some(0));
    assert_eq!(weights_unseeded, weights_zero);
    let (weights_one, _) = fit(Some(1));
    assert_ne!(weights_unseeded, weights_one);
}

#[test]
fn every_run_gives_the_seed_before_prepare_data_and_setup() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Shuffled::new(0);
    let mut trainer = trainer(dir.path(), Some(3));
    let mut model = trainer.fit(Regressor::new(), &mut data).unwrap();
    trainer.validate(&mut model, &mut data).unwrap();
    assert_eq!(
        data.calls,
        [
            "set_seed(3)",
            "prepare_data",
            "setup(fit)",
            "set_seed(3)",
            "prepare_data",
            "setup(validate)"
        ]
    );
}
