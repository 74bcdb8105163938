//! MNIST from the standard IDX files (optionally gzipped): a reader that rejects malformed files
//! with an error, a batcher, and a `DataModule` with a train/validation split.
#![allow(dead_code)]

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn_lightning::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pixels per image.
pub const PIXELS: usize = 28 * 28;

/// The environment variable naming the directory of the bundled data sets (`mnist/` in it),
/// for binaries run away from the source tree they were compiled from.
pub const DATA_DIR_VARIABLE: &str = "BURN_LIGHTNING_DATA_DIR";

/// Why an IDX file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{path}` is not an IDX file of unsigned bytes: {why}")]
    Malformed { path: PathBuf, why: String },
}

/// An IDX array of unsigned bytes: its dimensions and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (`0x0000_08NN`), gzipped or not.
pub fn read_idx(path: &Path) -> Result<Idx, IdxError> {
    let raw = std::fs::read(path).map_err(|source| IdxError::Io {
        path: path.into(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| IdxError::Malformed {
                path: path.into(),
                why: format!("bad gzip data ({e})"),
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|why| IdxError::Malformed { path: path.into(), why })
}

/// Parses IDX bytes: magic `0 0 8 n` (unsigned bytes, n dimensions), n big-endian u32 sizes, data.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx, String> {
    let header = bytes.get(..4).ok_or("shorter than the 4-byte magic number")?;
    if header[0] != 0 || header[1] != 0 {
        return Err(format!("bad magic number {header:02x?} (expected 00 00 08 nn)"));
    }
    if header[2] != 0x08 {
        return Err(format!("element type 0x{:02x} is not unsigned bytes (0x08)", header[2]));
    }
    let rank = usize::from(header[3]);
    if rank == 0 {
        return Err("zero dimensions".into());
    }
    let dims_end = 4 + 4 * rank;
    let dims: Vec<usize> = bytes
        .get(4..dims_end)
        .ok_or_else(|| format!("truncated header: {rank} dimensions need {dims_end} bytes"))?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or("dimensions overflow")?;
    let data = &bytes[dims_end..];
    if data.len() != expected {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {}",
            data.len()
        ));
    }
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}

/// Images and labels of one split, checked against each other.
#[derive(Debug, Clone)]
pub struct MnistSplit {
    pub images: Arc<Vec<u8>>,
    pub labels: Arc<Vec<u8>>,
}

impl MnistSplit {
    /// Reads `<dir>/<prefix>-images-idx3-ubyte.gz` and `<dir>/<prefix>-labels-idx1-ubyte.gz`.
    pub fn read(dir: &Path, prefix: &str) -> Result<Self, IdxError> {
        let images_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        let images = read_idx(&images_path)?;
        let labels = read_idx(&labels_path)?;
        let malformed = |path: &Path, why: String| IdxError::Malformed { path: path.into(), why };
        if images.dims.len() != 3 || images.dims[1..] != [28, 28] {
            return Err(malformed(
                &images_path,
                format!("expected N x 28 x 28 images, found dimensions {:?}", images.dims),
            ));
        }
        if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
            return Err(malformed(
                &labels_path,
                format!("expected {} labels, found dimensions {:?}", images.dims[0], labels.dims),
            ));
        }
        if let Some(bad) = labels.data.iter().find(|l| **l > 9) {
            return Err(malformed(&labels_path, format!("label {bad} is not a digit")));
        }
        Ok(Self {
            images: Arc::new(images.data),
            labels: Arc::new(labels.data),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

/// A batch: normalized images `[n, 784]` and their digits `[n]`.
#[derive(Clone, Debug)]
pub struct MnistBatch {
    pub images: Tensor<2>,
    pub targets: Tensor<1, Int>,
}

/// Cross-entropy loss and accuracy of class scores `[n, 10]` against digits `[n]`.
pub fn loss_and_accuracy(logits: Tensor<2>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
    let loss = cross_entropy(logits.clone(), targets.clone());
    let accuracy = logits.argmax(1).squeeze_dim::<1>(1).equal(targets).float().mean();
    (loss, accuracy)
}

/// The cross-entropy loss of class scores `[n, 10]` against their digits.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}

/// Prints every hook call, in order, with `RUST_LOG=burn_lightning::hooks=trace`.
pub fn trace_hooks_from_env() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_writer(std::io::stderr)
        .init();
}

/// Builds batches from item indices into a split's buffers.
#[derive(Clone, Debug)]
pub struct MnistBatcher {
    split: MnistSplit,
}

impl Batcher<usize, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<usize>, device: &Device) -> MnistBatch {
        let n = items.len();
        let mut pixels = Vec::with_capacity(n * PIXELS);
        let mut targets = Vec::with_capacity(n);
        for i in items {
            let image = &self.split.images[i * PIXELS..(i + 1) * PIXELS];
            // The usual MNIST normalization (mean 0.1307, std 0.3081).
            pixels.extend(image.iter().map(|&p| (f32::from(p) / 255.0 - 0.1307) / 0.3081));
            targets.push(i64::from(self.split.labels[i]));
        }
        MnistBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, PIXELS]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}

/// A dataloader over the items `indices` of `split`, shuffled with `shuffle` as seed if given.
pub fn loader(split: &MnistSplit, indices: Vec<usize>, batch_size: usize, shuffle: Option<u64>) -> Loader<MnistBatch> {
    let builder = DataLoaderBuilder::new(MnistBatcher { split: split.clone() }).batch_size(batch_size);
    let builder = match shuffle {
        Some(seed) => builder.shuffle(seed),
        None => builder,
    };
    builder.build(InMemDataset::new(indices))
}

/// MNIST as a Lightning datamodule: the training file split into training and validation
/// items, the `t10k` file for testing and prediction. The training items are shuffled every
/// epoch, with the trainer's seed when it has one.
///
/// Its serialized fields are `LightningCli`'s `data:` section and `--data.<field>` options;
/// the splits it reads are not configuration (`#[serde(skip)]`).
#[derive(Serialize, Deserialize, DataOptions)]
#[serde(default, deny_unknown_fields)]
pub struct MnistData {
    /// The directory of the IDX files.
    dir: PathBuf,
    /// Images per batch.
    batch_size: usize,
    /// Training items held out for validation.
    val_items: usize,
    /// The shuffle's seed: the constructor's, replaced by the trainer's (`set_seed`).
    seed: u64,
    #[serde(skip)]
    train: Option<MnistSplit>,
    #[serde(skip)]
    test: Option<MnistSplit>,
}

/// The bundled data, batches of 64, 1,000 validation items, seed 42.
impl Default for MnistData {
    fn default() -> Self {
        Self::new(Self::bundled_dir(), 64, 1000, 42)
    }
}

impl MnistData {
    /// The IDX files in `dir`; `val_items` training items are held out for validation. `seed`
    /// shuffles the training items unless the trainer gives its own seed.
    pub fn new(dir: impl Into<PathBuf>, batch_size: usize, val_items: usize, seed: u64) -> Self {
        Self {
            dir: dir.into(),
            batch_size,
            val_items,
            seed,
            train: None,
            test: None,
        }
    }

    /// The data shipped with the repository: `examples/data/mnist` in the source tree this was
    /// compiled from, or `$BURN_LIGHTNING_DATA_DIR/mnist` where the variable is set (a binary run
    /// away from its source tree: the GPU checks' pack, `scripts/gpu-pack.sh`).
    pub fn bundled_dir() -> PathBuf {
        Self::bundled_dir_in(std::env::var_os(DATA_DIR_VARIABLE).map(PathBuf::from))
    }

    /// [`MnistData::bundled_dir`] for the value of `BURN_LIGHTNING_DATA_DIR` (`None`: unset).
    pub fn bundled_dir_in(data_dir: Option<PathBuf>) -> PathBuf {
        match data_dir {
            Some(dir) => dir.join("mnist"),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/mnist"),
        }
    }

    fn split_point(&self, train: &MnistSplit) -> usize {
        train.len().saturating_sub(self.val_items)
    }
}

/// The batch size `Tuner::scale_batch_size` tunes: that of every dataloader it builds.
impl BatchSizeTunable for MnistData {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size;
    }
}

impl DataModule<MnistBatch> for MnistData {
    /// The trainer's seed shuffles the training items.
    fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Its options (`--data.<field>`) join the module's hyperparameters in `hparams.yaml`.
    fn hparams(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()
    }

    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        // Before any loader: burn's never ends with batches of 0.
        burn_lightning::check_batch_size(self.batch_size, "--data.batch_size / MnistData::new")?;
        match stage {
            Stage::Fit | Stage::Validate if self.train.is_none() => {
                self.train = Some(MnistSplit::read(&self.dir, "train").map_err(Error::user)?);
            }
            Stage::Test | Stage::Predict if self.test.is_none() => {
                self.test = Some(MnistSplit::read(&self.dir, "t10k").map_err(Error::user)?);
            }
            _ => {}
        }
        Ok(())
    }

    fn train_dataloader(&mut self) -> Option<Loader<MnistBatch>> {
        let train = self.train.as_ref()?;
        Some(loader(
            train,
            (0..self.split_point(train)).collect(),
            self.batch_size,
            Some(self.seed),
        ))
    }

    fn val_dataloader(&mut self) -> Option<Loader<MnistBatch>> {
        let train = self.train.as_ref()?;
        Some(loader(
            train,
            (self.split_point(train)..train.len()).collect(),
            self.batch_size,
            None,
        ))
    }

    fn test_dataloader(&mut self) -> Option<Loader<MnistBatch>> {
        let test = self.test.as_ref()?;
        Some(loader(test, (0..test.len()).collect(), self.batch_size, None))
    }

    fn predict_dataloader(&mut self) -> Option<Loader<MnistBatch>> {
        self.test_dataloader()
    }
}
