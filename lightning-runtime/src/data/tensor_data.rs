//! The short path from in-memory data to training (Lightning's `TensorDataset` + `DataLoader`
//! + `random_split`), on top of burn's dataset and dataloader types.
//!
//! [`TensorDataset`] is a burn [`Dataset`] of rows of tensors (or of `Vec`s); its
//! [`loader`](TensorDataset::loader) is burn's `DataLoaderBuilder` with a batcher that stacks
//! the rows of a batch into one [`TensorBatch`]; [`random_split`](TensorDataset::random_split)
//! splits it with a seed; [`InMemoryDataModule`] hands the splits to the trainer.
//!
//! ```
//! # use burn_lightning_runtime::{Tensor, Device, TensorDataset, InMemoryDataModule, Error};
//! # fn main() -> Result<(), Error> {
//! let device = Device::default();
//! let x = Tensor::<2>::ones([100, 8], &device);
//! let dataset = TensorDataset::inputs(x)?; // an autoencoder's data: the targets are the inputs
//! let [train, val] = dataset.random_split([0.8, 0.2], 42)?;
//! let data = InMemoryDataModule::new(train, val, None).batch_size(16);
//! assert_eq!(data.batch_size_value(), 16);
//! # Ok(()) }
//! ```

use crate::core::datamodule::{DataModule, Loader, Stage};
use crate::{Device, Error, Tensor};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::transform::{PartialDataset, ShuffledDataset};
use burn::data::dataset::{Dataset, DatasetError, InMemDataset};
use burn::tensor::kind::Basic;
use burn::tensor::{Float, Int, TensorData};
use std::marker::PhantomData;
use std::sync::Arc;

/// Examples of one tensor, row-major, on the host.
#[derive(Debug)]
struct Rows {
    values: Vec<f32>,
    /// The shape of one example (the tensor's shape without its first dimension).
    example_shape: Vec<usize>,
    /// Values per example.
    example_len: usize,
}

impl Rows {
    fn from_tensor<const D: usize, K: Basic + 'static>(tensor: Tensor<D, K>, name: &str) -> Result<Self, Error> {
        let dims = tensor.dims();
        let values = tensor
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Data(format!("cannot read `{name}` as f32 values: {e:?}")))?;
        let example_shape = dims[1..].to_vec();
        Ok(Self {
            example_len: example_shape.iter().product(),
            values,
            example_shape,
        })
    }

    fn from_vecs(rows: Vec<Vec<f32>>, name: &str) -> Result<Self, Error> {
        let example_len = rows.first().map_or(0, Vec::len);
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != example_len) {
            return Err(Error::Data(format!(
                "row {i} of `{name}` has {} values, row 0 has {example_len}; every example needs the same length",
                row.len()
            )));
        }
        Ok(Self {
            values: rows.into_iter().flatten().collect(),
            example_shape: vec![example_len],
            example_len,
        })
    }

    fn len(&self) -> usize {
        self.values.len().checked_div(self.example_len).unwrap_or(0)
    }

    /// The rows `indices` stacked into one tensor of `D` dimensions.
    fn batch<const D: usize, K: Basic + 'static>(&self, indices: &[usize], device: &Device) -> Tensor<D, K> {
        let mut values = Vec::with_capacity(indices.len() * self.example_len);
        for &i in indices {
            values.extend_from_slice(&self.values[i * self.example_len..(i + 1) * self.example_len]);
        }
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(&self.example_shape);
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

#[derive(Debug)]
struct Storage {
    inputs: Rows,
    /// `None`: the targets are the inputs (an autoencoder).
    targets: Option<Rows>,
}

/// In-memory examples (Lightning's `TensorDataset`): inputs and targets whose first dimension
/// counts the examples, as a burn [`Dataset`] of [`Example`]s. Splits share the data.
#[derive(Clone, Debug)]
pub struct TensorDataset<const DX: usize = 2, const DY: usize = 2, K: Basic = Float> {
    storage: Arc<Storage>,
    /// The examples of this dataset (a split holds a part of them), in order.
    indices: Arc<[usize]>,
    kind: PhantomData<fn() -> K>,
}

/// One example of a [`TensorDataset`] (a row index into its shared data).
#[derive(Clone)]
pub struct Example {
    storage: Arc<Storage>,
    index: usize,
}

impl std::fmt::Debug for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Example").field(&self.index).finish()
    }
}

/// A batch of a [`TensorDataset`]: its inputs and targets stacked along a first dimension.
#[derive(Clone, Debug)]
pub struct TensorBatch<const DX: usize = 2, const DY: usize = 2, K: Basic = Float> {
    pub x: Tensor<DX>,
    pub y: Tensor<DY, K>,
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> TensorDataset<DX, DY, K> {
    /// Inputs `x` and targets `y` with as many examples (first dimension) each: float targets
    /// (regression), or `Int` ones (class labels, `Tensor<1, Int>`). Reads them to the host once,
    /// as f32 values; batches are made on the device the trainer runs on.
    pub fn new(x: Tensor<DX>, y: Tensor<DY, K>) -> Result<Self, Error> {
        let (nx, ny) = (x.dims()[0], y.dims()[0]);
        if nx != ny {
            return Err(Error::Data(format!(
                "`x` has {nx} examples and `y` has {ny}; give as many targets as inputs (the first dimension)"
            )));
        }
        Self::from_storage(Storage {
            inputs: Rows::from_tensor(x, "x")?,
            targets: Some(Rows::from_tensor(y, "y")?),
        })
    }

    fn from_storage(storage: Storage) -> Result<Self, Error> {
        let len = storage.inputs.len();
        Ok(Self {
            storage: Arc::new(storage),
            indices: (0..len).collect(),
            kind: PhantomData,
        })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether it has no examples.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Splits it at random, with a seed (torch's `random_split`): `N` fractions that sum to 1
    /// (`[0.8, 0.2]`; rounding leftovers go to the first splits, one each), or `N` counts that
    /// sum to its length (`[800, 200]`). The same seed gives the same splits.
    pub fn random_split<const N: usize>(
        &self,
        lengths: impl Into<SplitLengths<N>>,
        seed: u64,
    ) -> Result<[Self; N], Error> {
        let lengths = lengths.into().resolve(self.len())?;
        let order = seeded_permutation(self.len(), seed);
        let mut start = 0;
        Ok(lengths.map(|length| {
            let indices = order[start..start + length].iter().map(|&i| self.indices[i]).collect();
            start += length;
            Self {
                storage: self.storage.clone(),
                indices,
                kind: PhantomData,
            }
        }))
    }

    /// A loader of batches of `batch_size` examples, in order; `.shuffle(seed)` shuffles them.
    pub fn loader(&self, batch_size: usize) -> LoaderOptions<DX, DY, K> {
        LoaderOptions {
            dataset: self.clone(),
            batch_size,
            shuffle: None,
            num_workers: 0,
        }
    }
}

impl<const D: usize> TensorDataset<D, D> {
    /// Examples without targets: each batch's `y` is its `x` (an autoencoder's data).
    pub fn inputs(x: Tensor<D>) -> Result<Self, Error> {
        Self::from_storage(Storage {
            inputs: Rows::from_tensor(x, "x")?,
            targets: None,
        })
    }
}

impl TensorDataset<2, 1, Int> {
    /// Inputs given as rows of values, and a class label per row (a classifier's data; labels
    /// are kept as f32, exact up to 2^24).
    pub fn from_labels(x: Vec<Vec<f32>>, labels: Vec<i64>) -> Result<Self, Error> {
        if x.len() != labels.len() {
            return Err(Error::Data(format!(
                "`x` has {} rows and `labels` has {}; give one label per input row",
                x.len(),
                labels.len()
            )));
        }
        Self::from_storage(Storage {
            inputs: Rows::from_vecs(x, "x")?,
            targets: Some(Rows {
                values: labels.into_iter().map(|label| label as f32).collect(),
                example_shape: Vec::new(),
                example_len: 1,
            }),
        })
    }
}

impl TensorDataset<2, 2> {
    /// Inputs and targets given as rows of values: `x[i]` and `y[i]` are example `i`.
    pub fn from_vecs(x: Vec<Vec<f32>>, y: Vec<Vec<f32>>) -> Result<Self, Error> {
        if x.len() != y.len() {
            return Err(Error::Data(format!(
                "`x` has {} rows and `y` has {}; give one target row per input row",
                x.len(),
                y.len()
            )));
        }
        Self::from_storage(Storage {
            inputs: Rows::from_vecs(x, "x")?,
            targets: Some(Rows::from_vecs(y, "y")?),
        })
    }
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> Dataset<Example> for TensorDataset<DX, DY, K> {
    fn get(&self, index: usize) -> Result<Example, DatasetError> {
        let index = *self.indices.get(index).ok_or_else(|| {
            DatasetError::new(std::io::Error::other(format!(
                "example {index} is out of range: the dataset has {}",
                self.indices.len()
            )))
        })?;
        Ok(Example {
            storage: self.storage.clone(),
            index,
        })
    }

    fn len(&self) -> usize {
        self.indices.len()
    }
}

/// Stacks examples of a [`TensorDataset`] into a [`TensorBatch`] (one tensor per side).
#[derive(Clone, Copy, Debug)]
pub struct TensorBatcher<const DX: usize = 2, const DY: usize = 2, K: Basic = Float>(PhantomData<fn() -> K>);

impl<const DX: usize, const DY: usize, K: Basic + 'static> Default for TensorBatcher<DX, DY, K> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> Batcher<Example, TensorBatch<DX, DY, K>>
    for TensorBatcher<DX, DY, K>
{
    fn batch(&self, items: Vec<Example>, device: &Device) -> TensorBatch<DX, DY, K> {
        let Some(first) = items.first() else {
            // burn never asks for an empty batch; an empty one is still well formed.
            return TensorBatch {
                x: Tensor::empty([0; DX], device),
                y: Tensor::empty([0; DY], device),
            };
        };
        let storage = first.storage.clone();
        let indices: Vec<usize> = items.iter().map(|item| item.index).collect();
        let x = storage.inputs.batch::<DX, Float>(&indices, device);
        let y = match &storage.targets {
            Some(targets) => targets.batch::<DY, K>(&indices, device),
            // `inputs` only builds float datasets with DX == DY.
            None => storage.inputs.batch::<DY, K>(&indices, device),
        };
        TensorBatch { x, y }
    }
}

/// How to load a [`TensorDataset`]: burn's `DataLoaderBuilder` options. `build()` (or `.into()`)
/// makes the [`Loader`].
#[derive(Clone, Debug)]
pub struct LoaderOptions<const DX: usize = 2, const DY: usize = 2, K: Basic = Float> {
    dataset: TensorDataset<DX, DY, K>,
    batch_size: usize,
    shuffle: Option<u64>,
    num_workers: usize,
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> LoaderOptions<DX, DY, K> {
    /// Shuffles the examples with this seed; each pass (epoch) draws a new order, the same
    /// orders for the same seed.
    #[must_use]
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// Makes batches in this many worker threads (default 0: in the training thread).
    #[must_use]
    pub fn num_workers(mut self, num_workers: usize) -> Self {
        self.num_workers = num_workers;
        self
    }

    /// burn's dataloader; an error for a batch size of 0 (burn's loader would never end).
    pub fn build(self) -> Result<Loader<TensorBatch<DX, DY, K>>, Error> {
        check_batch_size(self.batch_size, "TensorDataset::loader")?;
        let mut builder = DataLoaderBuilder::new(TensorBatcher::<DX, DY, K>::default()).batch_size(self.batch_size);
        if let Some(seed) = self.shuffle {
            builder = builder.shuffle(seed);
        }
        if self.num_workers > 0 {
            builder = builder.num_workers(self.num_workers);
        }
        Ok(builder.build(self.dataset))
    }
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> TryFrom<LoaderOptions<DX, DY, K>>
    for Loader<TensorBatch<DX, DY, K>>
{
    type Error = Error;

    fn try_from(options: LoaderOptions<DX, DY, K>) -> Result<Self, Error> {
        options.build()
    }
}

/// A batch size of 0 is an error (burn's batch iterator never advances with it: the run would
/// hang), given before any loader is built. `what` names where the size was given.
pub fn check_batch_size(batch_size: usize, what: &str) -> Result<(), Error> {
    if batch_size == 0 {
        return Err(Error::config(
            "batch_size",
            format!("0 examples per batch makes no batches (a loader that never ends); give 1 or more (`{what}`)"),
        ));
    }
    Ok(())
}

/// The sizes of a [`random_split`](TensorDataset::random_split): fractions or counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitLengths<const N: usize> {
    /// Fractions that sum to 1.
    Fractions([f64; N]),
    /// Counts that sum to the dataset's length.
    Counts([usize; N]),
}

impl<const N: usize> From<[f64; N]> for SplitLengths<N> {
    fn from(fractions: [f64; N]) -> Self {
        SplitLengths::Fractions(fractions)
    }
}

impl<const N: usize> From<[usize; N]> for SplitLengths<N> {
    fn from(counts: [usize; N]) -> Self {
        SplitLengths::Counts(counts)
    }
}

impl<const N: usize> SplitLengths<N> {
    /// The count of each split of `total` items, as torch computes them.
    fn resolve(self, total: usize) -> Result<[usize; N], Error> {
        match self {
            SplitLengths::Counts(counts) => {
                let sum: usize = counts.iter().sum();
                if sum != total {
                    return Err(Error::Data(format!(
                        "the split counts {counts:?} sum to {sum}, but the dataset has {total} examples; make them sum to {total}"
                    )));
                }
                Ok(counts)
            }
            SplitLengths::Fractions(fractions) => {
                let sum: f64 = fractions.iter().sum();
                if fractions.iter().any(|f| !(0.0..=1.0).contains(f)) || (sum - 1.0).abs() > 1e-6 {
                    return Err(Error::Data(format!(
                        "the split fractions {fractions:?} must each be in [0, 1] and sum to 1 (they sum to {sum})"
                    )));
                }
                let mut counts = fractions.map(|f| (total as f64 * f).floor() as usize);
                let leftover = total - counts.iter().sum::<usize>();
                for count in counts.iter_mut().take(leftover) {
                    *count += 1;
                }
                Ok(counts)
            }
        }
    }
}

/// A permutation of `0..len` drawn with burn's seeded shuffle.
fn seeded_permutation(len: usize, seed: u64) -> Vec<usize> {
    let shuffled = ShuffledDataset::new(InMemDataset::new((0..len).collect::<Vec<usize>>()), seed);
    (0..len).filter_map(|i| shuffled.get(i).ok()).collect()
}

/// One part of a [`random_split`] of a burn dataset `D` of items `I`.
pub type SplitDataset<D, I> = PartialDataset<Arc<ShuffledDataset<D, I>>, I>;

/// [`TensorDataset::random_split`] for any burn [`Dataset`]: `N` parts of a seeded shuffle of
/// it, burn's `PartialDataset`s over one shared `ShuffledDataset`.
pub fn random_split<D, I, const N: usize>(
    dataset: D,
    lengths: impl Into<SplitLengths<N>>,
    seed: u64,
) -> Result<[SplitDataset<D, I>; N], Error>
where
    D: Dataset<I>,
    I: Clone + Send + Sync,
{
    let lengths = lengths.into().resolve(dataset.len())?;
    let shuffled = Arc::new(ShuffledDataset::new(dataset, seed));
    let mut start = 0;
    Ok(lengths.map(|length| {
        let part = PartialDataset::new(shuffled.clone(), start, start + length);
        start += length;
        part
    }))
}

/// A [`DataModule`] of in-memory splits (Lightning's `LightningDataModule` written in a few
/// lines): the training loader is shuffled with the trainer's seed (or 0), the others are not.
/// Its batch size is public ([`batch_size_value`](Self::batch_size_value),
/// [`set_batch_size`](Self::set_batch_size)) for a batch-size finder.
#[derive(Clone, Debug)]
pub struct InMemoryDataModule<const DX: usize = 2, const DY: usize = 2, K: Basic = Float> {
    train: Option<TensorDataset<DX, DY, K>>,
    val: Option<TensorDataset<DX, DY, K>>,
    test: Option<TensorDataset<DX, DY, K>>,
    predict: Option<TensorDataset<DX, DY, K>>,
    batch_size: usize,
    seed: u64,
    num_workers: usize,
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> InMemoryDataModule<DX, DY, K> {
    /// Training data, and validation and test data if any (`None` for none). Batches of 32.
    pub fn new(
        train: impl Into<Option<TensorDataset<DX, DY, K>>>,
        val: impl Into<Option<TensorDataset<DX, DY, K>>>,
        test: impl Into<Option<TensorDataset<DX, DY, K>>>,
    ) -> Self {
        Self {
            train: train.into(),
            val: val.into(),
            test: test.into(),
            predict: None,
            batch_size: 32,
            seed: 0,
            num_workers: 0,
        }
    }

    /// Examples per batch (default 32).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The batch size the loaders are built with.
    pub fn batch_size_value(&self) -> usize {
        self.batch_size
    }

    /// Changes the batch size of the loaders requested from now on (what a batch-size finder
    /// sets).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size;
    }

    /// Data for `Trainer::predict`.
    #[must_use]
    pub fn predict(mut self, predict: TensorDataset<DX, DY, K>) -> Self {
        self.predict = Some(predict);
        self
    }

    /// Makes batches in this many worker threads (default 0).
    #[must_use]
    pub fn num_workers(mut self, num_workers: usize) -> Self {
        self.num_workers = num_workers;
        self
    }

    fn loader(
        &self,
        dataset: &Option<TensorDataset<DX, DY, K>>,
        shuffle: bool,
    ) -> Option<Loader<TensorBatch<DX, DY, K>>> {
        let mut options = dataset.as_ref()?.loader(self.batch_size).num_workers(self.num_workers);
        if shuffle {
            options = options.shuffle(self.seed);
        }
        // `setup` refused a batch size of 0; one set later (`set_batch_size`) gives no loader,
        // and the run fails naming the missing loader after the warning.
        match options.build() {
            Ok(loader) => Some(loader),
            Err(e) => {
                tracing::error!(target: "burn_lightning", "{e}");
                None
            }
        }
    }
}

impl<const DX: usize, const DY: usize, K: Basic + 'static> DataModule<TensorBatch<DX, DY, K>>
    for InMemoryDataModule<DX, DY, K>
{
    fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        let _ = stage;
        check_batch_size(self.batch_size, "InMemoryDataModule::batch_size")
    }

    fn train_dataloader(&mut self) -> Option<Loader<TensorBatch<DX, DY, K>>> {
        self.loader(&self.train, true)
    }

    fn val_dataloader(&mut self) -> Option<Loader<TensorBatch<DX, DY, K>>> {
        self.loader(&self.val, false)
    }

    fn test_dataloader(&mut self) -> Option<Loader<TensorBatch<DX, DY, K>>> {
        self.loader(&self.test, false)
    }

    fn predict_dataloader(&mut self) -> Option<Loader<TensorBatch<DX, DY, K>>> {
        self.loader(&self.predict, false)
    }

    fn provides_val_dataloader(&self) -> bool {
        self.val.is_some()
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    fn numbered(n: usize) -> TensorDataset {
        let x = (0..n).map(|i| vec![i as f32, 1.0]).collect();
        let y = (0..n).map(|i| vec![2.0 * i as f32]).collect();
        TensorDataset::from_vecs(x, y).unwrap()
    }

    fn first_column(batch: &TensorBatch) -> Vec<f32> {
        let x = batch.x.clone().into_data().try_into_vec::<f32>().unwrap();
        x.chunks(2).map(|row| row[0]).collect()
    }

    #[test]
    fn a_loader_stacks_rows_in_order_unless_shuffled() {
        let dataset = numbered(10);
        let loader = dataset.loader(4).build().unwrap();
        let batches: Vec<TensorBatch> = loader.iter().map(Result::unwrap).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(first_column(&batches[0]), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(batches[2].y.dims(), [2, 1]);
        let shuffled = |seed| {
            let loader = dataset.loader(10).shuffle(seed).build().unwrap();
            let batch = loader.iter().next().unwrap().unwrap();
            first_column(&batch)
        };
        assert_eq!(shuffled(3), shuffled(3));
        let in_order: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert_ne!(shuffled(3), in_order);
        assert_ne!(shuffled(3), shuffled(4));
    }

    #[test]
    fn random_split_is_seeded_and_covers_everything() {
        let dataset = numbered(10);
        let [a, b] = dataset.random_split([0.75, 0.25], 7).unwrap();
        assert_eq!((a.len(), b.len()), (8, 2)); // 7.5 -> 7 + the leftover, 2.5 -> 2
        let [a2, _] = dataset.random_split([8, 2], 7).unwrap();
        assert_eq!(a.indices, a2.indices);
        let mut all: Vec<usize> = a.indices.iter().chain(b.indices.iter()).copied().collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(dataset.random_split([0.5, 0.6], 7).is_err());
        assert!(
            dataset
                .random_split([5, 4], 7)
                .unwrap_err()
                .to_string()
                .contains("sum to 10")
        );
        let parts = random_split(dataset, [3, 7], 1).unwrap();
        assert_eq!(parts[1].len(), 7);
    }

    #[test]
    fn class_labels_batch_as_an_int_tensor() {
        let x = (0..6).map(|i| vec![i as f32, 0.0]).collect();
        let dataset = TensorDataset::from_labels(x, vec![0, 1, 2, 0, 1, 2]).unwrap();
        let batch = dataset.loader(4).build().unwrap().iter().next().unwrap().unwrap();
        assert_eq!(batch.y.dims(), [4]);
        assert_eq!(batch.y.into_data().try_into_vec_as::<i64>().unwrap(), [0, 1, 2, 0]);
        let device = Device::default();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 4], [2]), &device);
        let dataset = TensorDataset::new(Tensor::<2>::ones([2, 3], &device), labels).unwrap();
        let [one, _] = dataset.random_split([1, 1], 0).unwrap();
        let batch = one.loader(8).build().unwrap().iter().next().unwrap().unwrap();
        assert!(matches!(
            batch.y.into_data().try_into_vec_as::<i64>().unwrap()[..],
            [3] | [4]
        ));
    }

    #[test]
    fn rows_of_different_lengths_are_an_error() {
        let error = TensorDataset::from_vecs(vec![vec![1.0], vec![1.0, 2.0]], vec![vec![0.0], vec![0.0]]).unwrap_err();
        assert!(error.to_string().contains("row 1"), "{error}");
        let device = Device::default();
        let error =
            TensorDataset::new(Tensor::<2>::ones([3, 2], &device), Tensor::<1>::ones([2], &device)).unwrap_err();
        assert!(error.to_string().contains("3 examples"), "{error}");
    }
}
