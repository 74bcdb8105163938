//! `PredictionWriter` (Lightning's `BasePredictionWriter`) and `return_predictions(false)`: what
//! each write interval receives (predictions, the positions of the batch's items, the batch, its
//! index and dataloader), what `predict` keeps and returns, and the errors of a writer that lacks
//! the method its interval needs.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn_lightning::prelude::*;
use common::{Pair, pair_index, pair_loader, shuffled_pair_loader};
use std::sync::{Arc, Mutex};

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
}

#[lightning_module]
impl Net {
    /// The first input of each row: it tells which dataset item the row was (`pair_index`).
    #[hook]
    fn predict_step(&self, batch: Pair, _batch_idx: usize) -> Vec<f32> {
        let [n, _] = batch.x.dims();
        batch
            .x
            .slice([0..n, 0..1])
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 inputs")
    }
}

fn net() -> Net {
    Net {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    }
}

/// One batch write: `(dataloader_idx, batch_idx, batch_indices, the dataset items the batch
/// held)`.
type BatchWrite = (usize, usize, Vec<usize>, Vec<usize>);
/// The epoch write: the predictions and the positions, per dataloader and batch.
type EpochWrite = (Vec<Vec<Vec<f32>>>, Vec<Vec<Vec<usize>>>);

/// What a writer was given.
#[derive(Clone, Default)]
struct Written {
    batches: Arc<Mutex<Vec<BatchWrite>>>,
    epoch: Arc<Mutex<Option<EpochWrite>>>,
}

fn items(prediction: &[f32]) -> Vec<usize> {
    prediction.iter().map(|&first| pair_index(first)).collect()
}

impl WritePredictions<Net> for Written {
    fn write_on_batch_end(
        &mut self,
        _module: &Net,
        prediction: &Vec<f32>,
        batch_indices: &[usize],
        batch: &Pair,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<(), Error> {
        assert_eq!(batch.x.dims()[0], prediction.len(), "the batch is the one predicted");
        self.batches
            .lock()
            .unwrap()
            .push((dataloader_idx, batch_idx, batch_indices.to_vec(), items(prediction)));
        Ok(())
    }

    fn write_on_epoch_end(
        &mut self,
        _module: &Net,
        predictions: &[Vec<Vec<f32>>],
        batch_indices: &[Vec<Vec<usize>>],
    ) -> Result<(), Error> {
        *self.epoch.lock().unwrap() = Some((predictions.to_vec(), batch_indices.to_vec()));
        Ok(())
    }
}

fn trainer(dir: &std::path::Path, writer: PredictionWriter<Net>, return_predictions: bool) -> Trainer<Net> {
    Trainer::builder()
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .callback(writer)
        .return_predictions(return_predictions)
        .build()
        .unwrap()
}

/// 5 items in batches of 2, then 3 items in batches of 2.
fn two_loaders() -> Loaders<Pair> {
    Loaders::predict([pair_loader(5, 2), pair_loader(3, 2)])
}

#[test]
fn a_batch_writer_gets_each_batch_with_its_positions_and_predict_keeps_nothing() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let written = Written::default();
    let writer = PredictionWriter::new(written.clone(), WriteInterval::Batch);
    let mut trainer = trainer(dir.path(), writer, false);
    let predictions = trainer.predict(&mut net(), two_loaders())?;
    assert!(predictions.is_empty(), "return_predictions(false) returns nothing");
    let batches = written.batches.lock().unwrap().clone();
    let expected = [
        (0, 0, vec![0, 1]),
        (0, 1, vec![2, 3]),
        (0, 2, vec![4]),
        (1, 0, vec![0, 1]),
        (1, 1, vec![2]),
    ];
    let got: Vec<(usize, usize, Vec<usize>)> = batches.iter().map(|(d, b, i, _)| (*d, *b, i.clone())).collect();
    assert_eq!(got, expected);
    // Unshuffled, the positions are the dataset's indices.
    for (_, _, indices, items) in &batches {
        assert_eq!(indices, items);
    }
    assert!(
        written.epoch.lock().unwrap().is_none(),
        "a batch writer writes no epoch"
    );
    Ok(())
}

#[test]
fn an_epoch_writer_gets_every_prediction_per_dataloader_even_without_return_predictions() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let written = Written::default();
    let writer = PredictionWriter::new(written.clone(), WriteInterval::Epoch);
    let mut trainer = trainer(dir.path(), writer, false);
    let predictions = trainer.predict(&mut net(), two_loaders())?;
    assert!(predictions.is_empty(), "kept for the writer, not returned");
    assert!(
        written.batches.lock().unwrap().is_empty(),
        "an epoch writer writes no batch"
    );
    let (epoch_predictions, batch_indices) = written.epoch.lock().unwrap().clone().expect("the epoch was written");
    assert_eq!(
        batch_indices,
        [vec![vec![0, 1], vec![2, 3], vec![4]], vec![vec![0, 1], vec![2]]]
    );
    let items: Vec<Vec<Vec<usize>>> = epoch_predictions
        .iter()
        .map(|loader| loader.iter().map(|p| items(p)).collect())
        .collect();
    assert_eq!(items, batch_indices, "each prediction beside its batch's positions");
    Ok(())
}

#[test]
fn batch_and_epoch_writes_both_and_predict_returns_the_predictions_by_default() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let written = Written::default();
    let writer = PredictionWriter::new(written.clone(), WriteInterval::BatchAndEpoch);
    let mut trainer = trainer(dir.path(), writer, true);
    let predictions = trainer.predict(&mut net(), two_loaders())?;
    assert_eq!(predictions.len(), 5, "every batch of both dataloaders, in order");
    assert_eq!(written.batches.lock().unwrap().len(), 5);
    let (epoch_predictions, _) = written.epoch.lock().unwrap().clone().expect("the epoch was written");
    assert_eq!(epoch_predictions.concat(), predictions);
    // The writer can be read back from the trainer.
    let callback = trainer
        .callback::<PredictionWriter<Net>>()
        .expect("the writer is a callback");
    assert_eq!(callback.interval(), WriteInterval::BatchAndEpoch);
    assert!(callback.writer::<Written>().is_some());
    Ok(())
}

#[test]
fn under_shuffling_the_positions_are_the_draw_order_not_the_dataset_indices() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let written = Written::default();
    let writer = PredictionWriter::new(written.clone(), WriteInterval::Batch);
    let mut trainer = trainer(dir.path(), writer, false);
    trainer.predict(&mut net(), Loaders::predict(shuffled_pair_loader(12, 4, 7)))?;
    let batches = written.batches.lock().unwrap().clone();
    let positions: Vec<usize> = batches.iter().flat_map(|(_, _, i, _)| i.clone()).collect();
    let items: Vec<usize> = batches.iter().flat_map(|(_, _, _, items)| items.clone()).collect();
    assert_eq!(positions, (0..12).collect::<Vec<_>>());
    let mut sorted = items.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..12).collect::<Vec<_>>(), "every item once");
    assert_ne!(items, positions, "the loader shuffled: position k is not item k");
    Ok(())
}

#[test]
fn limit_predict_batches_bounds_what_is_written() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let written = Written::default();
    let writer = PredictionWriter::new(written.clone(), WriteInterval::Batch);
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .limit_predict_batches(2)
        .callback(writer)
        .build()?;
    let predictions = trainer.predict(&mut net(), two_loaders())?;
    assert_eq!(predictions.len(), 4, "two batches of each dataloader");
    let got: Vec<(usize, Vec<usize>)> = written
        .batches
        .lock()
        .unwrap()
        .iter()
        .map(|(d, _, i, _)| (*d, i.clone()))
        .collect();
    assert_eq!(got, [(0, vec![0, 1]), (0, vec![2, 3]), (1, vec![0, 1]), (1, vec![2])]);
    Ok(())
}

/// Writes batches only.
struct BatchesOnly;

impl WritePredictions<Net> for BatchesOnly {
    fn write_on_batch_end(
        &mut self,
        _: &Net,
        _: &Vec<f32>,
        _: &[usize],
        _: &Pair,
        _: usize,
        _: usize,
    ) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn a_writer_without_the_method_its_interval_needs_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = PredictionWriter::new(BatchesOnly, WriteInterval::Epoch);
    let mut trainer = trainer(dir.path(), writer, false);
    let error = trainer.predict(&mut net(), two_loaders()).unwrap_err().to_string();
    assert!(error.contains("write_on_epoch_end"), "{error}");
    assert!(error.contains("WriteInterval::Batch"), "{error}");
}

#[test]
fn write_intervals_have_lightnings_names() {
    let parsed: Vec<WriteInterval> = ["batch", "epoch", "batch_and_epoch"]
        .iter()
        .map(|name| name.parse().unwrap())
        .collect();
    assert_eq!(
        parsed,
        [WriteInterval::Batch, WriteInterval::Epoch, WriteInterval::BatchAndEpoch]
    );
    let error = "epochs".parse::<WriteInterval>().unwrap_err().to_string();
    assert!(error.contains("`batch`, `epoch` or `batch_and_epoch`"), "{error}");
}

// `examples/predict_stream.rs`, whose `main` is not called here.
#[allow(dead_code)]
#[path = "../examples/predict_stream.rs"]
mod stream;

#[test]
fn the_streaming_example_writes_a_line_per_item_and_returns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("predictions.csv");
    let outcome = stream::run(2500, false, &out).unwrap();
    assert_eq!((outcome.lines, outcome.returned), (2500, 0));
    let text = std::fs::read_to_string(&out).unwrap();
    let positions: Vec<usize> = text
        .lines()
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(positions, (0..2500).collect::<Vec<_>>(), "every item once, in order");
    let kept = stream::run(2500, true, &dir.path().join("kept.csv")).unwrap();
    assert_eq!(
        kept.returned, 3,
        "with return_predictions, one prediction per batch of 1000"
    );
}
