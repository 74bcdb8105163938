//! Iterating a dataloader under a `limit_*_batches`, one batch ahead (to know which batch is the
//! last, as Lightning's prefetching fetcher does), learning each batch's size from the loader's
//! progress.

use super::Limit;
use crate::Error;
use crate::core::datamodule::Loader;
use crate::core::state::Loop;
use crate::data::combined::{FIRST_LOADER_ITEMS, SHORTEST_LOADER};
use burn::data::dataloader::DataLoaderIterator;

pub(crate) struct Batch<B> {
    pub batch: B,
    /// Items in the batch.
    pub size: usize,
    pub is_last: bool,
}

/// Panics of dataloader worker threads (burn names them `dataloader-<index>`), recorded by a
/// panic hook chained before the one in place: a dead worker ends burn's pass early without an
/// error, and the next pass fails on a closed channel, so the pass checks this instead.
mod worker_panics {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, Once, PoisonError};

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static LAST: Mutex<Option<String>> = Mutex::new(None);
    static INSTALL: Once = Once::new();

    /// Installs the hook (once per process) and returns how many worker panics there were.
    pub(super) fn watch() -> u64 {
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let thread = std::thread::current();
                if let Some(name) = thread.name().filter(|n| n.starts_with("dataloader-")) {
                    let message = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    let at = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    *LAST.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(format!("worker thread `{name}` panicked{at}: {message}"));
                    COUNT.fetch_add(1, Ordering::SeqCst);
                }
                previous(info);
            }));
        });
        count()
    }

    pub(super) fn count() -> u64 {
        COUNT.load(Ordering::SeqCst)
    }

    /// The latest worker panic, as a sentence.
    pub(super) fn last() -> String {
        LAST.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "a worker thread panicked".into())
    }
}

pub(crate) struct Batches<'a, B> {
    name: &'static str,
    /// The pass, as errors name it: `training`, `validation`, ...
    stage: &'static str,
    flag: &'static str,
    /// The profiler's name of fetching a batch, as Lightning's.
    next_phase: &'static str,
    iter: Box<dyn DataLoaderIterator<B> + 'a>,
    limit: Limit,
    /// The number of batches to run, once known (after the first batch for fractions).
    max: Option<usize>,
    total_items: usize,
    items_seen: usize,
    yielded: usize,
    ahead: Option<(B, usize)>,
    exhausted: bool,
    first_size: Option<usize>,
    /// A bound on top of the limit (the sanity check's `num_sanity_val_steps`).
    cap: usize,
    /// Dataloader worker panics in the process when this pass started.
    worker_panics: u64,
    /// The batches of the shortest loader of a combined loader.
    shortest_combined: Option<usize>,
    /// Why the loader ran out short of its items, once it did: the error of the next fetch.
    short: Option<String>,
}

/// The shortest loader's number of batches, told by a combined loader's progress unit.
fn combined_shortest(unit: &str) -> Option<usize> {
    unit.strip_prefix(FIRST_LOADER_ITEMS)?
        .strip_prefix(SHORTEST_LOADER)?
        .parse()
        .ok()
}

impl<'a, B> Batches<'a, B> {
    pub(crate) fn new(kind: Loop, loader: &'a Loader<B>, limit: Limit) -> Result<Self, Error> {
        let (name, flag) = (kind.dataloader_hook(), kind.limit_flag());
        let total_items = loader.num_items();
        if total_items == 0 {
            return Err(Error::EmptyDataloader { loader: name });
        }
        let max = match limit {
            Limit::Batches(n) => Some(n),
            Limit::All | Limit::Fraction(_) | Limit::Negative(_) => None,
        };
        let next_phase = match kind {
            Loop::Train => "[_TrainingEpochLoop].train_dataloader_next",
            Loop::Validation => "[_EvaluationLoop].val_next",
            Loop::Test => "[_EvaluationLoop].test_next",
            Loop::Predict => "[_PredictionLoop].predict_next",
        };
        let worker_panics = worker_panics::watch();
        let stage = match kind {
            Loop::Train => "training",
            Loop::Validation => "validation",
            Loop::Test => "test",
            Loop::Predict => "prediction",
        };
        Ok(Self {
            name,
            stage,
            flag,
            next_phase,
            worker_panics,
            iter: loader.iter(),
            limit,
            max,
            total_items,
            items_seen: 0,
            yielded: 0,
            ahead: None,
            exhausted: false,
            first_size: None,
            cap: usize::MAX,
            shortest_combined: None,
            short: None,
        })
    }

    /// Runs at most `cap` batches, whatever the limit allows.
    pub(crate) fn capped(mut self, cap: Option<usize>) -> Self {
        self.cap = cap.unwrap_or(usize::MAX);
        self
    }

    /// How many batches this pass runs at most, as far as known yet.
    fn bound(&self) -> Option<usize> {
        match self.max {
            Some(max) => Some(max.min(self.cap)),
            None => (self.cap != usize::MAX).then_some(self.cap),
        }
    }

    /// Batches in a full pass of the loader, estimated from the first batch's size.
    pub(crate) fn loader_batches(&self) -> Option<usize> {
        self.first_size.map(|first| self.total_items.div_ceil(first))
    }

    /// The number of batches this pass runs, once known.
    pub(crate) fn planned(&self) -> Option<usize> {
        let full = self.loader_batches()?;
        Some(self.bound().map_or(full, |m| m.min(full)))
    }

    fn fetch(&mut self) -> Result<Option<(B, usize)>, Error> {
        if self.exhausted {
            return Ok(None);
        }
        // Lightning times each fetch of a batch (`train_dataloader_next`): the fetch that finds
        // the loader exhausted is not counted.
        let span = tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = self.next_phase,
            discard = tracing::field::Empty);
        let next = {
            let _entered = span.enter();
            let next = self.iter.next();
            if next.is_none() {
                span.record(crate::profiler::DISCARD_FIELD, true);
            }
            next
        };
        match next {
            None => {
                self.exhausted = true;
                let progress = self.iter.progress();
                // The loader itself ran out short of its items: an iterator that stops early, or
                // a worker that ended without a recorded panic. Going on would end the epoch
                // early without a word. Found by the look-ahead, it fails the pass only when
                // the pass asks for the batch after (`next_batch`): a pass cut on purpose there
                // (`max_steps`, a stop) never does, and `limit_*_batches` never looks ahead.
                if progress.items_processed < progress.items_total {
                    // A worker that died lost its items (burn ends the pass early, silently, and
                    // fails the next one on a closed channel): the pass fails with its panic.
                    // Checked only here, where this loader came up short, so that a panic in
                    // another loader's worker (another trainer in the process) fails no healthy
                    // pass.
                    if worker_panics::count() != self.worker_panics {
                        return Err(Error::Dataloader {
                            loader: self.name,
                            message: format!(
                                "{} (the pass had read {} of its {} items); a panic in a worker thread is a bug of \
                                 the dataset or the batcher",
                                worker_panics::last(),
                                progress.items_processed,
                                self.total_items
                            ),
                        });
                    }
                    self.short = Some(format!(
                        "the {} pass ended after {} of its {} items, with no error from the loader (its iterator \
                         stopped early, or a worker thread ended without a panic); check the dataset and the \
                         loader's `num_items`, or cut epochs on purpose with `{}`",
                        self.stage, progress.items_processed, progress.items_total, self.flag
                    ));
                }
                Ok(None)
            }
            Some(Err(e)) => Err(Error::Dataloader {
                loader: self.name,
                message: e.to_string(),
            }),
            Some(Ok(batch)) => {
                let progress = self.iter.progress();
                // A combined loader counts the first loader's items and tells, at its first
                // batch, a total from which the epoch's number of batches follows.
                if let (None, Some(shortest)) = (self.first_size, progress.unit.as_deref().and_then(combined_shortest))
                {
                    self.total_items = progress.items_total;
                    self.shortest_combined = Some(shortest);
                }
                let processed = progress.items_processed;
                let size = processed.saturating_sub(self.items_seen).max(1);
                self.items_seen = processed.max(self.items_seen + 1);
                self.first_size.get_or_insert(size);
                Ok(Some((batch, size)))
            }
        }
    }

    pub(crate) fn next_batch(&mut self) -> Result<Option<Batch<B>>, Error> {
        // The batch boundary where a run stops on SIGINT or SIGTERM.
        if let Some(signal) = crate::loops::signals::received() {
            crate::loops::signals::reached_boundary();
            return Err(Error::Interrupted {
                signal,
                signal_name: crate::loops::signals::name(signal),
            });
        }
        if self.bound().is_some_and(|m| self.yielded >= m) {
            return Ok(None);
        }
        let current = match self.ahead.take() {
            Some(b) => Some(b),
            None => self.fetch()?,
        };
        let Some((batch, size)) = current else {
            return match self.short.take() {
                Some(message) => Err(Error::Dataloader {
                    loader: self.name,
                    message,
                }),
                None => Ok(None),
            };
        };
        self.yielded += 1;
        if let (Limit::Fraction(f), None) = (self.limit, self.max) {
            let full = self.loader_batches().unwrap_or(1);
            let n = (full as f64 * f) as usize;
            // Lightning applies the fraction to each loader of a combined loader: the epoch
            // length is the longest's (shortest's) share, but each share must be a batch (checked
            // first: the shortest's share is the smallest).
            if let Some(shortest) = self.shortest_combined.filter(|&s| ((s as f64) * f) as usize == 0) {
                return Err(Error::config(
                    self.flag,
                    format!(
                        "{f} of the {shortest} batches of the shortest loader of the combined `{}` is less than one \
                         batch (Lightning applies the fraction to each loader); raise it to at least {} or give a \
                         number of batches",
                        self.name,
                        1.0 / shortest as f64
                    ),
                ));
            }
            if n == 0 {
                return Err(Error::config(
                    self.flag,
                    format!(
                        "{f} of the {full} batches of `{}` is less than one batch; raise the fraction or give a number of batches",
                        self.name
                    ),
                ));
            }
            self.max = Some(n);
        }
        let is_last = if self.bound().is_some_and(|m| self.yielded >= m) {
            true
        } else {
            self.ahead = self.fetch()?;
            self.ahead.is_none()
        };
        Ok(Some(Batch { batch, size, is_last }))
    }
}

/// The batches `overfit_batches` trains and validates on, collected once from one pass of a
/// loader and replayed in the same order at every `iter()`.
///
/// Lightning turns shuffling off by swapping the loader's sampler for a sequential one. A
/// burn loader's shuffling is fixed when it is built and cannot be asked about, so the first
/// batches of one pass are kept instead: every epoch sees the same batches in the same order,
/// which is what overfitting needs (with a shuffled loader they are a random subset, not the
/// dataset's first items). The batches stay in memory (on the device) for the whole fit.
struct ReplayLoader<B> {
    /// Each batch with its number of items. A `Mutex` makes it `Sync` for batches that are only `Send`.
    batches: std::sync::Mutex<Vec<(B, usize)>>,
    /// The items of the original loader, so that [`Batches`] counts a fraction of the same full pass.
    num_items: usize,
}

struct ReplayIter<B> {
    batches: std::vec::IntoIter<(B, usize)>,
    items_processed: usize,
    items_total: usize,
}

impl<B> Iterator for ReplayIter<B> {
    type Item = Result<B, burn::data::dataset::DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (batch, size) = self.batches.next()?;
        self.items_processed += size;
        Some(Ok(batch))
    }
}

impl<B> DataLoaderIterator<B> for ReplayIter<B> {
    fn progress(&self) -> burn::data::dataloader::Progress {
        burn::data::dataloader::Progress {
            items_processed: self.items_processed,
            items_total: self.items_total,
            unit: None,
        }
    }
}

impl<B: Clone + Send + 'static> ReplayLoader<B> {
    fn kept(&self) -> Vec<(B, usize)> {
        self.batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl<B: Clone + Send + 'static> burn::data::dataloader::DataLoader<B> for ReplayLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<B> + 'a> {
        let kept = self.kept();
        Box::new(ReplayIter {
            // The items replayed (a pass ends after them, as planned).
            items_total: kept.iter().map(|(_, size)| size).sum(),
            batches: kept.into_iter(),
            items_processed: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.num_items
    }

    /// The batches were made on the loop's device already.
    fn to_device(&self, _device: &crate::Device) -> Loader<B> {
        std::sync::Arc::new(ReplayLoader {
            batches: std::sync::Mutex::new(self.kept()),
            num_items: self.num_items,
        })
    }

    fn slice(&self, start: usize, end: usize) -> Loader<B> {
        let kept = self.kept();
        let end = end.min(kept.len());
        let batches = kept[start.min(end)..end].to_vec();
        std::sync::Arc::new(ReplayLoader {
            num_items: batches.iter().map(|(_, size)| size).sum(),
            batches: std::sync::Mutex::new(batches),
        })
    }
}

/// `overfit_batches`: the batches of `loader` that `limit` (the `overfit_batches` value) keeps,
/// collected once from one pass and replayed at every epoch. See [`ReplayLoader`].
pub(crate) fn overfit_replay<B: Clone + Send + 'static>(
    kind: Loop,
    loader: &Loader<B>,
    limit: Limit,
) -> Result<Loader<B>, Error> {
    let mut batches = Batches::new(kind, loader, limit)?;
    // Errors about the limit name `overfit_batches`, the flag the user set.
    batches.flag = "overfit_batches";
    let mut kept = Vec::new();
    while let Some(batch) = batches.next_batch()? {
        kept.push((batch.batch, batch.size));
    }
    Ok(std::sync::Arc::new(ReplayLoader {
        batches: std::sync::Mutex::new(kept),
        num_items: loader.num_items(),
    }))
}
