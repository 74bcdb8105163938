//! The flags that change where batches come from and where they run: `overfit_batches`,
//! `reload_dataloaders_every_n_epochs`, `accelerator` / `devices` and `deterministic`.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, shuffled_pair_loader, values};
use std::sync::{Arc, Mutex};

/// Records which batches it trains and validates on: each batch by its first input value.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Watcher {
    layer: Linear,
    #[module(skip)]
    trained: Vec<u32>,
    #[module(skip)]
    validated: Vec<u32>,
}

impl Watcher {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            trained: Vec::new(),
            validated: Vec::new(),
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

/// A batch's identity: the bits of its first input value.
fn first_value(batch: &Pair) -> u32 {
    values(batch.x.clone())[0].to_bits()
}

#[lightning_module]
impl Watcher {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        self.trained.push(first_value(&batch));
        self.loss(batch)
    }

    #[hook]
    fn validation_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        self.validated.push(first_value(&batch));
        cx.log("val_loss", self.loss(batch));
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

/// Shuffled training (16 batches) and shuffled validation (8 batches) loaders.
struct ShuffledData;

impl DataModule<Pair> for ShuffledData {
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(shuffled_pair_loader(64, 4, 1))
    }

    fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(shuffled_pair_loader(32, 4, 2))
    }
}

fn builder(root: &std::path::Path) -> TrainerBuilder<Watcher> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .enable_report(false)
        .max_epochs(3)
}

fn fit(builder: TrainerBuilder<Watcher>) -> Watcher {
    builder.build().unwrap().fit(Watcher::new(), ShuffledData).unwrap()
}

#[test]
fn overfit_batches_trains_and_validates_on_the_same_batches_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let model = fit(builder(dir.path()).overfit_batches(3));
    // 3 epochs of 3 training batches: the same 3, in the same order, although the loader shuffles.
    let epochs: Vec<&[u32]> = model.trained.chunks(3).collect();
    assert_eq!(epochs.len(), 3);
    assert_eq!(epochs[0], epochs[1]);
    assert_eq!(epochs[1], epochs[2]);
    // The sanity check's 2 batches, then 3 validations of the same 3 batches.
    let (sanity, runs) = model.validated.split_at(2);
    let runs: Vec<&[u32]> = runs.chunks(3).collect();
    assert_eq!(runs.len(), 3, "{:?}", model.validated);
    assert!(runs.iter().all(|run| *run == runs[0]));
    assert_eq!(sanity, &runs[0][..2]);

    // Without it the shuffled loaders give other batches every epoch: the check above can fail.
    let model = fit(builder(dir.path()).limit_train_batches(3).limit_val_batches(3));
    let epochs: Vec<&[u32]> = model.trained.chunks(3).collect();
    assert_ne!(epochs[0], epochs[1]);
}

#[test]
fn overfit_batches_takes_a_fraction_of_the_training_loader() {
    let dir = tempfile::tempdir().unwrap();
    // A quarter of 16 training batches is 4, every epoch; of the 8 validation batches, 2.
    let model = fit(builder(dir.path()).overfit_batches(0.25).num_sanity_val_steps(0));
    assert_eq!(model.trained.len(), 12);
    assert_eq!(model.trained[..4], model.trained[8..]);
    assert_eq!(model.validated.len(), 6);
    assert_eq!(model.validated[..2], model.validated[4..]);

    // Less than one batch is an error naming the flag.
    let error = builder(dir.path())
        .overfit_batches(0.01)
        .build()
        .unwrap()
        .fit(Watcher::new(), ShuffledData)
        .unwrap_err()
        .into_error();
    assert!(error.to_string().contains("`overfit_batches`"), "{error}");
}

#[test]
fn bad_overfit_batches_are_errors_naming_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let message = |builder: TrainerBuilder<Watcher>| builder.build().err().expect("an error").to_string();
    let fraction = message(builder(dir.path()).overfit_batches(1.5));
    assert!(
        fraction.contains("`overfit_batches`") && fraction.contains("1.5"),
        "{fraction}"
    );
    let negative = message(builder(dir.path()).overfit_batches(-2));
    assert!(
        negative.contains("`overfit_batches`") && negative.contains("negative"),
        "{negative}"
    );
    let both = message(builder(dir.path()).fast_dev_run(1).overfit_batches(2));
    assert!(
        both.contains("`overfit_batches`") && both.contains("`fast_dev_run`"),
        "{both}"
    );
    // 0 is off, as in Lightning.
    builder(dir.path()).fast_dev_run(1).overfit_batches(0).build().unwrap();
}

/// The calls the reload test follows, in order.
type Calls = Arc<Mutex<Vec<&'static str>>>;

/// [`ShuffledData`] that records its dataloader requests.
struct Requests(Calls);

impl DataModule<Pair> for Requests {
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        self.0.lock().unwrap().push("DM.train_dataloader");
        ShuffledData.train_dataloader()
    }

    fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
        self.0.lock().unwrap().push("DM.val_dataloader");
        ShuffledData.val_dataloader()
    }
}

/// Records the epoch and validation starts (a callback rather than a tracing subscriber: the
/// other tests of this file train at the same time).
struct Starts(Calls);

impl Callback<Watcher> for Starts {
    fn on_train_epoch_start(&mut self, _module: &mut Watcher, _cx: &mut EpochContext<'_>) {
        self.0.lock().unwrap().push("on_train_epoch_start");
    }

    fn on_validation_start(&mut self, _module: &mut Watcher, _cx: &mut EpochContext<'_>) {
        self.0.lock().unwrap().push("on_validation_start");
    }
}

/// The dataloader requests and the epoch and validation starts, in order.
fn loader_calls(builder: TrainerBuilder<Watcher>) -> Vec<&'static str> {
    let calls = Calls::default();
    let mut trainer = builder.callback(Starts(calls.clone())).build().unwrap();
    trainer.fit(Watcher::new(), Requests(calls.clone())).unwrap();
    calls.lock().unwrap().clone()
}

#[test]
fn reload_dataloaders_every_n_epochs_requests_them_when_lightning_does() {
    let dir = tempfile::tempdir().unwrap();
    let flags = |b: TrainerBuilder<Watcher>| b.max_epochs(5).limit_train_batches(2).limit_val_batches(1);
    let calls = loader_calls(flags(builder(dir.path())).reload_dataloaders_every_n_epochs(2));
    let epoch = "on_train_epoch_start";
    let val = "on_validation_start";
    // Lightning: the sanity check's request counts for epoch 0; the training loader is requested
    // again before `on_train_epoch_start` of epochs 2 and 4, the validation loader before the
    // validation of epochs 2 and 4.
    let expected = [
        "DM.val_dataloader",
        val, // sanity check
        "DM.train_dataloader",
        epoch,
        val, // epoch 0
        epoch,
        val, // epoch 1
        "DM.train_dataloader",
        epoch,
        "DM.val_dataloader",
        val, // epoch 2
        epoch,
        val, // epoch 3
        "DM.train_dataloader",
        epoch,
        "DM.val_dataloader",
        val, // epoch 4
    ];
    assert_eq!(calls, expected);

    // By default each is requested once per fit.
    let calls = loader_calls(flags(builder(dir.path())));
    assert_eq!(calls.iter().filter(|c| c.starts_with("DM.")).count(), 2, "{calls:?}");

    // Every epoch, without a sanity check: the validation loader is first requested before
    // training (as without the flag), then at every epoch's validation.
    let calls = loader_calls(
        flags(builder(dir.path()))
            .max_epochs(2)
            .num_sanity_val_steps(0)
            .reload_dataloaders_every_n_epochs(1),
    );
    let expected = [
        "DM.train_dataloader",
        "DM.val_dataloader",
        epoch,
        val, // epoch 0
        "DM.train_dataloader",
        epoch,
        "DM.val_dataloader",
        val, // epoch 1
    ];
    assert_eq!(calls, expected);
}

#[test]
fn accelerator_and_devices_map_to_a_device_or_say_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let message = |builder: TrainerBuilder<Watcher>| builder.build().err().expect("an error").to_string();
    builder(dir.path()).accelerator("cpu").devices(1).build().unwrap();
    builder(dir.path()).accelerator("cpu").devices("0,").build().unwrap();
    builder(dir.path()).accelerator("auto").devices("auto").build().unwrap();
    // `device(..)` wins over "auto"; with a named accelerator it is a contradiction.
    builder(dir.path())
        .device(Device::default())
        .accelerator("auto")
        .build()
        .unwrap();
    let both = message(builder(dir.path()).device(Device::default()).accelerator("cpu"));
    assert!(both.contains("`accelerator`") && both.contains("device("), "{both}");

    let unknown = message(builder(dir.path()).accelerator("tpu"));
    assert!(
        unknown.contains("`accelerator`") && unknown.contains("cpu, gpu, cuda, wgpu"),
        "{unknown}"
    );
    // Several devices train data-parallel (`tests/ddp.rs`); on the CPU, as replicas on its one
    // device, which has no index 1.
    builder(dir.path()).accelerator("cpu").devices(2).build().unwrap();
    let listed = message(builder(dir.path()).accelerator("cpu").devices([0, 1]));
    assert!(
        listed.contains("`devices`") && listed.contains("one device"),
        "{listed}"
    );
    let garbage = message(builder(dir.path()).devices("two"));
    assert!(garbage.contains("`devices`") && garbage.contains("two"), "{garbage}");
    if !cfg!(feature = "cuda") {
        let cuda = message(builder(dir.path()).accelerator("cuda"));
        assert!(
            cuda.contains("`accelerator`") && cuda.contains("feature `cuda`"),
            "{cuda}"
        );
    }
}

/// A two-layer network large enough that burn-flex splits its matrix products over rayon
/// threads, with fixed initial weights (no draws from the device's generator, which other
/// tests running at the same time share).
#[lightning_module]
#[derive(Module, Debug)]
pub struct Wide {
    hidden: Linear,
    out: Linear,
}

const WIDTH: usize = 256;

fn fixed_linear(inputs: usize, outputs: usize, salt: usize) -> Linear {
    let device = Device::default();
    // No bias: it would be drawn from the device's generator.
    let mut layer = LinearConfig::new(inputs, outputs).with_bias(false).init(&device);
    let weights: Vec<f32> = (0..inputs * outputs)
        .map(|i| (((i * 7919 + salt) % 1000) as f32 / 1000.0 - 0.5) / (inputs as f32).sqrt())
        .collect();
    layer.weight =
        burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(weights, [inputs, outputs]), &device));
    layer
}

impl Wide {
    fn new() -> Self {
        Self {
            hidden: fixed_linear(WIDTH, WIDTH, 1),
            out: fixed_linear(WIDTH, WIDTH, 2),
        }
    }

    fn bits(&self) -> Vec<u32> {
        let mut bits: Vec<u32> = values(self.hidden.weight.val()).iter().map(|v| v.to_bits()).collect();
        bits.extend(values(self.out.weight.val()).iter().map(|v| v.to_bits()));
        bits
    }
}

#[lightning_module]
impl Wide {
    #[hook]
    fn training_step(&self, batch: TensorBatch, _batch_idx: usize, _cx: &mut StepContext) -> Tensor<1> {
        let hidden = burn::tensor::activation::relu(self.hidden.forward(batch.x));
        (self.out.forward(hidden) - batch.y).powi_scalar(2).mean()
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.05)
    }
}

/// Fits `Wide` with `deterministic(true)` on shuffled in-memory data; its weights' bits.
fn deterministic_fit(seed: u64) -> Vec<u32> {
    let dir = tempfile::tempdir().unwrap();
    let rows = |salt: usize| -> Vec<Vec<f32>> {
        (0..512)
            .map(|i| {
                (0..WIDTH)
                    .map(|j| (((i * 31 + j * 17 + salt) % 97) as f32 / 97.0) - 0.5)
                    .collect()
            })
            .collect()
    };
    let data = TensorDataset::from_vecs(rows(0), rows(5)).unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .enable_report(false)
        .accelerator("cpu")
        .deterministic(true)
        .seed(seed)
        .max_epochs(2)
        .build()
        .unwrap();
    let model = trainer
        .fit(Wide::new(), InMemoryDataModule::new(data, None, None).batch_size(128))
        .unwrap();
    model.bits()
}

#[test]
fn deterministic_runs_with_the_same_seed_give_bit_identical_weights() {
    // Two fits at the same time, competing for rayon's threads, then a third alone.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| deterministic_fit(3));
        let b = scope.spawn(|| deterministic_fit(3));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.len(), 2 * WIDTH * WIDTH);
    assert!(a == b, "two deterministic fits with the same seed differ");
    assert!(
        a == deterministic_fit(3),
        "a deterministic fit differs from the same fit run alone"
    );
    // The seed reaches the data order: another seed trains other weights.
    assert!(a != deterministic_fit(4), "another seed gave the same weights");
    assert!(a != Wide::new().bits(), "the weights did not train");
}
