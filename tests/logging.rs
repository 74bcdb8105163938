//! `cx.log` follows Lightning's `self.log` (spec section 2.2): per-hook defaults, `_step` and
//! `_epoch` keys, batch-size-weighted epoch means, reductions, what `callback_metrics`,
//! `validate` and `test` report, and errors for logging calls that cannot work. Also the
//! hyperparameters a module declares with `#[hparam]` and the `hparams.yaml` a fit writes.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader, scalar_tensor};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a step hook logs, given the batch and its index.
pub type StepLog = fn(&mut StepContext<'_>, &Pair, usize);
/// What an epoch hook logs.
pub type EpochLog = fn(&mut EpochContext<'_>);

fn no_step_log(_: &mut StepContext<'_>, _: &Pair, _: usize) {}
fn no_epoch_log(_: &mut EpochContext<'_>) {}

/// A linear regressor whose hooks log what the test tells them to, and which keeps the
/// callback metrics it sees at the end of every training batch.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Logs {
    layer: Linear,
    #[module(skip)]
    train: StepLog,
    #[module(skip)]
    val: StepLog,
    #[module(skip)]
    test: StepLog,
    #[module(skip)]
    train_start: EpochLog,
    #[module(skip)]
    train_epoch_end: EpochLog,
    #[module(skip)]
    val_epoch_end: EpochLog,
    #[module(skip)]
    at_batch_end: Arc<Mutex<Vec<BTreeMap<String, f64>>>>,
}

impl Logs {
    fn new() -> Self {
        let layer = LinearConfig::new(32, 2)
            .with_initializer(Initializer::Constant { value: 0.01 })
            .init(&Device::default());
        Self {
            layer,
            train: no_step_log,
            val: no_step_log,
            test: no_step_log,
            train_start: no_epoch_log,
            train_epoch_end: no_epoch_log,
            val_epoch_end: no_epoch_log,
            at_batch_end: Arc::default(),
        }
    }

    fn train(self, train: StepLog) -> Self {
        Self { train, ..self }
    }
    fn val(self, val: StepLog) -> Self {
        Self { val, ..self }
    }
    fn test(self, test: StepLog) -> Self {
        Self { test, ..self }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Logs {
    #[hook]
    fn on_train_start(&mut self, cx: &mut EpochContext) {
        (self.train_start)(cx);
    }
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        (self.train)(cx, &batch, batch_idx);
        self.loss(batch)
    }
    #[hook]
    fn on_train_batch_end(
        &mut self,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        cx: &mut StepContext,
    ) {
        self.at_batch_end.lock().unwrap().push(cx.callback_metrics());
    }
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
        (self.train_epoch_end)(cx);
    }
    #[hook]
    fn validation_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        (self.val)(cx, &batch, batch_idx);
    }
    #[hook]
    fn on_validation_epoch_end(&mut self, cx: &mut EpochContext) {
        (self.val_epoch_end)(cx);
    }
    #[hook]
    fn test_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        (self.test)(cx, &batch, batch_idx);
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn builder<M: LightningModule>(root: &Path) -> TrainerBuilder<M> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
}

/// Fits `model` for `epochs` epochs on `train` and `val` items in batches of 4, without sanity
/// check; returns the trainer's callback metrics and what the module saw at each batch end.
fn fit(model: Logs, epochs: usize, train: usize, val: usize) -> (BTreeMap<String, f64>, Vec<BTreeMap<String, f64>>) {
    let dir = tempfile::tempdir().unwrap();
    let at_batch_end = model.at_batch_end.clone();
    let mut trainer = builder(dir.path())
        .max_epochs(epochs)
        .num_sanity_val_steps(0)
        .build()
        .unwrap();
    trainer
        .fit(model, Loaders::fit(pair_loader(train, 4), Some(pair_loader(val, 4))))
        .unwrap();
    let seen = at_batch_end.lock().unwrap().clone();
    (trainer.callback_metrics().0.clone(), seen)
}

fn keys(metrics: &BTreeMap<String, f64>) -> Vec<&str> {
    metrics.keys().map(String::as_str).collect()
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("`{what}` was not reported"));
    assert!(
        (actual - expected).abs() < 1e-6,
        "`{what}` is {actual}, expected {expected}"
    );
}

/// A value per batch that is neither sorted nor constant: 3, 1, 5, 2, ...
fn wiggle(batch_idx: usize) -> f64 {
    [3.0, 1.0, 5.0, 2.0, 4.0][batch_idx % 5]
}

#[test]
fn training_step_logs_each_step_by_default() {
    let model = Logs::new().train(|cx, _, i| cx.log("t", (10 * i) as f64));
    let (metrics, at_batch_end) = fit(model, 1, 12, 4);
    assert_eq!(keys(&metrics), ["t"], "no `t_step` or `t_epoch` without on_epoch");
    assert_close(metrics.get("t").copied(), 20.0, "t");
    let per_step: Vec<Option<f64>> = at_batch_end.iter().map(|m| m.get("t").copied()).collect();
    assert_eq!(per_step, [Some(0.0), Some(10.0), Some(20.0)]);
}

#[test]
fn validation_step_logs_the_epoch_mean_by_default() {
    let model = Logs::new().val(|cx, _, i| {
        let value = scalar_tensor(wiggle(i), &cx.device);
        cx.log("v", value);
    });
    let (metrics, _) = fit(model, 1, 4, 12);
    assert_eq!(keys(&metrics), ["v"], "no `v_step` or `v_epoch` without on_step");
    assert_close(metrics.get("v").copied(), (3.0 + 1.0 + 5.0) / 3.0, "v");
}

#[test]
fn logging_both_on_step_and_on_epoch_gives_step_and_epoch_keys() {
    let model = Logs::new().train(|cx, _, i| {
        let value = (10 * cx.current_epoch) as f64 + wiggle(i);
        cx.log_with("m", value, LogOptions::new().on_step(true).on_epoch(true));
    });
    let (metrics, at_batch_end) = fit(model, 2, 12, 4);
    assert_eq!(keys(&metrics), ["m", "m_epoch", "m_step"]);
    // The last epoch logged 13, 11, 15.
    assert_close(metrics.get("m_step").copied(), 15.0, "m_step");
    assert_close(metrics.get("m_epoch").copied(), 13.0, "m_epoch");
    assert_close(
        metrics.get("m").copied(),
        13.0,
        "m (the epoch value once the epoch ended)",
    );
    // During an epoch the bare name holds the latest step value.
    let bare: Vec<f64> = at_batch_end.iter().map(|m| m["m"]).collect();
    assert_eq!(bare, [3.0, 1.0, 5.0, 13.0, 11.0, 15.0]);
}

#[test]
fn epoch_means_are_weighted_by_batch_size() {
    // 10 items in batches of 4: sizes 4, 4 and 2.
    let model = Logs::new()
        .train(|cx, _, i| cx.log_with("train_idx", i as f64, LogOptions::new().on_step(false).on_epoch(true)))
        .val(|cx, batch, i| {
            cx.log("val_idx", i as f64);
            cx.log("val_size", batch.x.dims()[0] as f64);
            cx.log_with("val_idx_unweighted", i as f64, LogOptions::new().batch_size(1));
            let value = scalar_tensor(wiggle(i), &cx.device);
            cx.log("val_tensor", value);
        });
    let (metrics, _) = fit(model, 1, 10, 10);
    // Weighted: (0*4 + 1*4 + 2*2) / 10; unweighted it would be 1.
    assert_close(metrics.get("train_idx").copied(), 0.8, "train_idx");
    assert_close(metrics.get("val_idx").copied(), 0.8, "val_idx");
    assert_close(metrics.get("val_size").copied(), (16.0 + 16.0 + 4.0) / 10.0, "val_size");
    assert_close(
        metrics.get("val_idx_unweighted").copied(),
        1.0,
        "val_idx_unweighted (batch_size(1) for every batch)",
    );
    assert_close(
        metrics.get("val_tensor").copied(),
        (3.0 * 4.0 + 4.0 + 5.0 * 2.0) / 10.0,
        "val_tensor",
    );
}

#[test]
fn sum_min_and_max_reduce_the_epoch() {
    let model = Logs::new()
        .train(|cx, _, i| {
            cx.log_with(
                "train_max",
                wiggle(i),
                LogOptions::new().on_step(false).on_epoch(true).reduce(Reduce::Max),
            );
            cx.log_with(
                "train_sum",
                wiggle(i),
                LogOptions::new().on_step(false).on_epoch(true).reduce(Reduce::Sum),
            );
        })
        .val(|cx, _, i| {
            let tensor = scalar_tensor(wiggle(i), &cx.device);
            cx.log_with("val_sum", tensor, LogOptions::new().reduce(Reduce::Sum));
            cx.log_with("val_min", wiggle(i), LogOptions::new().reduce(Reduce::Min));
            cx.log_with("val_max", wiggle(i), LogOptions::new().reduce(Reduce::Max));
            cx.log_with("val_mean", wiggle(i), LogOptions::new().reduce(Reduce::Mean));
        });
    // Batch sizes 4, 4, 2; values 3, 1, 5.
    let (metrics, _) = fit(model, 1, 10, 10);
    assert_close(metrics.get("train_max").copied(), 5.0, "train_max");
    assert_close(
        metrics.get("train_sum").copied(),
        9.0,
        "train_sum (a sum is not weighted)",
    );
    assert_close(metrics.get("val_sum").copied(), 9.0, "val_sum");
    assert_close(metrics.get("val_min").copied(), 1.0, "val_min");
    assert_close(metrics.get("val_max").copied(), 5.0, "val_max");
    assert_close(metrics.get("val_mean").copied(), 2.6, "val_mean");
}

#[test]
fn epoch_hooks_log_epoch_values() {
    let mut model = Logs::new();
    model.train_epoch_end = |cx| cx.log("epoch_x2", (2 * cx.current_epoch) as f64);
    model.val_epoch_end = |cx| cx.log("val_end", 7.0);
    let (metrics, _) = fit(model, 3, 4, 4);
    assert_close(metrics.get("epoch_x2").copied(), 4.0, "epoch_x2");
    assert_close(metrics.get("val_end").copied(), 7.0, "val_end");
}

/// Lightning's `self.log_dict(values, on_step=False, on_epoch=True, prog_bar=True)`: every pair
/// gets the options, in a step hook (`LogOptions`) and in an epoch hook (`EpochLogOptions`).
#[test]
fn log_dict_with_gives_every_value_its_options() {
    let mut model = Logs::new().train(|cx, _, i| {
        cx.log_dict_with(
            [("a", wiggle(i)), ("b", 2.0 * wiggle(i))],
            LogOptions::new().on_step(false).on_epoch(true).prog_bar(true),
        );
    });
    model.train_epoch_end = |cx| {
        cx.log_dict_with(
            [("c", 7.0), ("d", 8.0)],
            EpochLogOptions::new().prog_bar(true).logger(false),
        );
    };
    let at_batch_end = model.at_batch_end.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .build()
        .unwrap();
    // Three batches of 4: `a` is 3, 1, 5.
    trainer
        .fit(model, Loaders::fit(pair_loader(12, 4), Some(pair_loader(4, 4))))
        .unwrap();
    let names = |metrics: &Metrics| metrics.keys().cloned().collect::<Vec<_>>();
    // The epoch means under the bare names: no `a_step`, no `a_epoch`.
    assert_eq!(names(trainer.callback_metrics()), ["a", "b", "c", "d"]);
    assert_close(trainer.callback_metrics().get("a"), 3.0, "a");
    assert_close(trainer.callback_metrics().get("b"), 6.0, "b");
    assert_eq!(names(trainer.progress_bar_metrics()), ["a", "b", "c", "d"]);
    assert_eq!(
        names(trainer.logged_metrics()),
        ["a", "b", "epoch"],
        "`c`, `d`: logger(false)"
    );
    assert!(
        at_batch_end.lock().unwrap().iter().all(|m| m.is_empty()),
        "nothing per step"
    );
}

#[test]
fn a_value_logged_in_on_train_start_is_reported() {
    let mut model = Logs::new();
    model.train_start = |cx| cx.log("started", 1.0);
    let (metrics, _) = fit(model, 1, 4, 4);
    // Lightning allows `self.log` in `on_train_start` (on_epoch) and reduces it with the first epoch.
    assert_close(metrics.get("started").copied(), 1.0, "started");
}

#[test]
fn callback_metrics_after_fit_hold_the_training_and_validation_metrics() {
    let model = Logs::new()
        .train(|cx, _, i| cx.log("train_i", i as f64))
        .val(|cx, _, i| cx.log("val_w", wiggle(i)));
    let (metrics, _) = fit(model, 2, 8, 12);
    assert_eq!(keys(&metrics), ["train_i", "val_w"]);
    assert_close(metrics.get("train_i").copied(), 1.0, "train_i");
    assert_close(metrics.get("val_w").copied(), 3.0, "val_w");
}

#[test]
fn validation_values_logged_per_step_reach_callback_metrics_only_as_epoch_values() {
    let model = Logs::new().val(|cx, _, i| cx.log_with("v", wiggle(i), LogOptions::new().on_step(true)));
    let (metrics, _) = fit(model, 1, 4, 12);
    assert_eq!(keys(&metrics), ["v", "v_epoch"]);
    assert_close(metrics.get("v").copied(), 3.0, "v");
}

/// Records the callback metrics at the end of every validation epoch and training epoch.
#[derive(Clone, Default)]
struct AtEpochEnds {
    validation: Arc<Mutex<Vec<BTreeMap<String, f64>>>>,
    train: Arc<Mutex<Vec<BTreeMap<String, f64>>>>,
}

impl Callback<Logs> for AtEpochEnds {
    fn on_validation_epoch_end(&mut self, _module: &mut Logs, cx: &mut EpochContext<'_>) {
        self.validation.lock().unwrap().push(cx.callback_metrics());
    }
    fn on_train_epoch_end(&mut self, _module: &mut Logs, cx: &mut EpochContext<'_>) {
        self.train.lock().unwrap().push(cx.callback_metrics());
    }
}

/// What [`fit_recording_epoch_ends`] saw.
struct Seen {
    /// The trainer's callback metrics after the fit.
    after_fit: BTreeMap<String, f64>,
    at_batch_end: Vec<BTreeMap<String, f64>>,
    at_validation_epoch_end: Vec<BTreeMap<String, f64>>,
    at_train_epoch_end: Vec<BTreeMap<String, f64>>,
}

/// As [`fit`], also recording the callback metrics at every epoch end.
fn fit_recording_epoch_ends(model: Logs, epochs: usize, train: usize, val: usize) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let at_batch_end = model.at_batch_end.clone();
    let recorder = AtEpochEnds::default();
    let mut trainer = builder(dir.path())
        .max_epochs(epochs)
        .num_sanity_val_steps(0)
        .callback(recorder.clone())
        .build()
        .unwrap();
    trainer
        .fit(model, Loaders::fit(pair_loader(train, 4), Some(pair_loader(val, 4))))
        .unwrap();
    Seen {
        after_fit: trainer.callback_metrics().0.clone(),
        at_batch_end: at_batch_end.lock().unwrap().clone(),
        at_validation_epoch_end: recorder.validation.lock().unwrap().clone(),
        at_train_epoch_end: recorder.train.lock().unwrap().clone(),
    }
}

fn assert_all_close(actual: &[BTreeMap<String, f64>], name: &str, expected: &[f64], when: &str) {
    let values: Vec<Option<f64>> = actual.iter().map(|m| m.get(name).copied()).collect();
    assert_eq!(
        values.len(),
        expected.len(),
        "`{name}` {when}: {values:?}, expected {expected:?}"
    );
    for (value, want) in values.iter().zip(expected) {
        assert!(
            value.is_some_and(|v| (v - want).abs() < 1e-6),
            "`{name}` {when}: {values:?}, expected {expected:?}"
        );
    }
}

#[test]
fn one_name_logged_in_training_step_and_validation_step_is_two_metrics() {
    // Lightning keys logged values by hook and name, one result collection per loop; the
    // callback metrics are a dict each loop updates, so the latest update of `loss` wins.
    // Training (8 items, batches 4 and 4): 100 * (epoch + 1) + batch_idx, per step.
    // Validation (10 items, batches 4, 4 and 2): 10 * (epoch + 1) + 3, 1, 5, whose weighted
    // mean is 10 * (epoch + 1) + 2.6.
    let model = Logs::new()
        .train(|cx, _, i| cx.log("loss", (100 * (cx.current_epoch + 1) + i) as f64))
        .val(|cx, _, i| cx.log("loss", (10 * (cx.current_epoch + 1)) as f64 + wiggle(i)));
    let seen = fit_recording_epoch_ends(model, 3, 8, 10);
    assert_all_close(
        &seen.at_batch_end,
        "loss",
        &[100.0, 101.0, 200.0, 201.0, 300.0, 301.0],
        "at each training batch end (the step value)",
    );
    assert_all_close(
        &seen.at_validation_epoch_end,
        "loss",
        &[12.6, 22.6, 32.6],
        "at each validation epoch end (that epoch's validation mean)",
    );
    // A training value logged on_step only has no epoch value to publish when the training
    // epoch ends: the validation mean, published after the epoch's last step, stays.
    assert_all_close(
        &seen.at_train_epoch_end,
        "loss",
        &[12.6, 22.6, 32.6],
        "at each training epoch end",
    );
    assert_eq!(keys(&seen.after_fit), ["loss"]);
    assert_close(seen.after_fit.get("loss").copied(), 32.6, "loss after fit");
}

#[test]
fn validation_means_do_not_accumulate_across_epochs() {
    // `shared` is also an epoch value of the training loop (batches of 4 logging
    // 100 * (epoch + 1) + batch_idx, mean 100 * (epoch + 1) + 0.5); `v` is validation only.
    let model = Logs::new()
        .train(|cx, _, i| {
            let value = (100 * (cx.current_epoch + 1) + i) as f64;
            cx.log_with("shared", value, LogOptions::new().on_step(false).on_epoch(true));
        })
        .val(|cx, _, i| {
            cx.log("shared", (10 * (cx.current_epoch + 1)) as f64 + wiggle(i));
            cx.log("v", cx.current_epoch as f64 + wiggle(i));
        });
    let seen = fit_recording_epoch_ends(model, 3, 8, 10);
    assert_all_close(
        &seen.at_validation_epoch_end,
        "shared",
        &[12.6, 22.6, 32.6],
        "at each validation epoch end",
    );
    assert_all_close(
        &seen.at_validation_epoch_end,
        "v",
        &[2.6, 3.6, 4.6],
        "at each validation epoch end",
    );
    // The training epoch ends after its validation: its epoch mean is the latest `shared`.
    assert_all_close(
        &seen.at_train_epoch_end,
        "shared",
        &[100.5, 200.5, 300.5],
        "at each training epoch end",
    );
    assert_all_close(
        &seen.at_train_epoch_end,
        "v",
        &[2.6, 3.6, 4.6],
        "at each training epoch end",
    );
    assert_eq!(keys(&seen.after_fit), ["shared", "v"]);
    assert_close(seen.after_fit.get("shared").copied(), 300.5, "shared after fit");
    assert_close(seen.after_fit.get("v").copied(), 4.6, "v after fit");
}

#[test]
fn validate_and_test_return_their_epoch_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Logs::new().val(|cx, _, i| cx.log("val_w", wiggle(i))).test(|cx, _, i| {
        cx.log("test_w", wiggle(i));
        cx.log_with("test_both", wiggle(i), LogOptions::new().on_step(true));
    });
    let mut trainer = builder::<Logs>(dir.path()).build().unwrap();
    // Sizes 4, 4, 2 and values 3, 1, 5: the weighted mean is 2.6.
    let [validated] =
        <[Metrics; 1]>::try_from(trainer.validate(&mut model, Loaders::val(pair_loader(10, 4))).unwrap()).unwrap();
    assert_eq!(keys(&validated.0), ["val_w"]);
    assert_close(validated.get("val_w"), 2.6, "val_w");
    assert_eq!(trainer.callback_metrics(), &validated);

    let [tested] =
        <[Metrics; 1]>::try_from(trainer.test(&mut model, Loaders::test(pair_loader(10, 4))).unwrap()).unwrap();
    assert_eq!(
        keys(&tested.0),
        ["test_both_epoch", "test_w"],
        "test returns epoch values only"
    );
    assert_close(tested.get("test_w"), 2.6, "test_w");
    assert_close(tested.get("test_both_epoch"), 2.6, "test_both_epoch");
    assert_close(trainer.callback_metrics().get("test_w"), 2.6, "callback_metrics test_w");
    assert!(
        trainer.callback_metrics().get("val_w").is_none(),
        "a new run starts with no metrics"
    );
}

#[test]
fn logging_with_neither_on_step_nor_on_epoch_is_an_error_naming_the_metric() {
    let dir = tempfile::tempdir().unwrap();
    let model =
        Logs::new().train(|cx, _, _| cx.log_with("nowhere", 1.0, LogOptions::new().on_step(false).on_epoch(false)));
    let error = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(model, Loaders::fit(pair_loader(8, 4), None))
        .unwrap_err()
        .error;
    assert!(
        matches!(
            error,
            Error::Hook {
                hook: "training_step",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`nowhere`"), "{error}");

    let mut model =
        Logs::new().val(|cx, _, _| cx.log_with("nowhere_val", 1.0, LogOptions::new().on_step(false).on_epoch(false)));
    let error = builder::<Logs>(dir.path())
        .build()
        .unwrap()
        .validate(&mut model, Loaders::val(pair_loader(8, 4)))
        .unwrap_err();
    assert!(error.to_string().contains("`nowhere_val`"), "{error}");
}

#[test]
fn logging_a_tensor_of_several_values_is_an_error_naming_the_metric() {
    let dir = tempfile::tempdir().unwrap();
    let model = Logs::new().train(|cx, batch, _| cx.log("whole_batch", batch.y.clone().flatten::<1>(0, 1)));
    let error = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(model, Loaders::fit(pair_loader(8, 4), None))
        .unwrap_err();
    assert!(error.to_string().contains("`whole_batch`"), "{error}");
}

#[test]
fn logging_one_name_twice_in_a_hook_with_other_options_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = Logs::new().train(|cx, _, _| {
        cx.log("twice", 1.0);
        cx.log_with("twice", 2.0, LogOptions::new().on_epoch(true));
    });
    let error = builder(dir.path())
        .max_epochs(1)
        .build()
        .unwrap()
        .fit(model, Loaders::fit(pair_loader(8, 4), None))
        .unwrap_err();
    assert!(error.to_string().contains("`twice`"), "{error}");
}

/// Records what the callback metrics hold when the sanity check ends.
struct AtSanityEnd(Arc<Mutex<Option<BTreeMap<String, f64>>>>);

impl Callback<Logs> for AtSanityEnd {
    fn on_sanity_check_end(&mut self, _module: &mut Logs, cx: &mut HookContext<'_>) {
        *self.0.lock().unwrap() = Some(cx.callback_metrics());
    }
}

#[test]
fn what_the_sanity_check_logged_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let at_sanity_end = Arc::new(Mutex::new(None));
    let model = Logs::new().val(|cx, _, i| {
        if cx.sanity_checking() {
            cx.log("sanity_only", 1.0);
        }
        cx.log("val_w", wiggle(i));
    });
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(1)
        .callback(AtSanityEnd(at_sanity_end.clone()))
        .build()
        .unwrap();
    trainer
        .fit(model, Loaders::fit(pair_loader(8, 4), Some(pair_loader(12, 4))))
        .unwrap();
    let during = at_sanity_end.lock().unwrap().clone().expect("the sanity check ran");
    assert_eq!(during.get("sanity_only"), Some(&1.0), "logged during the sanity check");
    assert!(
        trainer.callback_metrics().get("sanity_only").is_none(),
        "{}",
        trainer.callback_metrics()
    );
    // The real validation's mean covers its own batches only.
    assert_close(trainer.callback_metrics().get("val_w"), 3.0, "val_w");
}

// ----- hyperparameters -----

/// A module with hyperparameters: required and defaulted, of several types.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Tuned {
    layer: Linear,
    /// Width of nothing in particular (required).
    #[hparam]
    width: usize,
    /// SGD's learning rate.
    #[hparam(default = 0.05)]
    lr: f64,
    /// A name.
    #[hparam(default = String::from("sgd"))]
    optimizer: String,
    /// Epochs at which something happens.
    #[hparam(default = vec![2, 5])]
    milestones: Vec<usize>,
}

impl Tuned {
    fn new(hparams: &TunedHparams) -> Self {
        Self {
            layer: LinearConfig::new(32, 2)
                .with_initializer(Initializer::Zeros)
                .init(&Device::default()),
            width: hparams.width,
            lr: hparams.lr,
            optimizer: hparams.optimizer.clone(),
            milestones: hparams.milestones.clone(),
        }
    }
}

#[lightning_module]
impl Tuned {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

/// Only defaulted hyperparameters.
#[lightning_module]
#[derive(Module, Debug)]
pub struct AllDefaults {
    layer: Linear,
    #[hparam(default = 3)]
    k: usize,
    #[hparam(default = true)]
    flag: bool,
}

#[test]
fn hparam_fields_generate_a_hyperparameter_struct() {
    let defaults = TunedHparams::new(16);
    assert_eq!(
        (
            defaults.width,
            defaults.lr,
            defaults.optimizer.as_str(),
            defaults.milestones.as_slice()
        ),
        (16, 0.05, "sgd", &[2, 5][..])
    );

    let custom = TunedHparams::new(8)
        .with_lr(0.2)
        .with_optimizer("adam".into())
        .with_milestones(vec![1]);
    assert_eq!(
        custom,
        TunedHparams {
            width: 8,
            lr: 0.2,
            optimizer: "adam".into(),
            milestones: vec![1]
        }
    );
    assert_eq!(
        Tuned::new(&custom).hparams(),
        custom,
        "hparams() reads the module's fields"
    );

    let all = AllDefaultsHparams::default();
    assert_eq!(all, AllDefaultsHparams::new());
    assert_eq!((all.k, all.flag), (3, true));
}

#[test]
fn fit_writes_hparams_yaml_into_a_new_version_directory_per_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let data = || Loaders::fit(pair_loader(8, 4), None);
    let first = TunedHparams::new(8).with_lr(0.2);
    let second = TunedHparams::new(4)
        .with_optimizer("adam".into())
        .with_milestones(vec![]);
    let logs = dir.path().join("lightning_logs");
    let read = |version: usize| -> TunedHparams {
        let yaml = std::fs::read_to_string(logs.join(format!("version_{version}/hparams.yaml"))).unwrap();
        serde_saphyr::from_str(&yaml)
            .unwrap_or_else(|e| panic!("hparams.yaml of version_{version} does not parse: {e}\n{yaml}"))
    };

    let mut trainer = builder::<Tuned>(dir.path()).max_epochs(1).build().unwrap();
    trainer.fit(Tuned::new(&first), data()).unwrap();
    assert_eq!(trainer.log_dir(), Some(logs.join("version_0").as_path()));
    assert_eq!(read(0), first);
    // A second fit on the same trainer keeps its run directory (Lightning's logger keeps its
    // version) and logs the hyperparameters it is given.
    trainer.fit(Tuned::new(&second), data()).unwrap();
    assert_eq!(trainer.log_dir(), Some(logs.join("version_0").as_path()));
    assert_eq!(read(0), second);
    let mut another = builder::<Tuned>(dir.path()).max_epochs(1).build().unwrap();
    another.fit(Tuned::new(&first), data()).unwrap();
    assert_eq!(another.log_dir(), Some(logs.join("version_1").as_path()));
    assert_eq!(read(1), first);
    let yaml = std::fs::read_to_string(logs.join("version_1/hparams.yaml")).unwrap();
    assert!(yaml.contains("lr: 0.2"), "{yaml}");
}

#[test]
fn validate_returns_metrics_that_equal_a_manual_computation() {
    // The validation loss as the trainer reports it equals the loss computed by hand over the
    // same items (one batch, so weighting plays no role).
    let dir = tempfile::tempdir().unwrap();
    let mut model = Logs::new().val(|cx, batch, _| {
        let loss = (batch.y.clone() - 0.0).powi_scalar(2).mean();
        cx.log("y_sq", loss);
    });
    let metrics: Metrics = builder::<Logs>(dir.path())
        .build()
        .unwrap()
        .validate(&mut model, Loaders::val(pair_loader(6, 6)))
        .unwrap()
        .remove(0);
    let batch = pair_loader(6, 6).iter().next().unwrap().unwrap();
    let expected = common::values(batch.y.powi_scalar(2).mean())[0] as f64;
    assert_close(metrics.get("y_sq"), expected, "y_sq");
}
