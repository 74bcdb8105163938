//! Data-parallel training on several devices in one process (`devices(N)`, `strategy("ddp")`),
//! on the CPU: N replicas on the one flex device, which checks the arithmetic of data
//! parallelism (shards, averaged gradients, one optimizer step, rank-zero hooks) exactly.
//! Every module starts from constant weights, so no test draws from the shared device RNG.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use burn_lightning::{CsvLogger, Reduce, TrainerConfig};
use common::{Pair, file_names, pair_index, pair_loader, pair_loader_in_order, values};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

impl CastFloats for Pair {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        Pair {
            x: self.x.cast_floats(dtype),
            y: self.y.cast_floats(dtype),
        }
    }
}

/// The items each `training_step` saw: `(global_rank, item index)`.
type Seen = Arc<Mutex<Vec<(usize, usize)>>>;

/// A linear regressor (mean squared error) with constant initial weights that logs its rank.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Regressor {
    layer: Linear,
    #[module(skip)]
    seen: Seen,
}

impl Regressor {
    fn new() -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
            seen: Seen::default(),
        }
    }

    fn weights(&self) -> Vec<f32> {
        common::linear_weights(&self.layer)
    }
}

#[lightning_module]
impl Regressor {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let rank = cx.global_rank;
        let items = values(batch.x.clone());
        self.seen
            .lock()
            .unwrap()
            .extend(items.chunks(32).map(|row| (rank, pair_index(row[0]))));
        // Under `*-mixed` the step computes in half precision, the loss in `f32` (as torch's
        // autocast computes `mse_loss`); under `32-true` the casts change nothing.
        let batch = cx.cast_input(batch);
        let prediction = self.layer.forward(batch.x).cast(FloatDType::F32);
        let loss = (prediction - batch.y.cast(FloatDType::F32)).powi_scalar(2).mean();
        cx.log("rank", rank as f64);
        cx.log("world_size", cx.world_size as f64);
        cx.log_with("rank_mean", rank as f64, LogOptions::new().sync_dist(true));
        cx.log_with(
            "rank_max",
            rank as f64,
            LogOptions::new().sync_dist(true).reduce(Reduce::Max),
        );
        cx.log_with("loss", &loss, LogOptions::new().sync_dist(true));
        loss
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

fn builder(root: &Path, devices: usize) -> TrainerBuilder<Regressor> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .accelerator("cpu")
        .devices(devices)
        .max_epochs(1)
}

/// Fits one epoch; returns the trained module, `global_step` and the trainer.
fn fit(builder: TrainerBuilder<Regressor>, loader: Loader<Pair>) -> (Regressor, Trainer<Regressor>) {
    let mut trainer = builder.build().unwrap();
    let model = trainer.fit(Regressor::new(), Loaders::fit(loader, None)).unwrap();
    (model, trainer)
}

/// The order in which one device sees, in batches of `ranks * per_rank`, the items that
/// `ranks` replicas see in batches of `per_rank` each: every global batch is the union of the
/// ranks' batches of that step (rank r's shard is the r-th contiguous `items / ranks` items).
fn global_order(items: usize, ranks: usize, per_rank: usize) -> Vec<usize> {
    let shard = items / ranks;
    (0..shard / per_rank)
        .flat_map(|step| {
            (0..ranks).flat_map(move |rank| (0..per_rank).map(move |i| rank * shard + step * per_rank + i))
        })
        .collect()
}

fn assert_close(replicated: &[f32], single: &[f32]) {
    assert_eq!(replicated.len(), single.len());
    for (r, s) in replicated.iter().zip(single) {
        assert!((r - s).abs() <= 1e-5, "replicated {r} vs one device {s}");
    }
}

/// Two replicas with batches of 8 against one device with batches of 16 made of the same items:
/// one epoch (3 steps) gives the same weights to 1e-5. Each replica's loss is the mean over its
/// 8 items, so the mean of the two replicas' gradients is the gradient of the mean over the 16:
/// the one-device step. Summing the gradients instead of averaging them would double every
/// update (the learning rate is 0.1, the weights move by far more than 1e-5), and the weights
/// after the first step would already differ; so would each replica stepping on its own.
#[test]
fn two_replicas_train_as_one_device_on_the_same_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (replicated, trainer) = fit(builder(dir.path(), 2), pair_loader(48, 8));
    assert_eq!(trainer.global_step(), 3, "one optimizer step per global batch");
    let (single, trainer) = fit(
        builder(dir.path(), 1),
        pair_loader_in_order(&global_order(48, 2, 8), 16),
    );
    assert_eq!(trainer.global_step(), 3);
    assert_ne!(
        single.weights(),
        Regressor::new().weights(),
        "the steps must move the weights"
    );
    assert_close(&replicated.weights(), &single.weights());
}

/// With `strategy("ddp")` spelled out, three replicas and accumulation over 2 batches: 2 steps
/// of 24 items, as one device with batches of 24.
#[test]
fn replicas_accumulate_as_one_device_with_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (replicated, trainer) = fit(
        builder(dir.path(), 3).strategy("ddp").accumulate_grad_batches(2),
        pair_loader(48, 4),
    );
    assert_eq!(trainer.global_step(), 2);
    let (single, _) = fit(
        builder(dir.path(), 1),
        pair_loader_in_order(&global_order(48, 3, 8), 24),
    );
    assert_close(&replicated.weights(), &single.weights());
}

/// Records what a callback sees: the gradient norm at each `on_before_optimizer_step`, and the
/// number of `on_train_batch_end` calls.
#[derive(Clone, Default)]
struct Watcher {
    norms: Arc<Mutex<Vec<f64>>>,
    batch_ends: Arc<Mutex<usize>>,
}

impl Callback<Regressor> for Watcher {
    fn on_before_optimizer_step(
        &mut self,
        module: &mut Regressor,
        _optimizer: &Optimizer,
        grads: &Gradients,
        _cx: &mut StepContext<'_>,
    ) {
        self.norms.lock().unwrap().push(grads.norm(module));
    }
    fn on_train_batch_end(
        &mut self,
        _module: &mut Regressor,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        *self.batch_ends.lock().unwrap() += 1;
    }
}

/// Callbacks run once per global step, on rank zero, and the optimization hooks see the
/// averaged gradients: those of the global batch on one device.
#[test]
fn callbacks_run_once_per_global_step_and_see_the_averaged_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let run = |devices, loader| {
        let watcher = Watcher::default();
        fit(builder(dir.path(), devices).callback(watcher.clone()), loader);
        let norms = watcher.norms.lock().unwrap().clone();
        let batch_ends = *watcher.batch_ends.lock().unwrap();
        (norms, batch_ends)
    };
    let (replicated, batch_ends) = run(2, pair_loader(48, 8));
    assert_eq!((replicated.len(), batch_ends), (3, 3), "once per global step");
    let (single, _) = run(1, pair_loader_in_order(&global_order(48, 2, 8), 16));
    for (r, s) in replicated.iter().zip(&single) {
        assert!((r - s).abs() < 1e-5, "gradient norm {r} vs one device {s}");
    }
}

/// Clipping (by norm, well below the gradient's) applies to the averaged gradients, as on one
/// device to the gradients of the global batch; clipping each replica's would differ.
#[test]
fn clipping_applies_to_the_averaged_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let clipped = |devices| builder(dir.path(), devices).gradient_clip_val(0.01);
    let (replicated, _) = fit(clipped(2), pair_loader(32, 8));
    let (single, _) = fit(clipped(1), pair_loader_in_order(&global_order(32, 2, 8), 16));
    let (unclipped, _) = fit(
        builder(dir.path(), 1),
        pair_loader_in_order(&global_order(32, 2, 8), 16),
    );
    assert_ne!(single.weights(), unclipped.weights(), "the limit must clip");
    assert_close(&replicated.weights(), &single.weights());
}

/// Under `16-mixed`, every replica computes in half precision and scales its loss by the one
/// loss scale; the averaged gradients are unscaled once: the weights of one device (the
/// replicas' means over 8 items in half precision round apart from one mean over 16, hence
/// the looser bound).
#[test]
fn mixed_precision_replicas_train_as_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = |devices| builder(dir.path(), devices).precision("16-mixed");
    let (replicated, _) = fit(mixed(2), pair_loader(48, 8));
    let (single, _) = fit(mixed(1), pair_loader_in_order(&global_order(48, 2, 8), 16));
    assert_ne!(single.weights(), Regressor::new().weights());
    let worst = replicated
        .weights()
        .iter()
        .zip(single.weights())
        .map(|(r, s)| (r - s).abs())
        .fold(0.0f32, f32::max);
    // 6e-6 here; summed gradients would be off by far more.
    assert!(worst < 1e-4, "the largest difference is {worst}");
}

/// Each rank trains on its own contiguous shard: disjoint, together the dataset but for the
/// `49 % 2` item left over (dropped, as `DistributedSampler(drop_last=True)`), so that both ranks
/// have as many batches.
#[test]
fn each_rank_sees_its_own_shard() {
    let dir = tempfile::tempdir().unwrap();
    let model = Regressor::new();
    let seen = model.seen.clone();
    let mut trainer = builder(dir.path(), 2).build().unwrap();
    trainer.fit(model, Loaders::fit(pair_loader(49, 5), None)).unwrap();
    assert_eq!(trainer.global_step(), 5, "24 items per rank in batches of 5");
    let seen = seen.lock().unwrap().clone();
    let of_rank = |rank: usize| -> BTreeSet<usize> { seen.iter().filter(|s| s.0 == rank).map(|s| s.1).collect() };
    assert_eq!(of_rank(0), (0..24).collect());
    assert_eq!(of_rank(1), (24..48).collect());
    assert_eq!(seen.len(), 48, "every item once");
}

/// Values logged with `sync_dist` are reduced across the ranks by their `reduce` (the mean by
/// default); the others are rank zero's. The logger writes one row per step and the checkpoint
/// callback one file: callbacks and loggers run once.
#[test]
fn sync_dist_values_are_reduced_across_replicas_and_writers_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, trainer) = fit(
        builder(dir.path(), 3)
            .enable_checkpointing(true)
            .enable_logger(true)
            .logger(CsvLogger::new(dir.path()))
            .log_every_n_steps(1),
        pair_loader(24, 4),
    );
    assert_eq!(trainer.global_step(), 2);
    let metrics = trainer.callback_metrics();
    assert_eq!(metrics.get("rank"), Some(0.0), "rank zero's value");
    assert_eq!(metrics.get("rank_mean"), Some(1.0), "the mean of ranks 0, 1 and 2");
    assert_eq!(metrics.get("rank_max"), Some(2.0), "reduced by its `reduce`");
    assert_eq!(metrics.get("world_size"), Some(3.0));

    // The mean of the three ranks' losses is the loss of their union on one device.
    let (_, single) = fit(
        builder(dir.path(), 1),
        pair_loader_in_order(&global_order(24, 3, 4), 12),
    );
    let replicated_loss = metrics.get("loss").unwrap();
    let single_loss = single.callback_metrics().get("loss").unwrap();
    assert!(
        (replicated_loss - single_loss).abs() < 1e-5,
        "{replicated_loss} vs {single_loss}"
    );

    let run_dir = dir.path().join("lightning_logs/version_0");
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let columns: Vec<usize> = ["step", "rank", "rank_mean", "rank_max"]
        .iter()
        .map(|name| header.iter().position(|h| h == name).unwrap())
        .collect();
    let rows: Vec<Vec<String>> = lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            columns.iter().map(|&i| cells[i].to_string()).collect()
        })
        .collect();
    assert_eq!(
        rows,
        [["0", "0", "1", "2"], ["1", "0", "1", "2"]],
        "one row per step: {csv}"
    );
    assert_eq!(file_names(&run_dir.join("checkpoints")), ["epoch=0-step=2.ckpt"]);
}

/// On CUDA (`--features cuda`, the `ddp` check of `scripts/gpu-run.sh`): asking for one GPU more
/// than exist is an error saying how many exist, and with two GPUs or more, every GPU as a
/// replica trains as one GPU on the same global batch, to 1e-5. Not run here: no GPU, and the
/// `cuda` build needs LLVM.
#[cfg(feature = "cuda")]
#[test]
fn on_cuda_every_gpu_trains_as_one_gpu_on_the_same_global_batch() {
    let count = Device::enumerate(burn::tensor::DeviceType::Cuda).into_vec().len();
    let (flag, message) = config_error(Trainer::<Regressor>::builder().accelerator("cuda").devices(count + 1));
    assert_eq!(flag, "devices");
    assert!(message.contains(&format!("{count} exist")), "{message}");
    if count < 2 {
        println!("one CUDA device: the data-parallel comparison needs two");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let on_cuda = |devices: usize| builder(dir.path(), devices).accelerator("cuda");
    let items = 24 * count;
    let (replicated, _) = fit(on_cuda(count), pair_loader(items, 8));
    let (single, _) = fit(
        on_cuda(1),
        pair_loader_in_order(&global_order(items, count, 8), 8 * count),
    );
    assert_ne!(single.weights(), Regressor::new().weights());
    assert_close(&replicated.weights(), &single.weights());
}

fn config_error<M: LightningModule>(builder: TrainerBuilder<M>) -> (&'static str, String) {
    match builder.build().map(|_| ()) {
        Err(Error::Config { flag, message }) => (flag, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn bad_devices_and_strategies_are_errors_naming_the_flag() {
    let (flag, message) = config_error(Trainer::<Regressor>::builder().devices(0));
    assert_eq!(flag, "devices", "{message}");
    let (flag, message) = config_error(Trainer::<Regressor>::builder().accelerator("cpu").devices([0, 1]));
    assert_eq!(flag, "devices");
    assert!(message.contains("one device"), "{message}");
    for name in ["ddp_spawn", "fsdp", "horovod"] {
        let (flag, message) = config_error(Trainer::<Regressor>::builder().strategy(name));
        assert_eq!(flag, "strategy");
        assert!(
            message.contains("auto") && message.contains("ddp") && message.contains("single_device"),
            "{message}"
        );
    }
    // A config file (or the command line) says it the same way.
    let config: TrainerConfig = serde_json::from_str(r#"{"devices": 2, "strategy": "ddp_spawn"}"#).unwrap();
    assert!(
        matches!(config.validate(), Err(Error::Config { flag: "strategy", .. })),
        "{:?}",
        config.validate()
    );
    let (flag, _) = config_error(
        Trainer::<Regressor>::builder()
            .accelerator("cpu")
            .devices(2)
            .strategy("single_device"),
    );
    assert_eq!(flag, "strategy");
    let (flag, _) = config_error(
        Trainer::<Regressor>::builder()
            .accelerator("cpu")
            .devices(2)
            .overfit_batches(2),
    );
    assert_eq!(flag, "overfit_batches");
}

#[test]
fn fewer_items_than_devices_is_an_error_naming_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path(), 3).build().unwrap();
    let error = trainer
        .fit(Regressor::new(), Loaders::fit(pair_loader(2, 1), None))
        .unwrap_err()
        .into_error();
    assert!(
        matches!(&error, Error::Config { flag: "devices", message } if message.contains("2 items")),
        "{error}"
    );
}

/// A module under manual optimization.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Manual {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl Manual {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

#[test]
fn manual_optimization_on_several_devices_is_an_error_naming_devices() {
    let (flag, message) = config_error(Trainer::<Manual>::builder().accelerator("cpu").devices(2));
    assert_eq!(flag, "devices");
    assert!(message.contains("manual optimization"), "{message}");
}
