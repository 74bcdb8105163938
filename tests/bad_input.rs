//! Bad configuration and bad data are errors that name what to change, never panics: every
//! misconfigured builder flag, flags that only turn out wrong once the data is known, missing
//! and empty dataloaders, failing datamodules and metrics that callbacks monitor but nobody logs.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[lightning_module]
#[derive(Module, Debug)]
pub struct Small {
    layer: Linear,
}

impl Small {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2)
                .with_initializer(Initializer::Constant { value: 0.1 })
                .init(&Device::default()),
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Small {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = self.loss(batch);
        cx.log("train_loss", &loss);
        loss
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("test_loss", self.loss(batch));
    }
    #[hook]
    fn predict_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.x)
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn builder(root: &Path) -> TrainerBuilder<Small> {
    Trainer::builder().default_root_dir(root).enable_progress_bar(false)
}

type Edit = fn(TrainerBuilder<Small>) -> TrainerBuilder<Small>;

/// Asserts that `edit` makes `build` fail with a configuration error for `flag`.
fn assert_rejected(name: &str, edit: Edit, flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let result = std::panic::catch_unwind(|| edit(builder(dir.path())).build().map(|_| ()));
    let error = match result {
        Ok(Ok(())) => panic!("{name}: the builder accepted it"),
        Ok(Err(error)) => error,
        Err(_) => panic!("{name}: the builder panicked"),
    };
    match &error {
        Error::Config { flag: named, .. } => assert_eq!(*named, flag, "{name}: {error}"),
        other => panic!("{name}: not a configuration error: {other:?}"),
    }
    assert!(
        error.to_string().contains(&format!("`{flag}`")),
        "{name}: the message names the flag: {error}"
    );
}

/// Worker panics are recorded for the whole process, and a pass whose loader comes up short
/// reports the latest one: the test that makes a worker panic and the one whose loader stops
/// short must not run at the same time (tests in one binary share the process).
fn worker_panic_tests() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn a_dataloader_worker_that_panics_fails_the_epoch_with_its_message() {
    let _serial = worker_panic_tests();
    // Before, the epoch ended early without a word, and the next one failed on burn's closed
    // channel (`SendError`).
    let dir = tempfile::tempdir().unwrap();
    let loader = common::pair_loader_with_workers(32, 4, 2, 13);
    let error = builder(dir.path())
        .max_epochs(2)
        .enable_model_summary(false)
        .build()
        .unwrap()
        .fit(Small::new(), Loaders::fit(loader, None))
        .unwrap_err()
        .into_error();
    let message = error.to_string();
    assert!(matches!(error, Error::Dataloader { .. }), "{error:?}");
    assert!(message.contains("item 13 is corrupt"), "{message}");
    assert!(message.contains("worker thread `dataloader-"), "{message}");
}

#[test]
fn misconfigured_flags_are_rejected_by_build_naming_the_flag() {
    let cases: &[(&str, Edit, &str)] = &[
        ("max_epochs 0", |b| b.max_epochs(0), "max_epochs"),
        ("max_steps 0", |b| b.max_steps(0), "max_steps"),
        (
            "zero epochs and zero steps",
            |b| b.max_epochs(0).max_steps(0),
            "max_epochs",
        ),
        (
            "limit_train_batches 1.5",
            |b| b.limit_train_batches(1.5),
            "limit_train_batches",
        ),
        (
            "limit_train_batches -0.5",
            |b| b.limit_train_batches(-0.5),
            "limit_train_batches",
        ),
        (
            "limit_train_batches NaN",
            |b| b.limit_train_batches(f64::NAN),
            "limit_train_batches",
        ),
        (
            "limit_train_batches -1",
            |b| b.limit_train_batches(-1),
            "limit_train_batches",
        ),
        (
            "limit_val_batches 1.01",
            |b| b.limit_val_batches(1.01),
            "limit_val_batches",
        ),
        ("limit_val_batches -3", |b| b.limit_val_batches(-3), "limit_val_batches"),
        (
            "limit_test_batches -0.1",
            |b| b.limit_test_batches(-0.1),
            "limit_test_batches",
        ),
        (
            "limit_test_batches -2",
            |b| b.limit_test_batches(-2),
            "limit_test_batches",
        ),
        (
            "limit_predict_batches 2.5",
            |b| b.limit_predict_batches(2.5),
            "limit_predict_batches",
        ),
        (
            "a fractional val_check_interval without epochs to count in",
            |b| b.val_check_interval(0.5).check_val_every_n_epoch(None),
            "val_check_interval",
        ),
        (
            "limit_predict_batches -1",
            |b| b.limit_predict_batches(-1),
            "limit_predict_batches",
        ),
        (
            "val_check_interval 0.0",
            |b| b.val_check_interval(0.0),
            "val_check_interval",
        ),
        (
            "val_check_interval 1.5",
            |b| b.val_check_interval(1.5),
            "val_check_interval",
        ),
        (
            "val_check_interval NaN",
            |b| b.val_check_interval(f64::NAN),
            "val_check_interval",
        ),
        (
            "val_check_interval 0 batches",
            |b| b.val_check_interval(0),
            "val_check_interval",
        ),
        (
            "val_check_interval -2",
            |b| b.val_check_interval(-2),
            "val_check_interval",
        ),
        (
            "check_val_every_n_epoch 0",
            |b| b.check_val_every_n_epoch(Some(0)),
            "check_val_every_n_epoch",
        ),
        (
            "min_epochs above max_epochs",
            |b| b.min_epochs(5).max_epochs(2),
            "min_epochs",
        ),
        (
            "min_steps above max_steps",
            |b| b.min_steps(10).max_steps(5),
            "min_steps",
        ),
        ("fast_dev_run 0", |b| b.fast_dev_run(0), "fast_dev_run"),
        (
            "gradient_clip_val negative",
            |b| b.gradient_clip_val(-1.0),
            "gradient_clip_val",
        ),
        (
            "gradient_clip_val NaN",
            |b| b.gradient_clip_val(f64::NAN),
            "gradient_clip_val",
        ),
        (
            "gradient_clip_val infinite",
            |b| b.gradient_clip_val(f64::INFINITY),
            "gradient_clip_val",
        ),
    ];
    for (name, edit, flag) in cases {
        assert_rejected(name, *edit, flag);
    }
}

#[test]
fn boundary_values_are_accepted() {
    let cases: &[(&str, Edit)] = &[
        ("defaults", |b| b),
        ("limit 1.0", |b| {
            b.limit_train_batches(1.0)
                .limit_val_batches(1.0)
                .limit_test_batches(1.0)
                .limit_predict_batches(1.0)
        }),
        ("limit counts, 0 turns a loop off", |b| {
            b.limit_train_batches(1)
                .limit_val_batches(0)
                .limit_test_batches(Limit::Batches(3))
        }),
        ("val_check_interval 1.0 and 1 batch", |b| {
            b.val_check_interval(1.0).val_check_interval(1)
        }),
        ("validation by batch count only", |b| {
            b.check_val_every_n_epoch(None).val_check_interval(1000)
        }),
        ("min equals max", |b| {
            b.min_epochs(2).max_epochs(2).min_steps(3).max_steps(3)
        }),
        ("max_steps only", |b| b.max_steps(1)),
        ("zero epochs but some steps", |b| b.max_epochs(0).max_steps(5)),
        ("gradient_clip_val 0 turns clipping off", |b| b.gradient_clip_val(0.0)),
        ("fast_dev_run overrides the limits", |b| b.max_epochs(0).fast_dev_run(1)),
    ];
    for (name, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        if let Err(error) = edit(builder(dir.path())).build() {
            panic!("{name}: rejected: {error}");
        }
    }
}

fn fit(builder: TrainerBuilder<Small>, data: Loaders<Pair>) -> Result<Small, Error> {
    builder.build().unwrap().fit(Small::new(), data).map_err(|e| e.error)
}

#[test]
fn a_val_check_interval_longer_than_the_epoch_is_an_error_from_fit() {
    let dir = tempfile::tempdir().unwrap();
    // 4 training batches per epoch.
    let error = fit(
        builder(dir.path()).max_epochs(1).val_check_interval(10),
        Loaders::fit(pair_loader(16, 4), Some(pair_loader(8, 4))),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                flag: "val_check_interval",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`val_check_interval`"), "{error}");
}

#[test]
fn a_fraction_of_less_than_one_batch_is_an_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    // 4 training batches: a tenth of them is no batch at all.
    let error = fit(
        builder(dir.path()).max_epochs(1).limit_train_batches(0.1),
        Loaders::fit(pair_loader(16, 4), None),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                flag: "limit_train_batches",
                ..
            }
        ),
        "{error:?}"
    );

    let error = fit(
        builder(dir.path()).max_epochs(1).limit_val_batches(0.1),
        Loaders::fit(pair_loader(16, 4), Some(pair_loader(16, 4))),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                flag: "limit_val_batches",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn fitting_without_a_train_dataloader_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(1).build().unwrap();
    for data in [Loaders::default(), Loaders::val(pair_loader(8, 4))] {
        let error = trainer.fit(Small::new(), data).unwrap_err().error;
        assert!(
            matches!(
                error,
                Error::MissingDataloader {
                    stage: Stage::Fit,
                    hook: "train_dataloader"
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("`train_dataloader`"), "{error}");
    }
    let error = trainer.fit(Small::new(), ()).unwrap_err().error;
    assert!(
        matches!(
            error,
            Error::MissingDataloader {
                hook: "train_dataloader",
                ..
            }
        ),
        "{error:?}"
    );
    // Runs that failed before training left no empty `version_N` behind.
    let logs = dir.path().join("lightning_logs");
    let left: Vec<_> = std::fs::read_dir(&logs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(trainer.log_dir(), None);
}

#[test]
fn evaluating_without_the_dataloader_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let only_train = || Loaders::fit(pair_loader(8, 4), None);
    let error = trainer.test(&mut Small::new(), only_train()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::MissingDataloader {
                stage: Stage::Test,
                hook: "test_dataloader"
            }
        ),
        "{error:?}"
    );
    let error = trainer.validate(&mut Small::new(), only_train()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::MissingDataloader {
                stage: Stage::Validate,
                hook: "val_dataloader"
            }
        ),
        "{error:?}"
    );
    let error = trainer.predict(&mut Small::new(), only_train()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::MissingDataloader {
                stage: Stage::Predict,
                hook: "predict_dataloader"
            }
        ),
        "{error:?}"
    );
}

#[test]
fn fitting_without_a_val_dataloader_trains_without_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(1).build().unwrap();
    trainer
        .fit(Small::new(), Loaders::fit(pair_loader(8, 4), None))
        .unwrap();
    assert!(trainer.callback_metrics().get("train_loss").is_some());
    assert!(trainer.callback_metrics().get("val_loss").is_none());
}

#[test]
fn an_empty_dataset_is_an_error_naming_the_dataloader() {
    let dir = tempfile::tempdir().unwrap();
    let error = fit(builder(dir.path()).max_epochs(1), Loaders::fit(pair_loader(0, 4), None)).unwrap_err();
    assert!(
        matches!(
            error,
            Error::EmptyDataloader {
                loader: "train_dataloader"
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`train_dataloader`"), "{error}");

    let mut trainer = builder(dir.path()).build().unwrap();
    let error = trainer
        .test(&mut Small::new(), Loaders::test(pair_loader(0, 4)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::EmptyDataloader {
                loader: "test_dataloader"
            }
        ),
        "{error:?}"
    );
    let error = trainer
        .validate(&mut Small::new(), Loaders::val(pair_loader(0, 4)))
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::EmptyDataloader {
                loader: "val_dataloader"
            }
        ),
        "{error:?}"
    );
}

/// A datamodule whose `setup` fails.
struct BrokenData;

#[derive(Debug, thiserror::Error)]
#[error("the data directory `/nowhere` does not exist")]
struct NoData;

impl DataModule<Pair> for BrokenData {
    fn setup(&mut self, _stage: Stage) -> Result<(), Error> {
        Err(Error::user(NoData))
    }
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(8, 4))
    }
}

/// Records the errors `on_exception` receives.
struct Exceptions(Arc<Mutex<Vec<String>>>);

impl Callback<Small> for Exceptions {
    fn on_exception(&mut self, _module: &mut Small, error: &Error, _cx: &mut HookContext<'_>) {
        self.0.lock().unwrap().push(error.to_string());
    }
}

#[test]
fn a_failing_datamodule_ends_fit_with_its_error_and_callbacks_hear_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let exceptions = Arc::new(Mutex::new(Vec::new()));
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .callback(Exceptions(exceptions.clone()))
        .build()
        .unwrap();
    let error = trainer.fit(Small::new(), BrokenData).unwrap_err().error;
    assert!(matches!(error, Error::User(_)), "{error:?}");
    assert!(error.to_string().contains("/nowhere"), "{error}");
    assert_eq!(*exceptions.lock().unwrap(), [error.to_string()]);
}

#[test]
fn monitoring_a_metric_nobody_logs_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = || Loaders::fit(pair_loader(8, 4), Some(pair_loader(8, 4)));
    let checkpoint = ModelCheckpoint::new().monitor("val_acc", Mode::Max);
    let error = fit(builder(dir.path()).max_epochs(1).callback(checkpoint), data()).unwrap_err();
    assert!(error.to_string().contains("`val_acc`"), "{error}");
    assert!(
        error.to_string().contains("val_loss"),
        "the message lists what was logged: {error}"
    );

    let stopping = EarlyStopping::new("val_acc", Mode::Max);
    let error = fit(builder(dir.path()).max_epochs(1).callback(stopping), data()).unwrap_err();
    assert!(error.to_string().contains("`val_acc`"), "{error}");
}

#[test]
fn a_trainer_still_works_after_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(1).build().unwrap();
    trainer
        .fit(Small::new(), Loaders::fit(pair_loader(0, 4), None))
        .unwrap_err();
    let mut model = trainer
        .fit(Small::new(), Loaders::fit(pair_loader(8, 4), None))
        .unwrap();
    let metrics = trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    assert!(metrics[0].get("test_loss").is_some_and(f64::is_finite));
}

/// A regressor whose `training_step` returns a loss of `values` values.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ShapedLoss {
    layer: Linear,
    #[module(skip)]
    values: usize,
}

#[lightning_module]
impl ShapedLoss {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        match self.values {
            0 => Tensor::empty([0], &loss.device()),
            n => Tensor::cat(vec![loss; n], 0),
        }
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

#[test]
fn a_loss_that_is_not_one_value_is_an_error_at_the_first_step() {
    for (values, expected) in [(3, "holds 3 values"), (0, "empty")] {
        let dir = tempfile::tempdir().unwrap();
        let model = ShapedLoss {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            values,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Trainer::builder()
                .default_root_dir(dir.path())
                .enable_progress_bar(false)
                .max_epochs(1)
                .build()
                .unwrap()
                .fit(model, Loaders::fit(pair_loader(8, 4), None))
                .map(|_| ())
                .map_err(|e| e.error.to_string())
        }));
        let message = result
            .unwrap_or_else(|_| panic!("a loss of {values} values panicked"))
            .err()
            .unwrap_or_else(|| panic!("a loss of {values} values trained"));
        assert!(
            message.contains("training_step") && message.contains(expected),
            "{message}"
        );
    }
}

/// A loader whose iterator stops after `batches` batches of `inner`, while its `num_items`
/// and progress say more (a loader of the user's own with a bug, or a source that closed).
#[derive(Clone)]
struct StopsEarly {
    inner: Loader<Pair>,
    batches: usize,
}

struct StopsEarlyIter<'a> {
    inner: Box<dyn burn::data::dataloader::DataLoaderIterator<Pair> + 'a>,
    left: usize,
}

impl Iterator for StopsEarlyIter<'_> {
    type Item = Result<Pair, burn::data::dataset::DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        self.inner.next()
    }
}

impl burn::data::dataloader::DataLoaderIterator<Pair> for StopsEarlyIter<'_> {
    fn progress(&self) -> burn::data::dataloader::Progress {
        self.inner.progress()
    }
}

impl burn::data::dataloader::DataLoader<Pair> for StopsEarly {
    fn iter<'a>(&'a self) -> Box<dyn burn::data::dataloader::DataLoaderIterator<Pair> + 'a> {
        Box::new(StopsEarlyIter {
            inner: self.inner.iter(),
            left: self.batches,
        })
    }
    fn num_items(&self) -> usize {
        self.inner.num_items()
    }
    fn to_device(&self, device: &Device) -> Arc<dyn burn::data::dataloader::DataLoader<Pair>> {
        Arc::new(Self {
            inner: self.inner.to_device(device),
            ..self.clone()
        })
    }
    fn slice(&self, start: usize, end: usize) -> Arc<dyn burn::data::dataloader::DataLoader<Pair>> {
        Arc::new(Self {
            inner: self.inner.slice(start, end),
            ..self.clone()
        })
    }
}

/// A pass that ends short of its items without a recorded worker panic is an error naming the
/// pass and the counts. Before, it was a `tracing` warning (not shown without a subscriber) and
/// the epoch ended early without a word. A pass cut on purpose (`limit_train_batches`,
/// `max_steps`) never asks the loader for more and is not one.
#[test]
fn a_dataloader_that_stops_short_of_its_items_fails_the_pass_naming_the_counts() {
    let _serial = worker_panic_tests();
    let dir = tempfile::tempdir().unwrap();
    let short = || {
        Arc::new(StopsEarly {
            inner: pair_loader(32, 4),
            batches: 3,
        }) as Loader<Pair>
    };
    let fit = |builder: TrainerBuilder<Small>, data: Loaders<Pair>| {
        let mut trainer = builder.max_epochs(2).enable_model_summary(false).build().unwrap();
        let result = trainer.fit(Small::new(), data).map(|_| ());
        (result, trainer.global_step())
    };
    let (result, steps) = fit(builder(dir.path()), Loaders::fit(short(), None));
    let error = result.unwrap_err().into_error();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            Error::Dataloader {
                loader: "train_dataloader",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        message.contains("the training pass ended after 12 of its 32 items"),
        "{message}"
    );
    assert_eq!(
        steps, 3,
        "the short epoch's batches trained, the next epoch never started"
    );
    // A short validation loader names its pass.
    let (result, _) = fit(builder(dir.path()), Loaders::fit(pair_loader(32, 4), Some(short())));
    let message = result.unwrap_err().into_error().to_string();
    assert!(
        message.contains("`val_dataloader`") && message.contains("the validation pass ended after"),
        "{message}"
    );
    // Cut on purpose: not an error.
    let (result, steps) = fit(builder(dir.path()).limit_train_batches(3), Loaders::fit(short(), None));
    result.unwrap();
    assert_eq!(steps, 6);
    // `max_steps` at the very batch where the loader ran out: the pass never asks for more.
    let (result, steps) = fit(builder(dir.path()).max_steps(3), Loaders::fit(short(), None));
    result.unwrap();
    assert_eq!(steps, 3);
}
