//! Metric objects (`burn_lightning::metrics`) logged as Lightning logs torchmetrics objects: the
//! epoch value is the value of every batch's state (not a mean of batch values), on step the
//! batch's; the state survives the trainer's copies of the module (the half-precision view of
//! `*-mixed`, data-parallel replicas, the evaluation copy), checkpoints, and bad input is an
//! error naming the metric.
//!
//! The module's scores are its inputs (a parameter takes part with weight 0, so that there is
//! something to train): every expected value is computed here, on the host, from the data.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::metrics::{AUROC, Accuracy, Average, F1Score, MeanMetric, MetricCollection, SumMetric};
use burn_lightning::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Batch = TensorBatch<2, 1, Int>;

/// The scores of item `i`: a permutation of 1/8, 3/8 and 1/2 (exact in every float type, and
/// tied across items), so the predicted class is where 1/2 is.
fn scores(i: usize) -> [f32; 3] {
    const PERMUTATIONS: [[f32; 3]; 6] = [
        [0.5, 0.375, 0.125],
        [0.375, 0.5, 0.125],
        [0.125, 0.375, 0.5],
        [0.5, 0.125, 0.375],
        [0.125, 0.5, 0.375],
        [0.375, 0.125, 0.5],
    ];
    PERMUTATIONS[(i * 5 + i / 4) % 6]
}

fn predicted(i: usize) -> i64 {
    scores(i).iter().position(|&s| s == 0.5).unwrap() as i64
}

/// The label of item `i` among `n`: right 3 times in 4 in the first half, every other time in
/// the second (so that the two halves, and the batches, differ in accuracy).
fn label(i: usize, n: usize) -> i64 {
    let wrong = if i < n / 2 { i % 4 == 3 } else { i % 2 == 1 };
    if wrong {
        (predicted(i) + 1 + (i as i64 % 2)) % 3
    } else {
        predicted(i)
    }
}

fn loader(n: usize, batch_size: usize) -> Loader<Batch> {
    let rows = (0..n).map(|i| scores(i).to_vec()).collect();
    let labels = (0..n).map(|i| label(i, n)).collect();
    TensorDataset::from_labels(rows, labels)
        .unwrap()
        .loader(batch_size)
        .build()
        .unwrap()
}

/// Accuracy over the items `items` of a dataset of `n`.
fn accuracy(items: impl IntoIterator<Item = usize>, n: usize) -> f64 {
    let (mut right, mut total) = (0, 0);
    for i in items {
        right += usize::from(predicted(i) == label(i, n));
        total += 1;
    }
    right as f64 / total as f64
}

/// One-vs-rest AUROC averaged over the classes (Mann-Whitney, ties counted half; 0 for a class
/// without positives or negatives), over the items `items` of a dataset of `n`.
fn auroc(items: &[usize], n: usize) -> f64 {
    let mut total = 0.0;
    for class in 0..3 {
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for &i in items {
            let s = scores(i)[class];
            if label(i, n) == class as i64 {
                pos.push(s)
            } else {
                neg.push(s)
            }
        }
        let mut wins = 0.0;
        for p in &pos {
            for q in &neg {
                wins += if p > q {
                    1.0
                } else if p == q {
                    0.5
                } else {
                    0.0
                };
            }
        }
        if !pos.is_empty() && !neg.is_empty() {
            total += wins / (pos.len() * neg.len()) as f64;
        }
    }
    total / 3.0
}

/// F1 averaged over the classes that occur in the targets or the predictions.
fn macro_f1(items: &[usize], n: usize) -> f64 {
    let (mut sum, mut classes) = (0.0, 0);
    for class in 0..3i64 {
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
        for &i in items {
            match (predicted(i) == class, label(i, n) == class) {
                (true, true) => tp += 1.0,
                (true, false) => fp += 1.0,
                (false, true) => fn_ += 1.0,
                _ => {}
            }
        }
        if tp + fp + fn_ > 0.0 {
            sum += 2.0 * tp / (2.0 * tp + fp + fn_);
            classes += 1;
        }
    }
    sum / classes as f64
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

/// Reads what the hooks saw, for the tests.
type Probe = Arc<Mutex<Vec<(String, f64)>>>;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Scorer {
    layer: Linear,
    train_acc: Accuracy,
    train_auroc: AUROC,
    train_items: SumMetric,
    val_metrics: MetricCollection,
    test_acc: Accuracy,
    /// Updated in `test_step`, never logged: the trainer does not reset it.
    test_seen: SumMetric,
    #[module(skip)]
    probe: Probe,
}

impl Scorer {
    fn new() -> Self {
        let val_metrics = MetricCollection::new()
            .with("acc", Accuracy::multiclass(3))
            .with("f1", F1Score::multiclass(3).average(Average::Macro))
            .with("auroc", AUROC::multiclass(3))
            .prefix("val_");
        Self {
            layer: LinearConfig::new(3, 3).init(&Device::default()),
            train_acc: Accuracy::multiclass(3),
            train_auroc: AUROC::multiclass(3),
            train_items: SumMetric::new(),
            val_metrics,
            test_acc: Accuracy::multiclass(3),
            test_seen: SumMetric::new(),
            probe: Probe::default(),
        }
    }

    /// The inputs themselves, with the layer taking part (times 0) so that there is a gradient.
    fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        x.clone() + self.layer.forward(x).mul_scalar(0.0)
    }

    fn seen(&self, name: &str) -> Vec<f64> {
        let probe = self.probe.lock().unwrap();
        probe.iter().filter(|(n, _)| n == name).map(|(_, v)| *v).collect()
    }
}

#[lightning_module]
impl Scorer {
    #[hook]
    fn training_step(&self, batch: Batch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let logits = self.logits(cx.cast_input(batch.x));
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone().cast(FloatDType::F32), batch.y.clone());
        self.train_acc.forward(&logits, &batch.y);
        self.train_auroc.update(&logits, &batch.y);
        self.train_items.update(batch.y.dims()[0] as f64);
        let both = LogOptions::new().on_step(true).on_epoch(true);
        cx.log_with("train_acc", &self.train_acc, both);
        let epoch = LogOptions::new().on_step(false).on_epoch(true);
        cx.log_with("train_auroc", &self.train_auroc, epoch.clone());
        cx.log_with("train_items", &self.train_items, epoch);
        loss
    }

    #[hook]
    fn on_train_epoch_end(&self) {
        // The epoch's state is there until the trainer resets the metric after this hook.
        let items = self.train_items.compute().unwrap();
        self.probe
            .lock()
            .unwrap()
            .push(("train_items_at_epoch_end".into(), items));
    }

    #[hook]
    fn validation_step(&self, batch: Batch, _batch_idx: usize, cx: &mut StepContext) {
        self.val_metrics.update(self.logits(batch.x), &batch.y);
        cx.log_dict(&self.val_metrics);
    }

    #[hook]
    fn test_step(&self, batch: Batch, _batch_idx: usize, cx: &mut StepContext) {
        let logits = self.logits(batch.x);
        self.test_acc.update(&logits, &batch.y);
        self.test_seen.update(batch.y.dims()[0] as f64);
        cx.log("test_acc", &self.test_acc);
    }

    #[hook]
    fn on_test_epoch_end(&self) {
        let seen = self.test_seen.compute().unwrap();
        self.probe.lock().unwrap().push(("test_seen".into(), seen));
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn builder(root: &Path) -> TrainerBuilder<Scorer> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .num_sanity_val_steps(0)
        .seed(3)
}

const TRAIN: usize = 22;
const VAL: usize = 13;

fn data() -> Loaders<Batch> {
    Loaders::fit(loader(TRAIN, 4), Some(loader(VAL, 5)))
}

#[test]
fn the_epoch_value_is_the_value_of_every_batch_and_the_step_value_the_last_batchs() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(2).build().unwrap();
    let model = trainer.fit(Scorer::new(), data()).unwrap();
    let metrics = trainer.callback_metrics();
    let all: Vec<usize> = (0..TRAIN).collect();
    let val: Vec<usize> = (0..VAL).collect();

    let train_acc = metrics.get("train_acc_epoch").unwrap();
    assert!(close(train_acc, accuracy(0..TRAIN, TRAIN)), "{train_acc}");
    // The last batch holds items 20 and 21: its own accuracy, logged on step.
    let step = metrics.get("train_acc_step").unwrap();
    assert!(close(step, accuracy(20..22, TRAIN)), "{step}");
    let auroc = metrics.get("train_auroc").unwrap();
    assert!(
        close(auroc, self::auroc(&all, TRAIN)),
        "{auroc} vs {}",
        self::auroc(&all, TRAIN)
    );
    // A mean of the batches' values is not the epoch's.
    let batch_means: f64 = (0..6)
        .map(|b| {
            let items: Vec<usize> = (b * 4..(b * 4 + 4).min(TRAIN)).collect();
            self::auroc(&items, TRAIN) * items.len() as f64
        })
        .sum::<f64>()
        / TRAIN as f64;
    assert!((auroc - batch_means).abs() > 1e-3, "the test data must tell them apart");
    // Reset after every epoch: the second epoch counts its own items only.
    assert_eq!(metrics.get("train_items"), Some(TRAIN as f64));
    assert_eq!(model.seen("train_items_at_epoch_end"), [TRAIN as f64, TRAIN as f64]);
    assert_eq!(model.train_items.compute().unwrap(), 0.0, "reset once logged");

    let val_acc = metrics.get("val_acc").unwrap();
    assert!(close(val_acc, accuracy(0..VAL, VAL)), "{val_acc}");
    let val_f1 = metrics.get("val_f1").unwrap();
    assert!(
        close(val_f1, macro_f1(&val, VAL)),
        "{val_f1} vs {}",
        macro_f1(&val, VAL)
    );
    let val_auroc = metrics.get("val_auroc").unwrap();
    assert!(close(val_auroc, self::auroc(&val, VAL)), "{val_auroc}");
    let logged = trainer.logged_metrics();
    assert_eq!(logged.get("val_acc"), Some(val_acc), "the loggers get the same values");

    // `validate` on its own returns them too, computed on the evaluation copy.
    let mut model = model;
    let results = trainer.validate(&mut model, Loaders::val(loader(VAL, 5))).unwrap();
    assert_eq!(results[0].get("val_acc"), Some(val_acc));
    assert_eq!(results[0].get("val_auroc"), Some(val_auroc));
}

#[test]
fn the_evaluation_copy_updates_the_callers_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let mut model = Scorer::new();
    let results = trainer.test(&mut model, Loaders::test(loader(VAL, 4))).unwrap();
    let test_acc = results[0].get("test_acc").unwrap();
    assert!(close(test_acc, accuracy(0..VAL, VAL)), "{test_acc}");
    // `test` runs on a copy of the module; its metric's state is the caller's.
    assert_eq!(model.test_seen.compute().unwrap(), VAL as f64);
    assert_eq!(model.seen("test_seen"), [VAL as f64]);
    // The logged metric is reset at the end of the run, as Lightning resets it.
    assert_eq!(model.test_acc.compute().unwrap(), 0.0);
}

#[test]
fn the_half_precision_view_updates_the_modules_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .precision("bf16-mixed")
        .max_epochs(1)
        .build()
        .unwrap();
    trainer.fit(Scorer::new(), data()).unwrap();
    let metrics = trainer.callback_metrics();
    let all: Vec<usize> = (0..TRAIN).collect();
    assert!(close(
        metrics.get("train_acc_epoch").unwrap(),
        accuracy(0..TRAIN, TRAIN)
    ));
    assert!(close(metrics.get("train_auroc").unwrap(), auroc(&all, TRAIN)));
    assert_eq!(metrics.get("train_items"), Some(TRAIN as f64));
}

#[test]
fn replicas_update_one_state_and_the_epoch_value_is_every_shards() {
    let dir = tempfile::tempdir().unwrap();
    let n = 24;
    let mut trainer = builder(dir.path()).devices(2).max_epochs(1).build().unwrap();
    trainer
        .fit(Scorer::new(), Loaders::fit(loader(n, 4), Some(loader(VAL, 5))))
        .unwrap();
    let metrics = trainer.callback_metrics();
    // Rank 0 trains on items 0..12, rank 1 on 12..24, 3 global steps of 2 x 4 items.
    assert_eq!(trainer.global_step(), 3);
    assert_eq!(metrics.get("train_items"), Some(n as f64), "both ranks' items");
    let all: Vec<usize> = (0..n).collect();
    let train_acc = metrics.get("train_acc_epoch").unwrap();
    assert!(close(train_acc, accuracy(0..n, n)), "{train_acc}");
    assert!(
        !close(train_acc, accuracy(0..n / 2, n)),
        "rank 0's items alone would differ"
    );
    assert!(close(metrics.get("train_auroc").unwrap(), auroc(&all, n)));
    // On step: rank zero's last batch (items 8..12).
    assert!(close(metrics.get("train_acc_step").unwrap(), accuracy(8..12, n)));
}

/// The checkpoint of `dir` whose name ends with `step=<step>.ckpt`.
fn checkpoint_at_step(dir: &Path, step: usize) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("step={step}.ckpt")))
        .unwrap_or_else(|| panic!("no checkpoint of step {step} in {}", dir.display()))
}

#[test]
fn a_fit_resumed_inside_an_epoch_computes_the_epoch_value_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let every_step = ModelCheckpoint::new().every_n_train_steps(1).save_top_k(-1);
    let mut trainer = builder(&dir.path().join("a"))
        .max_epochs(2)
        .callback(every_step)
        .build()
        .unwrap();
    trainer.fit(Scorer::new(), data()).unwrap();
    let uninterrupted = trainer.callback_metrics().clone();
    let checkpoints = dir.path().join("a/lightning_logs/version_0/checkpoints");

    // Step 8: the second batch of the second epoch (6 batches an epoch).
    let checkpoint = checkpoint_at_step(&checkpoints, 8);
    let saved = Checkpoint::load(&checkpoint).unwrap();
    let saved_acc = &saved.metrics["train_acc"];
    assert_eq!(saved_acc["logged_by"], "train", "{saved_acc}");
    let state = &saved_acc["state"];
    assert_eq!(state["tp"].as_array().unwrap().len(), 3, "{state}");
    let counted: i64 = ["tp", "fn"]
        .iter()
        .flat_map(|k| state[*k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .sum();
    assert_eq!(counted, 8, "two batches of the epoch: {state}");
    assert!(
        !saved.metrics.contains_key("val_metrics.acc"),
        "validation metrics are reset: {:?}",
        saved.metrics
    );

    let mut resumed = builder(&dir.path().join("b")).max_epochs(2).build().unwrap();
    resumed.fit_from(Scorer::new(), data(), &checkpoint).unwrap();
    let metrics = resumed.callback_metrics();
    for name in [
        "train_acc_epoch",
        "train_auroc",
        "train_items",
        "val_acc",
        "val_auroc",
        "val_f1",
    ] {
        assert_eq!(metrics.get(name), uninterrupted.get(name), "{name}");
    }
    assert_eq!(metrics.get("train_items"), Some(TRAIN as f64));

    // Resumed after the last batch of the second epoch: that epoch ends with every batch's
    // state, the third starts from nothing.
    let last_batch = checkpoint_at_step(&checkpoints, 12);
    let mut resumed = builder(&dir.path().join("c")).max_epochs(3).build().unwrap();
    let model = resumed.fit_from(Scorer::new(), data(), &last_batch).unwrap();
    assert_eq!(model.seen("train_items_at_epoch_end"), [TRAIN as f64, TRAIN as f64]);
}

/// A module whose metric is given input it cannot take.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Mismatched {
    layer: Linear,
    acc: Accuracy,
    mean: MeanMetric,
    /// `true`: targets outside the metric's classes; `false`: scores of too few classes.
    #[module(skip)]
    bad_targets: bool,
}

#[lightning_module]
impl Mismatched {
    #[hook]
    fn training_step(&self, batch: Batch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let logits = batch.x.clone() + self.layer.forward(batch.x).mul_scalar(0.0);
        self.mean.update(logits.clone());
        if self.bad_targets {
            // Class indices of 2 classes, against targets of 3.
            self.acc.update(logits.clone().argmax(1).clamp(0, 1), &batch.y);
        } else {
            self.acc.update(&logits, &batch.y);
        }
        cx.log_with("acc", &self.acc, LogOptions::new().on_epoch(true));
        cx.log("mean", &self.mean);
        logits.sum()
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

#[test]
fn input_a_metric_cannot_take_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = |classes: usize, bad_targets: bool| {
        let mut trainer = Trainer::builder()
            .default_root_dir(dir.path())
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .max_epochs(1)
            .build()
            .unwrap();
        let model = Mismatched {
            layer: LinearConfig::new(3, 3).init(&Device::default()),
            acc: Accuracy::multiclass(classes),
            mean: MeanMetric::new(),
            bad_targets,
        };
        trainer
            .fit(model, Loaders::fit(loader(8, 4), None))
            .expect_err("an error")
            .to_string()
    };
    // Found when the metric is logged, in the step that gave it the input.
    let message = run(4, false);
    assert!(
        message.contains("`Accuracy` (multiclass, 4 classes") && message.contains("3 columns for 4 classes"),
        "{message}"
    );
    // Counted on the device, reported when the epoch's value is computed.
    let message = run(2, true);
    assert!(
        message.contains("`Accuracy` (multiclass, 2 classes") && message.contains("were not labels of its task"),
        "{message}"
    );
}

#[test]
fn a_clone_shares_the_state_and_fresh_makes_a_new_one() {
    let device = Device::default();
    let acc = Accuracy::multiclass(3);
    let clone = acc.clone();
    let fresh = acc.fresh();
    let logits = Tensor::<2>::from_data([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], &device);
    let targets = Tensor::<1, Int>::from_data([0, 2], &device);
    clone.update(&logits, &targets);
    assert_eq!(acc.compute().unwrap(), 0.5);
    assert_eq!(fresh.compute().unwrap(), 0.0, "nothing updated");
    acc.reset();
    assert_eq!(clone.compute().unwrap(), 0.0);
    // The batch value of `forward`, on the device.
    let value = fresh.forward(&logits, &targets).into_scalar::<f64>();
    assert_eq!(value, 0.5);
}
