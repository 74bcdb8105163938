//! Lightning's `CombinedLoader` for training: two to four burn loaders read side by side, each
//! training batch a tuple of one batch of each ([`CombinedLoader`]).
//!
//! Modes and epoch lengths are Lightning's: `max_size_cycle` runs as many batches as the longest
//! loader has and starts the shorter ones again when they run out (a new `iter()`, so a new
//! shuffled order), `min_size` stops with the shortest, and `max_size` runs the longest with
//! `None` for the loaders that have run out.
//!
//! An exact mid-epoch resume replays one `iter()` of the training loader per completed epoch,
//! drops it at once, and skips the batches done. A cycled loader starts several passes per epoch
//! and each pass draws a new order from the loader's generator, so every `iter()` of a combined
//! loader starts, whatever happens to it, the passes of a full epoch: those its batches did not
//! start are started (and dropped) when the iterator is dropped. That needs the number of batches
//! of each loader, which burn's loaders do not tell: the first `iter()` of a combined loader
//! counts them by reading each loader once (a pass that loads the data and draws one order; a
//! resumed run draws it too, so the orders stay those of the uninterrupted run).

use crate::Error;
use crate::core::datamodule::Loader;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

/// How the unit of a combined iterator's [`Progress`] starts: its `items_processed` counts the
/// items of the first loader's batches (the batch size Lightning logs is the first loader's),
/// and once the first batch is read its `items_total` is the epoch's number of batches times the
/// first batch's size, so that the training loop learns the epoch length from it. The unit goes
/// on with [`SHORTEST_LOADER`] and the shortest loader's number of batches: Lightning applies a
/// fractional `limit_train_batches` to each loader and refuses one that leaves a loader under
/// one batch.
pub const FIRST_LOADER_ITEMS: &str = "items of the first combined loader";

/// What follows [`FIRST_LOADER_ITEMS`] in the unit, then the shortest loader's number of batches.
pub const SHORTEST_LOADER: &str = "; batches of the shortest loader: ";

/// How a [`CombinedLoader`] combines its loaders (Lightning's `mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum CombinedMode {
    /// As many batches as the longest loader has; the shorter ones start again when they run
    /// out. Lightning's default for training.
    MaxSizeCycle,
    /// As many batches as the shortest loader has.
    MinSize,
    /// As many batches as the longest loader has, `None` for the loaders that ran out: its batch
    /// type differs, so it is built with [`CombinedLoader::max_size`].
    MaxSize,
    /// Each loader after the other. Lightning's `fit` refuses it; the several validation, test
    /// and predict dataloaders of a stage already run this way.
    Sequential,
}

impl CombinedMode {
    /// Lightning's name of the mode (`"max_size_cycle"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CombinedMode::MaxSizeCycle => "max_size_cycle",
            CombinedMode::MinSize => "min_size",
            CombinedMode::MaxSize => "max_size",
            CombinedMode::Sequential => "sequential",
        }
    }

    /// The epoch's number of batches, from the loaders' numbers of batches.
    fn epoch_length(self, lengths: &[usize]) -> usize {
        match self {
            CombinedMode::MinSize => lengths.iter().copied().min().unwrap_or(0),
            CombinedMode::MaxSizeCycle | CombinedMode::MaxSize => lengths.iter().copied().max().unwrap_or(0),
            CombinedMode::Sequential => lengths.iter().sum(),
        }
    }
}

impl std::fmt::Display for CombinedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Combines two to four training loaders as Lightning's `CombinedLoader` does; the result is a
/// plain [`Loader`] of tuples, given where a training loader goes (`Loaders::fit`, a
/// DataModule's `train_dataloader`).
///
/// ```ignore
/// let train = CombinedLoader::new((labelled, unlabelled), CombinedMode::MaxSizeCycle)?;
/// // training_step(&self, (labelled, unlabelled): (Batch, Batch), ...)
/// ```
///
/// The epoch length is Lightning's (the longest loader's number of batches in `max_size_cycle`
/// and `max_size`, the shortest's in `min_size`); `limit_train_batches` bounds it as Lightning
/// bounds `len(combined_loader)` with each loader's limit (a number `n`: at most `n` batches; a
/// fraction `f`: `⌊f × epoch length⌋`, which is the longest (shortest) of the loaders' `⌊f ×
/// length⌋`). The logged batch size is the first loader's.
///
/// Its [`DataLoader::num_items`] is all loaders' items together, and [`DataLoader::slice`] cuts
/// the same share of every loader: under data parallelism each rank reads a contiguous `1/N` of
/// each loader (Lightning gives each loader a `DistributedSampler`: every `N`-th item, padded to
/// equal shares).
pub struct CombinedLoader;

impl CombinedLoader {
    /// The loaders combined in `MaxSizeCycle` or `MinSize` mode: each batch is a tuple of one
    /// batch of each. `MaxSize` (whose batches hold `Option`s) is [`CombinedLoader::max_size`];
    /// `Sequential` is refused, as Lightning's `fit` refuses it.
    // Named as Lightning's `CombinedLoader(iterables, mode)`; what it builds is a `Loader`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<L: IntoCombined>(loaders: L, mode: CombinedMode) -> Result<Loader<L::Batch>, Error> {
        match mode {
            CombinedMode::MaxSizeCycle | CombinedMode::MinSize => {}
            CombinedMode::MaxSize => {
                return Err(Error::config(
                    "CombinedLoader",
                    "in `max_size` mode a loader that ran out gives `None`, so the batch is a tuple of `Option`s: \
                     build it with `CombinedLoader::max_size(loaders)`",
                ));
            }
            CombinedMode::Sequential => {
                return Err(Error::config(
                    "CombinedLoader",
                    "training does not support the `sequential` mode (Lightning's `fit` refuses it too): use \
                     `MaxSizeCycle`, `MinSize` or `CombinedLoader::max_size`, or give the loaders as several \
                     validation, test or predict dataloaders, which run one after the other",
                ));
            }
        }
        let combination = loaders.into_combination();
        check_not_empty(&combination.loaders)?;
        Ok(Arc::new(Combined::new(mode, combination.loaders, combination.assemble)))
    }

    /// The loaders combined in `max_size` mode: as many batches as the longest loader has, with
    /// `None` for each loader that has run out.
    pub fn max_size<L: IntoCombined>(loaders: L) -> Result<Loader<L::PartialBatch>, Error> {
        let combination = loaders.into_combination();
        check_not_empty(&combination.loaders)?;
        Ok(Arc::new(Combined::new(
            CombinedMode::MaxSize,
            combination.loaders,
            combination.assemble_partial,
        )))
    }
}

fn check_not_empty(loaders: &[Arc<dyn ErasedLoader>]) -> Result<(), Error> {
    match loaders.iter().position(|loader| loader.num_items() == 0) {
        Some(index) => Err(Error::config(
            "CombinedLoader",
            format!(
                "loader {index} (counting from 0) of the {} combined loaders holds no items: give it items or leave \
                 it out of the combination",
                loaders.len()
            ),
        )),
        None => Ok(()),
    }
}

/// A [`DatasetError`] of the combined loader: its passes end with an error, never a panic.
fn combined_error(message: String) -> DatasetError {
    DatasetError::new(std::io::Error::other(message))
}

/// One sub-loader's batch, its type erased until the batch is assembled.
type Part = Box<dyn Any + Send>;

/// Puts the sub-loaders' batches of one step (`None` for one that ran out) into the batch type;
/// `None` when one is missing where the type needs it.
type Assemble<T> = fn(Vec<Option<Part>>) -> Option<T>;

/// The loaders of a combination, their types erased, with the functions that assemble a batch.
pub struct Combination<T, P> {
    loaders: Vec<Arc<dyn ErasedLoader>>,
    assemble: Assemble<T>,
    assemble_partial: Assemble<P>,
}

/// Tuples of two to four [`Loader`]s, which [`CombinedLoader`] combines.
pub trait IntoCombined {
    /// A tuple of one batch of each loader.
    type Batch: Send + 'static;
    /// A tuple of one `Option` of a batch of each loader (`max_size` mode).
    type PartialBatch: Send + 'static;

    fn into_combination(self) -> Combination<Self::Batch, Self::PartialBatch>;
}

macro_rules! into_combined {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Send + 'static),+> IntoCombined for ($(Loader<$name>,)+) {
            type Batch = ($($name,)+);
            type PartialBatch = ($(Option<$name>,)+);

            fn into_combination(self) -> Combination<Self::Batch, Self::PartialBatch> {
                fn assemble_partial<$($name: Send + 'static),+>(parts: Vec<Option<Part>>) -> Option<($(Option<$name>,)+)> {
                    let mut parts = parts.into_iter();
                    Some(($(
                        match parts.next()? {
                            Some(part) => Some(*part.downcast::<$name>().ok()?),
                            None => None,
                        },
                    )+))
                }
                #[allow(non_snake_case)]
                fn assemble<$($name: Send + 'static),+>(parts: Vec<Option<Part>>) -> Option<($($name,)+)> {
                    let ($($name,)+) = assemble_partial::<$($name),+>(parts)?;
                    Some(($($name?,)+))
                }
                Combination {
                    loaders: vec![$(Arc::new(Typed(self.$index)) as Arc<dyn ErasedLoader>),+],
                    assemble: assemble::<$($name),+>,
                    assemble_partial: assemble_partial::<$($name),+>,
                }
            }
        }
    };
}

into_combined!(A 0, B 1);
into_combined!(A 0, B 1, C 2);
into_combined!(A 0, B 1, C 2, D 3);

/// A burn loader with its batch type erased, so that loaders of different types sit in one list.
trait ErasedLoader: Send + Sync {
    fn iter(&self) -> Box<dyn ErasedIter + '_>;
    fn num_items(&self) -> usize;
    fn to_device(&self, device: &crate::Device) -> Arc<dyn ErasedLoader>;
    fn slice(&self, start: usize, end: usize) -> Arc<dyn ErasedLoader>;
}

trait ErasedIter {
    fn next(&mut self) -> Option<Result<Part, DatasetError>>;
    fn items_processed(&self) -> usize;
}

struct Typed<B>(Loader<B>);

struct TypedIter<'a, B>(Box<dyn DataLoaderIterator<B> + 'a>);

impl<B: Send + 'static> ErasedLoader for Typed<B> {
    fn iter(&self) -> Box<dyn ErasedIter + '_> {
        Box::new(TypedIter(self.0.iter()))
    }

    fn num_items(&self) -> usize {
        self.0.num_items()
    }

    fn to_device(&self, device: &crate::Device) -> Arc<dyn ErasedLoader> {
        Arc::new(Typed(self.0.to_device(device)))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn ErasedLoader> {
        Arc::new(Typed(self.0.slice(start, end)))
    }
}

impl<B: Send + 'static> ErasedIter for TypedIter<'_, B> {
    fn next(&mut self) -> Option<Result<Part, DatasetError>> {
        Some(self.0.next()?.map(|batch| Box::new(batch) as Part))
    }

    fn items_processed(&self) -> usize {
        self.0.progress().items_processed
    }
}

/// The loader [`CombinedLoader`] builds.
struct Combined<T> {
    mode: CombinedMode,
    loaders: Vec<Arc<dyn ErasedLoader>>,
    assemble: Assemble<T>,
    /// Each loader's number of batches, counted at the first `iter()` (see the module's notes).
    lengths: Mutex<Option<Vec<usize>>>,
}

impl<T> Combined<T> {
    fn new(mode: CombinedMode, loaders: Vec<Arc<dyn ErasedLoader>>, assemble: Assemble<T>) -> Self {
        Self {
            mode,
            loaders,
            assemble,
            lengths: Mutex::new(None),
        }
    }

    /// Each loader's number of batches: counted once, by reading each loader once.
    fn lengths(&self) -> Result<Vec<usize>, DatasetError> {
        let mut known = self.lengths.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lengths) = &*known {
            return Ok(lengths.clone());
        }
        let mut lengths = Vec::with_capacity(self.loaders.len());
        for (index, loader) in self.loaders.iter().enumerate() {
            let mut batches = 0;
            let mut pass = loader.iter();
            while let Some(batch) = pass.next() {
                batch?;
                batches += 1;
            }
            if batches == 0 {
                // A shard of a small loader (data parallelism) can be empty.
                return Err(combined_error(format!(
                    "loader {index} (counting from 0) of the combined loader yields no batches ({} items); give it \
                     more items, or fewer devices when the loaders are shared among them",
                    loader.num_items()
                )));
            }
            lengths.push(batches);
        }
        *known = Some(lengths.clone());
        Ok(lengths)
    }
}

impl<T: Send + 'static> DataLoader<T> for Combined<T> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<T> + 'a> {
        let mut iter = CombinedIter {
            combined: self,
            lengths: Vec::new(),
            epoch_length: 0,
            passes: self.loaders.iter().map(|_| None).collect(),
            passes_started: vec![0; self.loaders.len()],
            step: 0,
            first_batch_size: None,
            items_processed: 0,
            failure: None,
        };
        match self.lengths() {
            Ok(lengths) => {
                iter.epoch_length = self.mode.epoch_length(&lengths);
                iter.lengths = lengths;
                // Lightning's `iter(combined_loader)` starts every loader's first pass.
                for index in 0..self.loaders.len() {
                    iter.start_pass(index);
                }
            }
            Err(error) => iter.failure = Some(error),
        }
        Box::new(iter)
    }

    /// The items of all loaders together: the range [`DataLoader::slice`] cuts.
    fn num_items(&self) -> usize {
        self.loaders.iter().map(|loader| loader.num_items()).sum()
    }

    fn to_device(&self, device: &crate::Device) -> Loader<T> {
        Arc::new(Combined {
            mode: self.mode,
            loaders: self.loaders.iter().map(|loader| loader.to_device(device)).collect(),
            assemble: self.assemble,
            // The same batches on another device.
            lengths: Mutex::new(self.lengths.lock().unwrap_or_else(PoisonError::into_inner).clone()),
        })
    }

    /// The same share of every loader: the items `start..end` of [`DataLoader::num_items`] (all
    /// loaders' items) cut from each loader in proportion to its size. Data parallelism shards
    /// a combined loader this way: each rank reads a contiguous `1/N` of each loader, where
    /// Lightning gives each loader a `DistributedSampler` (every `N`-th item, padded to equal
    /// shares).
    fn slice(&self, start: usize, end: usize) -> Loader<T> {
        let total = self.num_items().max(1) as u128;
        let share = |at: usize, items: usize| ((at as u128 * items as u128) / total) as usize;
        Arc::new(Combined::new(
            self.mode,
            self.loaders
                .iter()
                .map(|loader| {
                    let items = loader.num_items();
                    loader.slice(share(start, items), share(end, items))
                })
                .collect(),
            self.assemble,
        ))
    }
}

/// One pass of one sub-loader.
struct Pass<'a> {
    iter: Box<dyn ErasedIter + 'a>,
    batches: usize,
    items_seen: usize,
}

struct CombinedIter<'a, T> {
    combined: &'a Combined<T>,
    /// Each loader's number of batches.
    lengths: Vec<usize>,
    epoch_length: usize,
    /// Each loader's current pass (`None` once it ran out, in `max_size` and `min_size` mode).
    passes: Vec<Option<Pass<'a>>>,
    passes_started: Vec<usize>,
    /// The batches yielded.
    step: usize,
    first_batch_size: Option<usize>,
    /// Items of the first present loader's batches (see [`FIRST_LOADER_ITEMS`]).
    items_processed: usize,
    /// Counting the loaders' batches failed: the first `next` returns this.
    failure: Option<DatasetError>,
}

impl<T> CombinedIter<'_, T> {
    fn start_pass(&mut self, index: usize) {
        self.passes[index] = Some(Pass {
            iter: self.combined.loaders[index].iter(),
            batches: 0,
            items_seen: 0,
        });
        self.passes_started[index] += 1;
    }

    /// The passes a full epoch starts of loader `index`.
    fn passes_per_epoch(&self, index: usize) -> usize {
        match self.combined.mode {
            CombinedMode::MaxSizeCycle => self.epoch_length.div_ceil(self.lengths[index]),
            CombinedMode::MinSize | CombinedMode::MaxSize | CombinedMode::Sequential => 1,
        }
    }

    /// The next batch of loader `index` with its number of items, `None` when its part of the
    /// epoch is over.
    fn next_part(&mut self, index: usize) -> Result<Option<(Part, usize)>, DatasetError> {
        let length = self.lengths[index];
        if self.combined.mode == CombinedMode::MaxSizeCycle
            && self.passes[index].as_ref().is_some_and(|pass| pass.batches == length)
        {
            self.start_pass(index);
        }
        let Some(pass) = self.passes[index].as_mut() else {
            return Ok(None);
        };
        if pass.batches == length {
            self.passes[index] = None;
            return Ok(None);
        }
        match pass.iter.next() {
            Some(Ok(part)) => {
                pass.batches += 1;
                let processed = pass.iter.items_processed();
                let size = processed.saturating_sub(pass.items_seen).max(1);
                pass.items_seen = processed.max(pass.items_seen + 1);
                Ok(Some((part, size)))
            }
            Some(Err(error)) => Err(error),
            None => Err(combined_error(format!(
                "loader {index} (counting from 0) of the combined loader ended after {} of the {length} batches \
                 it had when counted; a combined loader needs loaders whose number of batches does not change",
                pass.batches
            ))),
        }
    }
}

impl<T> Iterator for CombinedIter<'_, T> {
    type Item = Result<T, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(failure) = self.failure.take() {
            self.step = self.epoch_length;
            return Some(Err(failure));
        }
        if self.step >= self.epoch_length {
            return None;
        }
        let mut parts = Vec::with_capacity(self.lengths.len());
        let mut size = None;
        for index in 0..self.lengths.len() {
            match self.next_part(index) {
                Ok(Some((part, items))) => {
                    size.get_or_insert(items);
                    parts.push(Some(part));
                }
                Ok(None) => parts.push(None),
                Err(error) => {
                    self.step = self.epoch_length;
                    return Some(Err(error));
                }
            }
        }
        self.step += 1;
        let size = size.unwrap_or(1);
        self.first_batch_size.get_or_insert(size);
        self.items_processed += size;
        Some((self.combined.assemble)(parts).ok_or_else(|| {
            combined_error(format!(
                "the combined loader's step {} is missing a loader's batch; this is a bug of burn-lightning",
                self.step - 1
            ))
        }))
    }
}

impl<T> DataLoaderIterator<T> for CombinedIter<'_, T> {
    fn progress(&self) -> Progress {
        let items_total = match self.first_batch_size {
            Some(size) => self.epoch_length * size,
            None => self.combined.loaders.iter().map(|loader| loader.num_items()).sum(),
        };
        Progress {
            // A finished epoch is complete, whatever the sizes of its last batches.
            items_processed: if self.step >= self.epoch_length {
                items_total
            } else {
                self.items_processed.min(items_total)
            },
            items_total,
            unit: Some(format!(
                "{FIRST_LOADER_ITEMS}{SHORTEST_LOADER}{}",
                self.lengths.iter().copied().min().unwrap_or(0)
            )),
        }
    }
}

impl<T> Drop for CombinedIter<'_, T> {
    /// Starts the passes a full epoch would have started and this one did not, so that the
    /// loaders' orders after this `iter()` are the same however far it went.
    fn drop(&mut self) {
        if self.lengths.is_empty() {
            return;
        }
        for index in 0..self.lengths.len() {
            while self.passes_started[index] < self.passes_per_epoch(index) {
                drop(self.combined.loaders[index].iter());
                self.passes_started[index] += 1;
            }
        }
    }
}
