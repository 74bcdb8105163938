//! Predicting more items than one would keep in memory: a `PredictionWriter` writes each batch's
//! predictions to a file as they are made, and `return_predictions(false)` keeps none of them, so
//! the process's peak memory does not grow with the number of items. The items are computed on
//! the fly from their index (the data itself takes no memory either).
//!
//! `cargo run --example predict_stream -- [ITEMS] [--keep] [--out PATH]`: predicts ITEMS items
//! (default 1 000 000) in batches of 1000 with a 16 -> 64 linear layer, writes `position,class`
//! per item to PATH (default `target/predict_stream.csv`) and prints the peak memory (Linux's
//! `VmHWM`). `--keep` also returns the predictions (`return_predictions(true)`), for the
//! contrast. `scripts/predict_memory.sh` runs 10^5 and 10^6 items both ways.

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::nn::{Linear, LinearConfig};
use burn_lightning::prelude::*;
use std::io::{BufWriter, Write};
use std::path::Path;

const FEATURES: usize = 16;
const CLASSES: usize = 64;
const BATCH: usize = 1000;

/// `len` items, each computed from its index when the loader asks for it.
#[derive(Clone, Debug)]
struct Computed {
    len: usize,
}

impl Dataset<Vec<f32>> for Computed {
    fn get(&self, index: usize) -> Result<Vec<f32>, DatasetError> {
        if index >= self.len {
            let message = format!("item {index} of {}", self.len);
            return Err(DatasetError::new(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                message,
            )));
        }
        Ok((0..FEATURES)
            .map(|j| ((index * 7919 + j * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect())
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// Rows `[n, FEATURES]`.
#[derive(Clone, Debug)]
pub struct Rows {
    pub x: Tensor<2>,
}

#[derive(Clone, Debug)]
struct RowsBatcher;

impl Batcher<Vec<f32>, Rows> for RowsBatcher {
    fn batch(&self, items: Vec<Vec<f32>>, device: &Device) -> Rows {
        let n = items.len();
        Rows {
            x: Tensor::from_data(TensorData::new(items.concat(), [n, FEATURES]), device),
        }
    }
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Scorer {
    layer: Linear,
}

#[lightning_module]
impl Scorer {
    /// The scores of every class, `[n, CLASSES]`: 256 bytes an item, which `--keep` holds.
    #[hook]
    fn predict_step(&self, batch: Rows, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.x)
    }
}

/// Writes `position,class` (the best-scoring class) per item.
struct CsvWriter {
    out: BufWriter<std::fs::File>,
    lines: usize,
}

impl WritePredictions<Scorer> for CsvWriter {
    fn write_on_batch_end(
        &mut self,
        _module: &Scorer,
        prediction: &Tensor<2>,
        batch_indices: &[usize],
        _batch: &Rows,
        _batch_idx: usize,
        _dataloader_idx: usize,
    ) -> Result<(), Error> {
        let classes = prediction
            .clone()
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| Error::user(format!("cannot read the predicted classes: {e:?}")))?;
        for (position, class) in batch_indices.iter().zip(classes) {
            writeln!(self.out, "{position},{class}").map_err(Error::user)?;
        }
        self.lines += batch_indices.len();
        // Each batch whole on disk: a write error surfaces here, not when the file is dropped.
        self.out.flush().map_err(Error::user)
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// Lines written, one per item.
    pub lines: usize,
    /// Predictions `predict` returned (batches; none without `keep`).
    pub returned: usize,
    /// The process's peak resident memory so far, in KiB (`VmHWM`; `None` off Linux).
    pub peak_kib: Option<u64>,
}

/// Predicts `items` computed items, writing them to `out`; `keep` also returns them.
pub fn run(items: usize, keep: bool, out: &Path) -> Result<Outcome, Error> {
    let device = Device::default();
    let loader = DataLoaderBuilder::new(RowsBatcher)
        .batch_size(BATCH)
        .build(Computed { len: items });
    let file = std::fs::File::create(out).map_err(|e| Error::user(format!("cannot create {}: {e}", out.display())))?;
    let writer = CsvWriter {
        out: BufWriter::new(file),
        lines: 0,
    };
    let mut trainer = Trainer::builder()
        .device(device.clone())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .default_root_dir(out.parent().unwrap_or(Path::new(".")))
        .enable_logger(false)
        .enable_report(false)
        .enable_checkpointing(false)
        .callback(PredictionWriter::new(writer, WriteInterval::Batch))
        .return_predictions(keep)
        .build()?;
    let mut model = Scorer {
        layer: LinearConfig::new(FEATURES, CLASSES).init(&device),
    };
    let returned = trainer.predict(&mut model, Loaders::predict(loader))?.len();
    let writer = trainer
        .callback::<PredictionWriter<Scorer>>()
        .and_then(|callback| callback.writer::<CsvWriter>())
        .expect("the writer given to the trainer");
    Ok(Outcome {
        lines: writer.lines,
        returned,
        peak_kib: peak_kib(),
    })
}

/// Linux's `VmHWM` (peak resident set) of this process, in KiB.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut items = 1_000_000;
    let mut keep = false;
    let mut out = std::path::PathBuf::from("target/predict_stream.csv");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => keep = true,
            "--out" => out = args.next().ok_or("--out needs a path")?.into(),
            number => {
                items = number
                    .parse()
                    .map_err(|_| format!("ITEMS must be a number, not `{number}`"))?
            }
        }
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let outcome = run(items, keep, &out)?;
    let peak = outcome.peak_kib.map_or_else(
        || "unknown (no /proc)".into(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    );
    println!(
        "items {items}, return_predictions {keep}: {} lines written to {}, {} predictions returned, peak memory (VmHWM) {peak}",
        outcome.lines,
        out.display(),
        outcome.returned,
    );
    Ok(())
}
