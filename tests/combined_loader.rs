//! `CombinedLoader`: each mode's epoch lengths and batch order against PyTorch Lightning's
//! (`tests/fixtures/combined_loader.json`, from `scripts/combined_loader_fixture.sh`), with and
//! without `limit_train_batches`; a fit stopped inside an epoch and resumed sees the batches of an
//! uninterrupted one in every mode; sharding; errors for what Lightning refuses.

mod common;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder, DataLoaderIterator, Progress};
use burn::data::dataset::{DatasetError, InMemDataset};
use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::JsonValue;
use burn_lightning::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One training batch as the tests compare it: each loader's items (`None` for a loader that
/// ran out), in the loaders' order.
type Rows = Vec<Option<Vec<usize>>>;

const BATCH_SIZE: usize = 2;

#[derive(Clone, Debug)]
struct IndexBatcher;

impl Batcher<usize, Vec<usize>> for IndexBatcher {
    fn batch(&self, items: Vec<usize>, _device: &Device) -> Vec<usize> {
        items
    }
}

/// Items `0..items` in batches of two, shuffled every pass when `seed` is given.
fn index_loader(items: usize, seed: Option<u64>) -> Loader<Vec<usize>> {
    let builder = DataLoaderBuilder::new(IndexBatcher).batch_size(BATCH_SIZE);
    let builder = match seed {
        Some(seed) => builder.shuffle(seed),
        None => builder,
    };
    builder.build(InMemDataset::new((0..items).collect::<Vec<_>>()))
}

/// A loader of tuples seen as [`Rows`], so that one module reads every combination.
struct AsRows<T> {
    inner: Loader<T>,
    to_rows: fn(T) -> Rows,
}

struct AsRowsIter<'a, T> {
    inner: Box<dyn DataLoaderIterator<T> + 'a>,
    to_rows: fn(T) -> Rows,
}

impl<T> Iterator for AsRowsIter<'_, T> {
    type Item = Result<Rows, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.inner.next()?.map(self.to_rows))
    }
}

impl<T> DataLoaderIterator<Rows> for AsRowsIter<'_, T> {
    fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

impl<T: Send + 'static> DataLoader<Rows> for AsRows<T> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<Rows> + 'a> {
        Box::new(AsRowsIter {
            inner: self.inner.iter(),
            to_rows: self.to_rows,
        })
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Loader<Rows> {
        as_rows(self.inner.to_device(device), self.to_rows)
    }

    fn slice(&self, start: usize, end: usize) -> Loader<Rows> {
        as_rows(self.inner.slice(start, end), self.to_rows)
    }
}

fn as_rows<T: Send + 'static>(inner: Loader<T>, to_rows: fn(T) -> Rows) -> Loader<Rows> {
    Arc::new(AsRows { inner, to_rows })
}

fn mode(name: &str) -> CombinedMode {
    match name {
        "max_size_cycle" => CombinedMode::MaxSizeCycle,
        "min_size" => CombinedMode::MinSize,
        "max_size" => CombinedMode::MaxSize,
        "sequential" => CombinedMode::Sequential,
        other => panic!("unknown mode {other}"),
    }
}

/// Index loaders of `sizes` items combined in `mode`; loader `i` shuffled with `seed + i`.
fn combined(sizes: &[usize], mode: CombinedMode, seed: Option<u64>) -> Result<Loader<Rows>, Error> {
    let loader = |i: usize| index_loader(sizes[i], seed.map(|s| s + i as u64));
    let max_size = mode == CombinedMode::MaxSize;
    Ok(match (sizes.len(), max_size) {
        (2, true) => as_rows(CombinedLoader::max_size((loader(0), loader(1)))?, |(a, b)| vec![a, b]),
        (2, false) => as_rows(CombinedLoader::new((loader(0), loader(1)), mode)?, |(a, b)| {
            vec![Some(a), Some(b)]
        }),
        (3, true) => as_rows(
            CombinedLoader::max_size((loader(0), loader(1), loader(2)))?,
            |(a, b, c)| vec![a, b, c],
        ),
        (3, false) => as_rows(
            CombinedLoader::new((loader(0), loader(1), loader(2)), mode)?,
            |(a, b, c)| vec![Some(a), Some(b), Some(c)],
        ),
        (n, _) => panic!("no combination of {n} loaders in these tests"),
    })
}

/// Records the batches it trains on.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Reader {
    layer: Linear,
    #[module(skip)]
    seen: Arc<Mutex<Vec<Rows>>>,
}

impl Reader {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(1, 1).init(&Device::default()),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Rows> {
        self.seen.lock().unwrap().clone()
    }
}

#[lightning_module]
impl Reader {
    #[hook]
    fn training_step(&self, batch: Rows, _batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        self.seen.lock().unwrap().push(batch);
        self.layer.weight.val().powi_scalar(2).sum()
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

fn builder(root: &Path, epochs: usize) -> TrainerBuilder<Reader> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(epochs)
}

fn training(loader: Loader<Rows>) -> Loaders<Rows> {
    Loaders::fit(loader, Option::<Loader<Rows>>::None)
}

fn rows_of(value: &JsonValue) -> Vec<Rows> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn every_mode_reads_the_batches_lightning_reads_with_and_without_limits() {
    let fixture = common::fixture::load("combined_loader.json");
    let cases = fixture["cases"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut refused = 0;
    for (index, case) in cases.iter().enumerate() {
        let sizes: Vec<usize> = serde_json::from_value(case["sizes"].clone()).unwrap();
        let limit = &case["limit"];
        let what = format!(
            "{} loaders of {sizes:?} in {} with limit {limit}",
            case["loaders"], case["mode"]
        );
        let mut trainer = builder(&dir.path().join(index.to_string()), 1);
        if let Some(n) = limit.as_u64() {
            trainer = trainer.limit_train_batches(n as usize);
        } else if let Some(f) = limit.as_f64() {
            trainer = trainer.limit_train_batches(f);
        }
        let mut trainer = trainer.build().unwrap();
        let loader = combined(&sizes, mode(case["mode"].as_str().unwrap()), None).unwrap();
        let fitted = trainer.fit(Reader::new(), training(loader));
        if let Some(lightning_error) = case["error"].as_str() {
            let error = fitted
                .err()
                .unwrap_or_else(|| panic!("{what}: Lightning refuses it ({lightning_error})"));
            let message = error.error.to_string();
            assert!(
                message.contains("limit_train_batches") && message.contains("at least"),
                "{what}: {message}"
            );
            refused += 1;
            continue;
        }
        let model = fitted.unwrap_or_else(|e| panic!("{what}: {}", e.error));
        let expected = rows_of(&case["batches"]);
        assert_eq!(model.seen(), expected, "{what}");
        assert_eq!(
            model.seen().len() as u64,
            case["epoch_length"].as_u64().unwrap(),
            "{what}"
        );
        assert_eq!(trainer.global_step(), expected.len(), "{what}");
    }
    assert!(
        refused > 0 && refused < cases.len(),
        "the fixture has cases of both kinds"
    );
}

#[test]
fn sequential_and_max_size_through_new_are_errors_saying_what_to_use() {
    let fixture = common::fixture::load("combined_loader.json");
    let sequential = &fixture["sequential"];
    // Lightning's fit refuses it too.
    assert!(sequential["fit_error"].as_str().unwrap().contains("sequential"));
    let sizes: Vec<usize> = serde_json::from_value(sequential["sizes"].clone()).unwrap();
    let message = combined(&sizes, CombinedMode::Sequential, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("sequential") && message.contains("validation"),
        "{message}"
    );
    let message = CombinedLoader::new((index_loader(4, None), index_loader(6, None)), CombinedMode::MaxSize)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("CombinedLoader::max_size"), "{message}");
}

#[test]
fn an_empty_loader_is_an_error_naming_it() {
    let message = CombinedLoader::new((index_loader(4, None), index_loader(0, None)), CombinedMode::MinSize)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("loader 1") && message.contains("no items"),
        "{message}"
    );
}

#[test]
fn an_iter_dropped_at_once_leaves_the_loaders_where_a_full_epoch_leaves_them() {
    for mode in [CombinedMode::MaxSizeCycle, CombinedMode::MinSize, CombinedMode::MaxSize] {
        let epoch = |drop_at_once: bool| {
            let loader = combined(&[5, 13], mode, Some(3)).unwrap();
            let first = loader.iter();
            let first: Vec<Rows> = if drop_at_once {
                drop(first);
                Vec::new()
            } else {
                first.map(|batch| batch.unwrap()).collect()
            };
            let second: Vec<Rows> = loader.iter().map(|batch| batch.unwrap()).collect();
            (first, second)
        };
        let (full_first, after_full) = epoch(false);
        let (_, after_dropped) = epoch(true);
        assert_eq!(after_full, after_dropped, "{mode}");
        assert_ne!(full_first, after_full, "{mode}: each epoch draws new orders");
        // 3 and 7 batches: the short loader's passes inside one epoch are new orders too.
        if mode == CombinedMode::MaxSizeCycle {
            let short: Vec<Vec<usize>> = full_first.iter().map(|rows| rows[0].clone().unwrap()).collect();
            assert_eq!(full_first.len(), 7);
            assert_ne!(
                short[0..3].concat(),
                short[3..6].concat(),
                "a cycled pass is shuffled again"
            );
        }
    }
}

#[test]
fn slicing_shards_every_loader_in_proportion() {
    let loader = combined(&[8, 16], CombinedMode::MaxSize, None).unwrap();
    assert_eq!(loader.num_items(), 24);
    let shard: Vec<Rows> = loader.slice(12, 24).iter().map(|b| b.unwrap()).collect();
    assert_eq!(
        shard,
        vec![
            vec![Some(vec![4, 5]), Some(vec![8, 9])],
            vec![Some(vec![6, 7]), Some(vec![10, 11])],
            vec![None, Some(vec![12, 13])],
            vec![None, Some(vec![14, 15])],
        ]
    );
    // A shard that leaves a loader without items fails its pass with an error.
    let tiny = combined(&[1, 16], CombinedMode::MinSize, None).unwrap();
    let error = tiny.slice(0, 8).iter().next().unwrap().err().unwrap().to_string();
    assert!(error.contains("loader 0") && error.contains("fewer devices"), "{error}");
}

#[test]
fn the_epoch_length_and_batch_size_follow_from_the_progress() {
    let loader = combined(&[5, 13], CombinedMode::MaxSizeCycle, None).unwrap();
    let mut iter = loader.iter();
    iter.next().unwrap().unwrap();
    let progress = iter.progress();
    // 7 batches of the longest loader; sizes are the first loader's (2 items).
    assert_eq!((progress.items_processed, progress.items_total), (2, 7 * 2));
    let rest = iter.by_ref().count();
    assert_eq!(rest, 6);
    assert!(iter.progress().is_completed());
}

fn checkpoint_at_step(dir: &Path, step: usize) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("step={step}.ckpt")))
        .unwrap_or_else(|| panic!("no checkpoint of step {step} in {}", dir.display()))
}

#[test]
fn a_fit_resumed_inside_an_epoch_reads_the_batches_of_an_uninterrupted_one_in_every_mode() {
    const EPOCHS: usize = 3;
    let sizes = [5, 13, 7];
    for mode in [CombinedMode::MaxSizeCycle, CombinedMode::MinSize, CombinedMode::MaxSize] {
        // Without a limit, and with one that ends each epoch before the longest loader does.
        for limit in [None, Some(5)] {
            let what = format!("{mode}, limit {limit:?}");
            let dir = tempfile::tempdir().unwrap();
            let limited = |b: TrainerBuilder<Reader>| match limit {
                Some(n) => b.limit_train_batches(n),
                None => b,
            };
            let mut full = limited(builder(&dir.path().join("full"), EPOCHS))
                .callback(ModelCheckpoint::new().every_n_train_steps(1).save_top_k(-1))
                .build()
                .unwrap();
            let model = full
                .fit(Reader::new(), training(combined(&sizes, mode, Some(11)).unwrap()))
                .unwrap();
            let expected = model.seen();
            let per_epoch = expected.len() / EPOCHS;
            assert_eq!(expected.len(), EPOCHS * per_epoch, "{what}");
            let checkpoints = dir.path().join("full/lightning_logs/version_0/checkpoints");
            // Inside the first epoch, inside the second, and at the end of the second.
            for step in [2, per_epoch + 3, 2 * per_epoch] {
                let mut resumed = limited(builder(&dir.path().join(format!("from_{step}")), EPOCHS))
                    .build()
                    .unwrap();
                let model = resumed
                    .fit_from(
                        Reader::new(),
                        training(combined(&sizes, mode, Some(11)).unwrap()),
                        checkpoint_at_step(&checkpoints, step),
                    )
                    .unwrap();
                assert_eq!(model.seen(), expected[step..], "{what}: resumed from step {step}");
            }
        }
    }
}

#[test]
fn data_parallel_ranks_each_read_their_share_of_every_loader() {
    let dir = tempfile::tempdir().unwrap();
    let model = Reader::new();
    let seen = model.seen.clone();
    let mut trainer = builder(dir.path(), 1)
        .enable_checkpointing(false)
        .accelerator("cpu")
        .devices(2)
        .build()
        .unwrap();
    // Items 0..8 and 0..16: each rank reads 4 of the first (2 batches, cycled) and 8 of the
    // second (4 batches), so an epoch is 4 steps.
    let loader = combined(&[8, 16], CombinedMode::MaxSizeCycle, None).unwrap();
    trainer.fit(model, training(loader)).unwrap();
    assert_eq!(trainer.global_step(), 4);
    let seen = seen.lock().unwrap().clone();
    let items_of = |loader: usize| {
        let mut items: Vec<usize> = seen.iter().flat_map(|rows| rows[loader].clone().unwrap()).collect();
        items.sort();
        items
    };
    // Every item of the short loader twice (each rank cycles its share once), the long one's once.
    assert_eq!(items_of(0), (0..8).flat_map(|i| [i, i]).collect::<Vec<_>>());
    assert_eq!(items_of(1), (0..16).collect::<Vec<_>>());
}
