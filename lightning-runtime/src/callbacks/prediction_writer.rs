//! [`PredictionWriter`]: Lightning's `BasePredictionWriter`, a callback that writes predictions
//! as `predict` makes them (each batch, the whole epoch, or both) instead of keeping them, with
//! [`TrainerBuilder::return_predictions(false)`](crate::TrainerBuilder::return_predictions).
//!
//! burn's loaders say nothing about which dataset items a batch holds, so `batch_indices` are
//! positions in the loader's order: the batch after one of 32 items starts at 32. Without
//! shuffling these are the dataset's indices; with a shuffling loader they are the order the
//! loader drew the items in, not the dataset's indices (Lightning's are the sampler's indices).

use crate::Error;
use crate::hooks::{Callback, LightningModule};
use std::any::Any;
use std::str::FromStr;

/// When a [`PredictionWriter`] writes (Lightning's `write_interval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteInterval {
    /// After each batch: [`WritePredictions::write_on_batch_end`] (Lightning's default).
    #[default]
    Batch,
    /// Once, at the end of the epoch: [`WritePredictions::write_on_epoch_end`] with every
    /// prediction (which `predict` then keeps until the epoch ends, whatever
    /// `return_predictions` says, as Lightning does).
    Epoch,
    /// Both.
    BatchAndEpoch,
}

impl WriteInterval {
    /// Whether it writes after each batch.
    pub fn on_batch(self) -> bool {
        matches!(self, WriteInterval::Batch | WriteInterval::BatchAndEpoch)
    }

    /// Whether it writes at the end of the epoch.
    pub fn on_epoch(self) -> bool {
        matches!(self, WriteInterval::Epoch | WriteInterval::BatchAndEpoch)
    }
}

impl FromStr for WriteInterval {
    type Err = Error;

    /// Lightning's names: `batch`, `epoch`, `batch_and_epoch`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "batch" => Ok(WriteInterval::Batch),
            "epoch" => Ok(WriteInterval::Epoch),
            "batch_and_epoch" => Ok(WriteInterval::BatchAndEpoch),
            other => Err(Error::config(
                "write_interval",
                format!("`{other}`: write `batch`, `epoch` or `batch_and_epoch`"),
            )),
        }
    }
}

/// What a [`PredictionWriter`] does with the predictions: implement the method of its
/// [`WriteInterval`] (Lightning's `write_on_batch_end` / `write_on_epoch_end`). The one not
/// implemented, if the interval asks for it, is an error naming it.
pub trait WritePredictions<M: LightningModule>: Send + Any {
    /// One batch's prediction, with the positions of the batch's items in its loader's order
    /// (`batch_indices`, see the [module](self) on shuffling), the batch, its index and its
    /// dataloader's.
    #[allow(unused_variables)]
    fn write_on_batch_end(
        &mut self,
        module: &M,
        prediction: &M::Prediction,
        batch_indices: &[usize],
        batch: &M::PredictBatch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<(), Error> {
        Err(Error::config(
            "write_interval",
            "this PredictionWriter writes after each batch, but its writer does not implement \
             `write_on_batch_end`: implement it, or choose `WriteInterval::Epoch`",
        ))
    }

    /// Every prediction of the epoch, per dataloader (`predictions[dataloader_idx][batch]`), and
    /// the positions of each batch's items (`batch_indices[dataloader_idx][batch]`).
    #[allow(unused_variables)]
    fn write_on_epoch_end(
        &mut self,
        module: &M,
        predictions: &[Vec<M::Prediction>],
        batch_indices: &[Vec<Vec<usize>>],
    ) -> Result<(), Error> {
        Err(Error::config(
            "write_interval",
            "this PredictionWriter writes at the end of the epoch, but its writer does not implement \
             `write_on_epoch_end`: implement it, or choose `WriteInterval::Batch`",
        ))
    }
}

/// Lightning's `BasePredictionWriter`: a callback that hands `predict`'s predictions to a
/// [`WritePredictions`] as they are made. With `return_predictions(false)` on the trainer,
/// `predict` then keeps none of them (with a batch interval), so a prediction run over more data
/// than fits in memory writes as it goes.
///
/// ```no_run
/// use burn_lightning_runtime::{Error, LightningModule, PredictionWriter, Trainer, WriteInterval, WritePredictions};
///
/// /// Writes `position,value` lines.
/// struct Lines(std::fs::File);
///
/// impl<M: LightningModule<Prediction = Vec<f32>>> WritePredictions<M> for Lines {
///     fn write_on_batch_end(&mut self, _: &M, prediction: &Vec<f32>, indices: &[usize],
///         _: &M::PredictBatch, _: usize, _: usize) -> Result<(), Error> {
///         use std::io::Write;
///         for (index, value) in indices.iter().zip(prediction) {
///             writeln!(self.0, "{index},{value}").map_err(Error::user)?;
///         }
///         Ok(())
///     }
/// }
/// # fn run<M: LightningModule<Prediction = Vec<f32>>>() -> Result<(), Error> {
/// let file = std::fs::File::create("predictions.csv").map_err(Error::user)?;
/// let trainer = Trainer::<M>::builder()
///     .callback(PredictionWriter::new(Lines(file), WriteInterval::Batch))
///     .return_predictions(false)
///     .build()?;
/// # Ok(()) }
/// ```
///
/// Where it differs from Lightning: the loop calls the writers just before the
/// `on_predict_batch_end` (`on_predict_epoch_end`) hooks of the callbacks and the module, not at
/// the writer's place among the callbacks; and `batch_indices` are positions in the loader's
/// order (see the [module](self)).
pub struct PredictionWriter<M: LightningModule> {
    writer: Box<dyn WritePredictions<M>>,
    interval: WriteInterval,
}

impl<M: LightningModule> PredictionWriter<M> {
    /// A callback that gives the predictions to `writer` at `interval`.
    pub fn new(writer: impl WritePredictions<M>, interval: WriteInterval) -> Self {
        Self {
            writer: Box::new(writer),
            interval,
        }
    }

    /// When it writes.
    pub fn interval(&self) -> WriteInterval {
        self.interval
    }

    /// The writer, as its type `W` (to read what it kept after `predict`); `None` for another
    /// type.
    pub fn writer<W: WritePredictions<M>>(&self) -> Option<&W> {
        let writer: &dyn Any = &*self.writer;
        writer.downcast_ref()
    }

    /// The writer, to write one batch (the predict loop calls it).
    pub(crate) fn write_batch(
        &mut self,
        module: &M,
        prediction: &M::Prediction,
        batch_indices: &[usize],
        batch: &M::PredictBatch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<(), Error> {
        if !self.interval.on_batch() {
            return Ok(());
        }
        self.writer
            .write_on_batch_end(module, prediction, batch_indices, batch, batch_idx, dataloader_idx)
    }

    /// The writer, to write the epoch (the predict loop calls it).
    pub(crate) fn write_epoch(
        &mut self,
        module: &M,
        predictions: &[Vec<M::Prediction>],
        batch_indices: &[Vec<Vec<usize>>],
    ) -> Result<(), Error> {
        if !self.interval.on_epoch() {
            return Ok(());
        }
        self.writer.write_on_epoch_end(module, predictions, batch_indices)
    }
}

impl<M: LightningModule> std::fmt::Debug for PredictionWriter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionWriter")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

// The predict loop finds writers among the callbacks by their type and calls them itself, with
// the batch positions only it knows: no hook of its own runs.
impl<M: LightningModule> Callback<M> for PredictionWriter<M> {}
