//! The short path to data (Lightning's `TensorDataset` + `DataLoader` + `random_split`): an
//! autoencoder's data in a few lines, with [`TensorDataset`] and [`InMemoryDataModule`], on top
//! of burn's dataset and dataloader.

use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;

#[lightning_module]
#[derive(Module, Debug)]
pub struct AutoEncoder {
    encoder: Linear,
    decoder: Linear,
}

impl AutoEncoder {
    fn new() -> Self {
        let device = Device::default();
        Self {
            encoder: LinearConfig::new(16, 4).init(&device),
            decoder: LinearConfig::new(4, 16).init(&device),
        }
    }

    fn loss(&self, batch: TensorBatch) -> Tensor<1> {
        let reconstruction = self.decoder.forward(self.encoder.forward(batch.x));
        (reconstruction - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl AutoEncoder {
    #[hook]
    fn training_step(&self, batch: TensorBatch, _batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        self.loss(batch)
    }

    #[hook]
    fn validation_step(&self, batch: TensorBatch, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }

    #[hook]
    fn test_step(&self, batch: TensorBatch, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("test_loss", self.loss(batch));
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().init(), 1e-2)
    }
}

/// 512 examples of 16 values on a plane (two fixed directions): an autoencoder with a code of
/// 4 can reconstruct them.
fn points() -> Vec<f32> {
    (0..512)
        .flat_map(|i| {
            let (a, b) = ((i % 23) as f32 / 23.0 - 0.5, (i % 17) as f32 / 17.0 - 0.5);
            (0..16).map(move |j| a * ((j % 5) as f32 - 2.0) + b * ((j % 3) as f32 - 1.0))
        })
        .collect()
}

fn trainer(root: &std::path::Path, epochs: usize) -> Trainer<AutoEncoder> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .enable_report(false)
        .seed(42)
        .max_epochs(epochs)
        .build()
        .unwrap()
}

#[test]
fn an_autoencoder_trains_on_in_memory_tensors_in_a_few_lines_of_data_code() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    // The data code: a tensor, a dataset, a seeded split, a datamodule.
    let device = Device::default();
    let x = Tensor::<2>::from_data(TensorData::new(points(), [512, 16]), &device);
    let [train, val, test] = TensorDataset::inputs(x)?.random_split([0.8, 0.1, 0.1], 42)?;
    let mut data = InMemoryDataModule::new(train, val, test).batch_size(32);

    assert_eq!(data.batch_size_value(), 32);
    let mut model = AutoEncoder::new();
    let before = trainer(dir.path(), 1).test(&mut model, &mut data)?[0]
        .get("test_loss")
        .unwrap();
    let mut model = trainer(dir.path(), 30).fit(model, &mut data)?;
    let after = trainer(dir.path(), 1).test(&mut model, &mut data)?[0]
        .get("test_loss")
        .unwrap();
    assert!(after < before * 0.1, "the test loss went from {before} to {after}");
    Ok(())
}

#[test]
fn loaders_of_a_tensor_dataset_plug_into_loaders_and_a_batch_size_finder_can_change_it() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::default();
    let x = Tensor::<2>::from_data(TensorData::new(points(), [512, 16]), &device);
    let [train, val] = TensorDataset::inputs(x)?.random_split([448, 64], 1)?;
    let loaders = Loaders::fit(train.loader(64).shuffle(7).build()?, Some(val.loader(64).try_into()?));
    let model = trainer(dir.path(), 2).fit(AutoEncoder::new(), loaders)?;
    let mut data = InMemoryDataModule::new(train, None, val);
    data.set_batch_size(448);
    let mut model = model;
    trainer(dir.path(), 1).test(&mut model, &mut data)?;
    // A batch size of 0 is an error of `setup`, naming it.
    data.set_batch_size(0);
    let error = trainer(dir.path(), 1).test(&mut model, &mut data).unwrap_err();
    assert!(error.to_string().contains("`batch_size`"), "{error}");
    Ok(())
}
