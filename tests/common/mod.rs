//! Shared by the integration tests: a tiny dataset and a recorder of hook calls.
#![allow(dead_code)]

pub mod fixture;
pub mod recording;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn_lightning::prelude::*;
use std::sync::{Arc, Mutex};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A regression batch: inputs `[n, 32]`, targets `[n, 2]`.
#[derive(Clone, Debug)]
pub struct Pair {
    pub x: Tensor<2>,
    pub y: Tensor<2>,
}

#[derive(Clone, Debug)]
struct PairBatcher;

impl Batcher<(Vec<f32>, Vec<f32>), Pair> for PairBatcher {
    fn batch(&self, items: Vec<(Vec<f32>, Vec<f32>)>, device: &Device) -> Pair {
        let n = items.len();
        let (xs, ys): (Vec<Vec<f32>>, Vec<Vec<f32>>) = items.into_iter().unzip();
        let x = TensorData::new(xs.concat(), [n, 32]);
        let y = TensorData::new(ys.concat(), [n, 2]);
        Pair {
            x: Tensor::from_data(x, device),
            y: Tensor::from_data(y, device),
        }
    }
}

/// `items` pairs where `y` is a fixed linear function of `x`, deterministic.
pub fn pair_loader(items: usize, batch_size: usize) -> Loader<Pair> {
    DataLoaderBuilder::new(PairBatcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(pairs(items)))
}

/// The pairs of [`pair_loader`], shuffled every epoch by a generator seeded with `seed`.
pub fn shuffled_pair_loader(items: usize, batch_size: usize, seed: u64) -> Loader<Pair> {
    DataLoaderBuilder::new(PairBatcher)
        .batch_size(batch_size)
        .shuffle(seed)
        .build(InMemDataset::new(pairs(items)))
}

/// The pairs of [`pair_loader`] with the indices `order`, in that order, unshuffled.
pub fn pair_loader_in_order(order: &[usize], batch_size: usize) -> Loader<Pair> {
    let all = pairs(order.iter().copied().max().map_or(0, |max| max + 1));
    let items = order.iter().map(|&i| all[i].clone()).collect();
    DataLoaderBuilder::new(PairBatcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(items))
}

/// The index of the pair of [`pair_loader`] whose input starts with `first` (unique below 97
/// items).
pub fn pair_index(first: f32) -> usize {
    (0..97)
        .min_by_key(|&i| ((((i * 31) % 97) as f32 / 97.0 - 0.5 - first).abs() * 1e6) as i64)
        .expect("97 candidates")
}

/// The pairs of [`pair_loader`], loaded by `workers` threads, from a dataset whose item
/// `panic_at` panics when read (a bug of a dataset).
pub fn pair_loader_with_workers(items: usize, batch_size: usize, workers: usize, panic_at: usize) -> Loader<Pair> {
    #[derive(Clone)]
    struct Panicking(Arc<Vec<(Vec<f32>, Vec<f32>)>>, usize);
    impl burn::data::dataset::Dataset<(Vec<f32>, Vec<f32>)> for Panicking {
        fn get(&self, index: usize) -> Result<(Vec<f32>, Vec<f32>), burn::data::dataset::DatasetError> {
            assert_ne!(index, self.1, "item {index} is corrupt");
            Ok(self.0[index].clone())
        }
        fn len(&self) -> usize {
            self.0.len()
        }
    }
    DataLoaderBuilder::new(PairBatcher)
        .batch_size(batch_size)
        .num_workers(workers)
        .build(Panicking(Arc::new(pairs(items)), panic_at))
}

fn pairs(items: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    (0..items)
        .map(|i| {
            let x: Vec<f32> = (0..32)
                .map(|j| (((i * 31 + j * 17) % 97) as f32 / 97.0) - 0.5)
                .collect();
            let y = vec![x.iter().take(16).sum::<f32>(), x.iter().skip(16).sum::<f32>() * 0.5];
            (x, y)
        })
        .collect()
}

/// Records hook spans of target `burn_lightning::hooks` as `hook`, `Callback.hook` (only for the
/// callback named `callback`) or `DM.hook`.
#[derive(Clone)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<String>>>,
    callback: &'static str,
}

impl Recorder {
    pub fn new(callback: &'static str) -> Self {
        Self {
            calls: Arc::default(),
            callback,
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    /// Runs `f` with this recorder as the thread's subscriber.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, f)
    }
}

#[derive(Default)]
struct Fields {
    hook: String,
    by: String,
    callback: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "hook" => self.hook = value.to_string(),
            "by" => self.by = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "callback" => self.callback = format!("{value:?}"),
            "hook" => self.hook = format!("{value:?}").trim_matches('"').to_string(),
            "by" => self.by = format!("{value:?}").trim_matches('"').to_string(),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().target() != "burn_lightning::hooks" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let entry = match fields.by.as_str() {
            "module" => fields.hook,
            "callback" if fields.callback == self.callback => format!("Callback.{}", fields.hook),
            "datamodule" => format!("DM.{}", fields.hook),
            _ => return,
        };
        self.calls.lock().unwrap().push(entry);
    }
}

/// The values of a float tensor, as `f32`.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a float tensor")
}

/// A linear layer's weight then bias, flattened: what tests compare between two runs.
pub fn linear_weights(layer: &burn::nn::Linear) -> Vec<f32> {
    let mut weights = values(layer.weight.val());
    weights.extend(values(layer.bias.as_ref().expect("a bias").val()));
    weights
}

/// A one-element tensor holding `value`, on `device` (for logging a tensor instead of a number).
pub fn scalar_tensor(value: f64, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(vec![value as f32], [1]), device)
}

/// Every file under `dir`, recursively, as paths relative to `dir`, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The names of the files in `dir` (not recursive), sorted; empty when `dir` does not exist.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs `f` and returns what it returned with the warnings the trainer gave meanwhile (tracing
/// events at WARN level on this thread), in order.
pub fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    events_of(tracing::Level::WARN, f)
}

/// Runs `f` and returns what it returned with the messages of the tracing events at `level` on
/// this thread meanwhile, in order.
pub fn events_of<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, Vec<String>) {
    #[derive(Clone)]
    struct Warnings(Arc<Mutex<Vec<String>>>, tracing::Level);

    impl<S: Subscriber> Layer<S> for Warnings {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            if *event.metadata().level() == self.1 {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0.lock().unwrap().push(message.0);
            }
        }
    }

    let warnings = Warnings(Arc::default(), level);
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let output = tracing::subscriber::with_default(subscriber, f);
    let warnings = std::mem::take(&mut *warnings.0.lock().unwrap());
    (output, warnings)
}
