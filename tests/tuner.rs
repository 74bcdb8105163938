//! The tuner as a user sees it: `lr_find`'s sweep, smoothing, early stop, suggestion and plot,
//! the model and trainer left as they were, the suggestion applied to the `lr` hparam; the
//! batch-size finder's power and binary searches against an out-of-memory bound; bad settings.

mod common;
#[path = "../examples/common/lit_mnist.rs"]
mod lit_mnist;
#[path = "../examples/common/mnist.rs"]
mod mnist;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader, values};
use lit_mnist::{LitMnist, LitMnistHparams};
use mnist::MnistData;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A linear regressor trained with SGD at its `lr` hparam.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    /// SGD's learning rate.
    #[hparam(default = 0.05)]
    lr: f64,
    /// When set, `training_step` returns this constant (plus zero times the weights, so that
    /// there are gradients) instead of the regression loss.
    #[module(skip)]
    constant_loss: Option<f64>,
}

impl Net {
    fn new(hparams: &NetHparams) -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            lr: hparams.lr,
            constant_loss: None,
        }
    }

    /// With constant weights: no draws from the device's generator, which the tests running
    /// beside it share.
    fn constant(hparams: &NetHparams) -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
            ..Self::new(hparams)
        }
    }

    fn weights(&self) -> (Vec<f32>, Vec<f32>) {
        (
            values(self.layer.weight.val()),
            values(self.layer.bias.as_ref().expect("a bias").val()),
        )
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        let prediction = self.layer.forward(batch.x);
        match self.constant_loss {
            Some(constant) => (prediction.sum() * 0.0).add_scalar(constant),
            None => (prediction - batch.y).powi_scalar(2).mean(),
        }
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

impl LoadFromCheckpoint for Net {
    fn from_hparams(hparams: &NetHparams, _device: &Device) -> Self {
        Net::new(hparams)
    }
}

/// Two epochs of [`data`]: 128 steps, enough for the searches.
fn trainer(root: &Path) -> Trainer<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .max_epochs(2)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .seed(7)
        .build()
        .unwrap()
}

/// 256 regression pairs in batches of 4: 64 steps per epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(256, 4), None)
}

fn assert_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-9 * e.abs().max(1.0), "{actual:?} vs {expected:?}");
    }
}

fn config_flag(error: Error) -> &'static str {
    match error {
        Error::Config { flag, .. } => flag,
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[test]
fn the_suggestion_is_the_steepest_descent_by_torchs_gradient() {
    // A linear sweep: torch.gradient(losses, spacing=[lrs]) (second-order central differences
    // on uneven spacing, one-sided at the ends) is
    // [-0.2, -0.266667, -0.516667, -0.729167, -0.460417, -0.00625]: steepest at lr 8.
    // (Forward differences, [-0.2, -0.4, -0.75, -0.6875, -0.00625], would pick lr 4.)
    let lrs = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
    let losses = vec![10.0, 9.8, 9.0, 6.0, 0.5, 0.4];
    let finder = LrFinder::from_results(LrFindMode::Linear, lrs.clone(), losses).unwrap();
    assert_eq!(finder.suggestion_with(0, 0), Some(8.0));
    // Skipping the first four leaves [0.5, 0.4] at [16, 32]: one gradient, -0.00625, twice.
    assert_eq!(finder.suggestion_with(4, 0), Some(16.0));
    // Fewer than two points: no suggestion (Lightning logs an error and returns None).
    assert_eq!(finder.suggestion_with(5, 0), None);
    assert_eq!(finder.suggestion(), None, "the default skips 10 at the start");

    // A loss that is not finite is left out, as in Lightning: without lr 8 the points
    // [10, 9.8, 9, 0.5, 0.4] at [1, 2, 4, 16, 32] have gradients
    // [-0.2, -0.266667, -0.541667, -0.354167, -0.00625] (steepest at lr 4).
    let with_nan = vec![10.0, 9.8, 9.0, f64::NAN, 0.5, 0.4];
    let finder = LrFinder::from_results(LrFindMode::Linear, lrs.clone(), with_nan).unwrap();
    assert_eq!(finder.suggestion_with(0, 0), Some(4.0));

    // An exponential sweep: the gradient against log10(lr), here evenly spaced by log10(2):
    // [-3.3219, -1.8271, -0.3322, -6.4778, -7.1421, -1.6610], steepest at lr 16. Against lr
    // itself (Lightning's release) it would be [-1.0, -0.6833, -0.0417, -0.175, -0.3271, -0.0312],
    // steepest at lr 1, the flat start.
    let losses = vec![10.0, 9.0, 8.9, 8.8, 5.0, 4.5];
    let finder = LrFinder::from_results(LrFindMode::Exponential, lrs.clone(), losses.clone()).unwrap();
    assert_eq!(finder.suggestion_with(0, 0), Some(16.0));
    let linear = LrFinder::from_results(LrFindMode::Linear, lrs, losses).unwrap();
    assert_eq!(linear.suggestion_with(0, 0), Some(1.0));
}

#[test]
fn the_default_suggestion_skips_ten_steps_at_the_start_and_one_at_the_end() {
    // Lightning's exponential sweep from 1e-3 to 1 over 14 steps: lr_k = 1e-3 * 1000^((k+1)/14)
    // for k >= 1. The suggestion looks at steps 10..=12: gradients against log10(lr)
    // [-1.4, 0.7, 2.8], so step 10 (lr 0.2275845926...) although step 9 falls faster.
    let n = 14;
    let lrs: Vec<f64> = (0..n)
        .map(|k| {
            if k == 0 {
                1e-3
            } else {
                1e-3 * 1000f64.powf((k + 1) as f64 / n as f64)
            }
        })
        .collect();
    let losses = vec![
        2.30,
        2.30,
        2.29,
        2.29,
        2.28,
        2.27,
        2.25,
        2.20,
        2.05,
        1.70,
        1.20,
        0.90,
        1.5,
        f64::NAN,
    ];
    let finder = LrFinder::from_results(LrFindMode::Exponential, lrs, losses).unwrap();
    let suggestion = finder.suggestion().unwrap();
    assert!((suggestion - 0.227_584_592_607_478_8).abs() < 1e-12, "{suggestion}");
    assert!(LrFinder::from_results(LrFindMode::Linear, vec![1.0], vec![]).is_err());
}

#[test]
fn lr_find_sweeps_exponentially_and_smooths_the_loss_with_bias_correction() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net {
        constant_loss: Some(2.0),
        ..Net::new(&NetHparams::new())
    };
    let options = LrFind::new().min_lr(1e-4).max_lr(1.0).num_training(20);
    let finder = Tuner::new(&mut trainer).lr_find(&model, data(), options).unwrap();

    // Lightning's `_ExponentialLR`: min_lr first, then min_lr * (max/min)^((k+1)/20).
    let expected_lrs: Vec<f64> = (0..20)
        .map(|k| {
            if k == 0 {
                1e-4
            } else {
                1e-4 * 1e4f64.powf((k + 1) as f64 / 20.0)
            }
        })
        .collect();
    assert_close(finder.lrs(), &expected_lrs);
    assert_eq!(finder.lrs().last(), Some(&1.0));
    // A constant loss of 2 smoothed as Lightning's `_LRCallback` does (beta 0.98, corrected by
    // 1 - beta^(global_step + 1), global_step counted after the optimizer step):
    // 2 * (1 - 0.98^(k+1)) / (1 - 0.98^(k+2)).
    assert_close(
        &finder.losses()[..4],
        &[
            1.010101010101009,
            1.3467555434634753,
            1.5150484646505864,
            1.61599674881567,
        ],
    );
    assert!(!finder.stopped_early());
    assert_eq!(finder.results().count(), 20);
}

#[test]
fn lr_find_sweeps_linearly() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let options = LrFind::new()
        .min_lr(0.0)
        .max_lr(0.01)
        .num_training(10)
        .mode(LrFindMode::Linear)
        .early_stop_threshold(None);
    let finder = Tuner::new(&mut trainer)
        .lr_find(&Net::new(&NetHparams::new()), data(), options)
        .unwrap();
    // Lightning's `_LinearLR`: min_lr first, then min + (k+1)/10 * (max - min).
    let expected: Vec<f64> = (0..10)
        .map(|k| if k == 0 { 0.0 } else { (k + 1) as f64 / 10.0 * 0.01 })
        .collect();
    assert_close(finder.lrs(), &expected);
}

#[test]
fn lr_find_leaves_the_model_and_the_trainer_as_they_were() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net::new(&NetHparams::new());
    let before = model.weights();
    let finder = Tuner::new(&mut trainer)
        .lr_find(&model, data(), LrFind::new().num_training(30))
        .unwrap();
    assert_eq!(finder.lrs().len(), 30);
    assert_eq!(model.weights(), before, "bit-identical weights");
    assert_eq!((trainer.global_step(), trainer.current_epoch()), (0, 0));
    assert!(trainer.log_dir().is_none());
    assert!(trainer.callback_metrics().is_empty());

    // The trainer then fits as usual.
    let fitted = trainer.fit(model, data()).unwrap();
    assert!(fitted.weights() != before);
}

fn trainer_with_steps(root: &Path) -> Trainer<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .seed(7)
        .max_steps(10)
        .build()
        .unwrap()
}

#[test]
fn a_search_then_a_fit_trains_as_a_fit_alone() {
    let root = tempfile::tempdir().unwrap();
    let mut tuned = trainer_with_steps(root.path());
    let model = Net::constant(&NetHparams::new());
    Tuner::new(&mut tuned)
        .lr_find(&model, data(), LrFind::new().num_training(20))
        .unwrap();
    let after_search = tuned.fit(model, data()).unwrap().weights();

    let plain_root = tempfile::tempdir().unwrap();
    let alone = trainer_with_steps(plain_root.path())
        .fit(Net::constant(&NetHparams::new()), data())
        .unwrap()
        .weights();
    assert_eq!(
        after_search, alone,
        "the search changed neither the weights nor what the fit after it does"
    );
}

#[test]
fn lr_find_writes_its_plot_as_svg_into_its_run_directory() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let finder = Tuner::new(&mut trainer)
        .lr_find(&Net::new(&NetHparams::new()), data(), LrFind::new().num_training(40))
        .unwrap();
    let path = finder.plot_path().expect("a plot").to_path_buf();
    assert_eq!(path, root.path().join("lightning_logs/version_0/lr_find.svg"));
    let svg = std::fs::read_to_string(&path).unwrap();
    let document = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = document.descendants().filter_map(|node| node.text()).collect();
    assert!(texts.iter().any(|t| t.contains("Learning rate")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Loss")), "{texts:?}");
    let suggestion = finder.suggestion().expect("40 steps give a suggestion");
    let label = format!("suggested lr {suggestion:.3e}");
    assert!(texts.iter().any(|t| t.contains(&label)), "{label} in {texts:?}");
    // The suggestion's red dot.
    let red_dots = document
        .descendants()
        .filter(|node| node.tag_name().name() == "circle" && node.attribute("fill") == Some("#FF0000"))
        .count();
    assert!(red_dots >= 1, "{svg}");
    // The user's next fit gets a run directory of its own.
    trainer.fit(Net::new(&NetHparams::new()), data()).unwrap();
    assert_eq!(
        trainer.log_dir(),
        Some(root.path().join("lightning_logs/version_1").as_path())
    );
}

#[test]
fn lr_find_stops_early_when_the_smoothed_loss_diverges() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let options = LrFind::new().min_lr(1e-3).max_lr(1e3).num_training(100);
    let finder = Tuner::new(&mut trainer)
        .lr_find(&Net::new(&NetHparams::new()), data(), options)
        .unwrap();
    assert!(
        finder.stopped_early(),
        "SGD diverges long before lr 1000: {:?}",
        finder.losses()
    );
    let losses = finder.losses();
    let last = *losses.last().unwrap();
    // The best so far is taken from global step 1 on (the first recorded loss).
    let best_before = losses[..losses.len() - 1].iter().copied().fold(f64::INFINITY, f64::min);
    assert!(last > 4.0 * best_before, "stopped at {last}, best {best_before}");
    // No earlier step exceeded 4x the best before it.
    for k in 2..losses.len() - 1 {
        let best = losses[..k].iter().copied().fold(f64::INFINITY, f64::min);
        assert!(losses[k] <= 4.0 * best, "step {k} diverged but the search went on");
    }
    assert!(finder.lrs().len() < 100);
}

#[test]
fn update_attr_sets_the_lr_hparam_to_the_suggestion_and_keeps_the_weights() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net::new(&NetHparams::new());
    let finder = Tuner::new(&mut trainer)
        .lr_find(&model, data(), LrFind::new().num_training(40))
        .unwrap();
    let suggestion = finder.suggestion().unwrap();
    let weights = model.weights();
    let updated = finder.update_attr(model).unwrap();
    assert_eq!(updated.hparams().lr, suggestion);
    assert_eq!(updated.weights(), weights);

    let error = finder.update_attr_named(updated, "momentum").unwrap_err();
    assert_eq!(config_flag(error), "attr_name");

    // Any hyperparameter struct: `learning_rate` is found when there is no `lr`.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Other {
        learning_rate: f64,
        hidden: usize,
    }
    let other = Other {
        learning_rate: 0.1,
        hidden: 3,
    };
    let updated = finder.updated_hparams(&other, None).unwrap();
    assert_eq!(
        updated,
        Other {
            learning_rate: suggestion,
            hidden: 3
        }
    );
    let error = finder.updated_hparams(&other, Some("hidden")).unwrap_err();
    assert_eq!(
        config_flag(error),
        "attr_name",
        "an integer cannot hold a learning rate"
    );
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    struct NoRate {
        hidden: usize,
    }
    let message = finder
        .updated_hparams(&NoRate { hidden: 3 }, None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("neither `lr` nor `learning_rate`"), "{message}");
}

#[test]
fn lr_find_refuses_bad_settings_naming_them() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net::new(&NetHparams::new());
    let mut tuner = Tuner::new(&mut trainer);
    let mut flag = |options: LrFind| config_flag(tuner.lr_find(&model, data(), options).unwrap_err());
    assert_eq!(flag(LrFind::new().min_lr(1.0).max_lr(0.1)), "min_lr");
    assert_eq!(flag(LrFind::new().min_lr(0.1).max_lr(0.1)), "min_lr");
    assert_eq!(
        flag(LrFind::new().min_lr(0.0)),
        "min_lr",
        "an exponential sweep cannot start at 0"
    );
    assert_eq!(flag(LrFind::new().min_lr(-1.0).mode(LrFindMode::Linear)), "min_lr");
    assert_eq!(flag(LrFind::new().max_lr(f64::INFINITY)), "max_lr");
    assert_eq!(flag(LrFind::new().num_training(0)), "num_training");
    assert_eq!(
        flag(LrFind::new().early_stop_threshold(Some(0.0))),
        "early_stop_threshold"
    );
    let message = tuner
        .lr_find(&model, data(), LrFind::new().num_training(0))
        .unwrap_err()
        .to_string();
    assert!(message.contains("num_training"), "{message}");
    assert!(
        !root.path().join("lightning_logs").exists(),
        "bad settings fail before anything runs"
    );
}

/// Regression pairs whose batcher runs "out of memory" above a batch size, like a GPU would.
#[derive(Clone)]
struct BoundedBatcher {
    fits_up_to: usize,
}

impl Batcher<usize, Pair> for BoundedBatcher {
    fn batch(&self, items: Vec<usize>, device: &Device) -> Pair {
        if items.len() > self.fits_up_to {
            panic!(
                "CUDA out of memory. Tried to allocate a batch of {} (fake, for the test)",
                items.len()
            );
        }
        let n = items.len();
        let x: Vec<f32> = items
            .iter()
            .flat_map(|&i| (0..32).map(move |j| ((i + j) % 7) as f32 / 7.0))
            .collect();
        let y: Vec<f32> = items.iter().flat_map(|&i| [(i % 3) as f32, 1.0]).collect();
        Pair {
            x: Tensor::from_data(TensorData::new(x, [n, 32]), device),
            y: Tensor::from_data(TensorData::new(y, [n, 2]), device),
        }
    }
}

/// Regression data in batches of `batch_size`, which run out of memory above `fits_up_to`.
struct SizedData {
    items: usize,
    batch_size: usize,
    fits_up_to: usize,
    fail_setup: bool,
    tried: Arc<Mutex<Vec<usize>>>,
}

impl SizedData {
    fn new(items: usize, fits_up_to: usize) -> Self {
        Self {
            items,
            batch_size: 1,
            fits_up_to,
            fail_setup: false,
            tried: Arc::default(),
        }
    }
}

impl BatchSizeTunable for SizedData {
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size;
    }
}

impl DataModule<Pair> for SizedData {
    fn setup(&mut self, _stage: Stage) -> Result<(), Error> {
        if self.fail_setup {
            return Err(Error::Data("the disk is gone".into()));
        }
        Ok(())
    }
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(
            DataLoaderBuilder::new(BoundedBatcher {
                fits_up_to: self.fits_up_to,
            })
            .batch_size(self.batch_size)
            .build(InMemDataset::new((0..self.items).collect())),
        )
    }
}

/// The batch sizes of the trials: every training loader built after the finder's first look.
fn trials(data: &SizedData) -> Vec<usize> {
    data.tried.lock().unwrap().iter().skip(1).copied().collect()
}

/// [`SizedData`] recording the batch size of every training loader it builds.
struct Recorded(SizedData);

impl BatchSizeTunable for Recorded {
    fn batch_size(&self) -> usize {
        self.0.batch_size
    }
    fn set_batch_size(&mut self, batch_size: usize) {
        self.0.batch_size = batch_size;
    }
}

impl DataModule<Pair> for Recorded {
    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        self.0.setup(stage)
    }
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        self.0.tried.lock().unwrap().push(self.0.batch_size);
        self.0.train_dataloader()
    }
}

fn recorded(items: usize, fits_up_to: usize) -> Recorded {
    Recorded(SizedData::new(items, fits_up_to))
}

#[test]
fn power_scaling_doubles_until_out_of_memory_and_keeps_the_last_size_that_fitted() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net::new(&NetHparams::new());
    let before = model.weights();
    let mut data = recorded(10_000, 48);
    let found = Tuner::new(&mut trainer)
        .scale_batch_size(&model, &mut data, ScaleBatchSize::new())
        .unwrap();
    assert_eq!(found, 32);
    assert_eq!(data.batch_size(), 32, "the size found is set on the datamodule");
    assert_eq!(trials(&data.0), [2, 4, 8, 16, 32, 64]);
    assert_eq!(model.weights(), before);
    assert_eq!(trainer.global_step(), 0);
    assert!(
        !root.path().join("lightning_logs").exists(),
        "trials make no run directory"
    );
}

#[test]
fn binsearch_scaling_bisects_between_the_last_success_and_the_failure() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let mut data = recorded(10_000, 48);
    let options = ScaleBatchSize::new().mode(BatchSizeMode::Binsearch);
    let found = Tuner::new(&mut trainer)
        .scale_batch_size(&Net::new(&NetHparams::new()), &mut data, options)
        .unwrap();
    // Lightning's `_run_binsearch_scaling`: 64 fails, then (64+32)/2 = 48 fits, then 56, 52,
    // 50, 49 fail, and 49 - 48 <= 1 ends it; the 5% margin gives int(48 * 0.95) = 45.
    assert_eq!(trials(&data.0), [2, 4, 8, 16, 32, 64, 48, 56, 52, 50, 49]);
    assert_eq!(found, 45);
    assert_eq!(data.batch_size(), 45);

    let mut data = recorded(10_000, 48);
    let options = ScaleBatchSize::new().mode(BatchSizeMode::Binsearch).margin(0.0);
    let found = Tuner::new(&mut trainer)
        .scale_batch_size(&Net::new(&NetHparams::new()), &mut data, options)
        .unwrap();
    assert_eq!((found, data.batch_size()), (48, 48));
}

#[test]
fn scaling_stops_at_max_val_at_max_trials_and_at_the_dataset_length() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net::new(&NetHparams::new());
    let mut tuner = Tuner::new(&mut trainer);

    let mut bounded = recorded(10_000, usize::MAX);
    let found = tuner
        .scale_batch_size(&model, &mut bounded, ScaleBatchSize::new().max_val(20))
        .unwrap();
    // 16 fits; its double is capped at 20, and reaching max_val ends the search (with 20
    // untried, as in Lightning).
    assert_eq!((found, trials(&bounded.0)), (20, vec![2, 4, 8, 16]));

    let mut few = recorded(10_000, usize::MAX);
    let found = tuner
        .scale_batch_size(&model, &mut few, ScaleBatchSize::new().max_trials(3).init_val(5))
        .unwrap();
    // Three trials (5, 10, 20): the last one's size is kept, not an untried double.
    assert_eq!((found, trials(&few.0)), (20, vec![5, 10, 20]));
    assert_eq!(few.batch_size(), 20);

    // A batch holding the whole training set (100 items) is not grown further.
    let mut small = recorded(100, usize::MAX);
    let found = tuner
        .scale_batch_size(&model, &mut small, ScaleBatchSize::new())
        .unwrap();
    assert_eq!((found, trials(&small.0)), (128, vec![2, 4, 8, 16, 32, 64, 128]));
}

#[test]
fn scaling_returns_other_errors_and_refuses_bad_settings() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = trainer(root.path());
    let model = Net::new(&NetHparams::new());
    let mut tuner = Tuner::new(&mut trainer);

    let mut broken = recorded(100, usize::MAX);
    broken.0.fail_setup = true;
    broken.0.batch_size = 8;
    let error = tuner
        .scale_batch_size(&model, &mut broken, ScaleBatchSize::new())
        .unwrap_err();
    assert!(error.to_string().contains("the disk is gone"), "{error}");
    assert_eq!(
        broken.batch_size(),
        8,
        "a failed search leaves the batch size as it was"
    );

    let mut nothing_fits = recorded(100, 0);
    let error = tuner
        .scale_batch_size(&model, &mut nothing_fits, ScaleBatchSize::new())
        .unwrap_err();
    assert_eq!(config_flag(error), "init_val");

    let mut data = recorded(100, usize::MAX);
    let mut flag = |options| config_flag(tuner.scale_batch_size(&model, &mut data, options).unwrap_err());
    assert_eq!(flag(ScaleBatchSize::new().steps_per_trial(0)), "steps_per_trial");
    assert_eq!(flag(ScaleBatchSize::new().init_val(0)), "init_val");
    assert_eq!(flag(ScaleBatchSize::new().max_trials(0)), "max_trials");
    assert_eq!(flag(ScaleBatchSize::new().init_val(8).max_val(4)), "max_val");
    assert_eq!(flag(ScaleBatchSize::new().margin(1.0)), "margin");
    assert_eq!(flag(ScaleBatchSize::new().margin(-0.1)), "margin");
}

impl LoadFromCheckpoint for LitMnist {
    fn from_hparams(hparams: &LitMnistHparams, device: &Device) -> Self {
        LitMnist::new(hparams, device)
    }
}

/// The acceptance test: `lr_find` on the MNIST example's model and data (batch 64,
/// seed 42, 7,000 training digits), its suggestion applied to the `lr` hparam, trains to at
/// least 94% test accuracy in the example's 10 epochs.
///
/// The sweep starts at 1e-6 rather than Lightning's 1e-8: 100 steps over 6 decades rather than
/// 8. The loss is smoothed over about 50 steps (beta 0.98), so the fewer steps a decade gets,
/// the further the smoothed curve's descent lags behind the rates that caused it: from 1e-8
/// the suggestion is 1e-2, which trains to 92.0%; from 1e-6 it is 2.6e-3 (95.5%); 300 steps
/// from 1e-8 give 1.2e-3 (94.85%).
#[test]
fn lr_find_on_the_mnist_model_suggests_a_rate_that_trains_to_94_percent_in_10_epochs() {
    let root = tempfile::tempdir().unwrap();
    let device = Device::default();
    let model = LitMnist::new(&LitMnistHparams::new(), &device);
    let mut data = MnistData::new(MnistData::bundled_dir(), 64, 1000, 42);
    let mut trainer = Trainer::builder()
        .max_epochs(10)
        .seed(42)
        .device(device)
        .default_root_dir(root.path())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .build()
        .unwrap();
    let finder = Tuner::new(&mut trainer)
        .lr_find(&model, &mut data, LrFind::new().min_lr(1e-6))
        .unwrap();
    let suggestion = finder.suggestion().expect("100 steps give a suggestion");
    let model = finder.update_attr(model).unwrap();
    assert_eq!(model.hparams().lr, suggestion);
    let mut model = trainer.fit(model, &mut data).unwrap();
    let accuracy = trainer.test(&mut model, &mut data).unwrap()[0]["test_acc"];
    println!("lr_find suggested {suggestion:.3e}; test accuracy after 10 epochs: {accuracy:.4}");
    assert!(accuracy >= 0.94, "lr {suggestion:e} reached only {accuracy}");
}

#[test]
fn under_fast_dev_run_the_tuner_runs_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(root.path())
        .enable_progress_bar(false)
        .fast_dev_run(2)
        .build()
        .unwrap();
    let model = Net::new(&NetHparams::new());
    let mut tuner = Tuner::new(&mut trainer);
    let finder = tuner.lr_find(&model, data(), LrFind::new()).unwrap();
    assert_eq!(
        (finder.results().count(), finder.suggestion(), finder.plot_path()),
        (0, None, None)
    );
    let mut sized = recorded(100, usize::MAX);
    sized.0.batch_size = 16;
    assert_eq!(
        tuner
            .scale_batch_size(&model, &mut sized, ScaleBatchSize::new())
            .unwrap(),
        16
    );
    assert!(sized.0.tried.lock().unwrap().is_empty(), "no dataloader was built");
    assert!(!root.path().join("lightning_logs").exists());
}

#[test]
fn the_modes_parse_from_lightnings_names() {
    assert_eq!("exponential".parse::<LrFindMode>().unwrap(), LrFindMode::Exponential);
    assert_eq!("linear".parse::<LrFindMode>().unwrap(), LrFindMode::Linear);
    assert_eq!("power".parse::<BatchSizeMode>().unwrap(), BatchSizeMode::Power);
    assert_eq!("binsearch".parse::<BatchSizeMode>().unwrap(), BatchSizeMode::Binsearch);
    let error = "log".parse::<LrFindMode>().unwrap_err();
    assert!(error.to_string().contains("`exponential` or `linear`"), "{error}");
    assert_eq!(config_flag(error), "mode");
    assert_eq!(config_flag("binary".parse::<BatchSizeMode>().unwrap_err()), "mode");
}

#[test]
fn lr_find_counts_optimizer_steps_under_accumulation_and_plots_a_single_point() {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(root.path())
        .max_epochs(2)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .accumulate_grad_batches(2)
        .build()
        .unwrap();
    let model = Net::new(&NetHparams::new());
    let options = LrFind::new().min_lr(1e-4).max_lr(1.0).num_training(10);
    let finder = Tuner::new(&mut trainer).lr_find(&model, data(), options).unwrap();
    // One learning rate per optimizer step (two batches each), as Lightning records them.
    let expected: Vec<f64> = (0..10)
        .map(|k| {
            if k == 0 {
                1e-4
            } else {
                1e-4 * 1e4f64.powf((k + 1) as f64 / 10.0)
            }
        })
        .collect();
    assert_close(finder.lrs(), &expected);

    // One step: no suggestion, and still a plot.
    let finder = Tuner::new(&mut trainer)
        .lr_find(&model, data(), LrFind::new().num_training(1))
        .unwrap();
    assert_eq!((finder.lrs(), finder.suggestion()), (&[1e-8][..], None));
    let svg = std::fs::read_to_string(finder.plot_path().unwrap()).unwrap();
    roxmltree::Document::parse(&svg).expect("well-formed SVG");
}
