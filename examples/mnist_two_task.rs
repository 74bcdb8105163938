//! Two-task MNIST on a combined loader: one network with a shared hidden layer and two heads,
//! one naming the digit, trained on a small labelled set, the other telling whether the digit is
//! at least 5, trained on a larger set of its own. Each training batch is a tuple of one batch of
//! each set, read by a `CombinedLoader` in `max_size_cycle` mode (Lightning's default for
//! training): an epoch runs as many batches as the larger set has, and the smaller set starts
//! again, reshuffled, each time it runs out.
//!
//! Validation reads the tuple too (each stage may have its own batch type; this one keeps the
//! training's so that one validation step scores both heads): held-out items of both tasks,
//! combined in `min_size` mode.
//!
//! After the fit, a prediction run (on a trainer of its own) reads the held-out digit images
//! from a plain loader (the predict stage has a batch type of its own: one `MnistBatch`, not the
//! tuple), and a `PredictionWriter` writes both heads' answers to `predictions.csv` after each
//! batch (`position,digit,at_least_5,true_digit`), with `return_predictions(false)` so that
//! `predict` keeps none of them.
//!
//! `cargo run --release --example mnist_two_task [-- EPOCHS]` (3 epochs by default);
//! `tests/mnist_two_task.rs` runs it for a few batches.

#[path = "common/mnist.rs"]
mod mnist;

use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn_lightning::prelude::*;
use mnist::{MnistBatch, MnistData, MnistSplit, PIXELS, loss_and_accuracy};
use std::io::Write;
use std::path::PathBuf;

/// One batch of each task: (digit images with their digits, images with their digits, whose
/// second head predicts `digit >= 5`).
pub type TwoTasks = (MnistBatch, MnistBatch);

#[lightning_module]
#[derive(Module, Debug)]
pub struct TwoTaskMnist {
    shared: Linear,
    digit_head: Linear,
    high_head: Linear,
    activation: Relu,
}

impl TwoTaskMnist {
    pub fn new(hidden: usize) -> Self {
        let device = Device::default();
        Self {
            shared: LinearConfig::new(PIXELS, hidden).init(&device),
            digit_head: LinearConfig::new(hidden, 10).init(&device),
            high_head: LinearConfig::new(hidden, 2).init(&device),
            activation: Relu::new(),
        }
    }

    fn features(&self, images: Tensor<2>) -> Tensor<2> {
        self.activation.forward(self.shared.forward(images))
    }

    /// Each task's loss and accuracy.
    fn losses(&self, (digits, highs): TwoTasks) -> [(Tensor<1>, Tensor<1>); 2] {
        let digit_logits = self.digit_head.forward(self.features(digits.images));
        let high_logits = self.high_head.forward(self.features(highs.images));
        let high = highs.targets.greater_equal_elem(5).int();
        [
            loss_and_accuracy(digit_logits, digits.targets),
            loss_and_accuracy(high_logits, high),
        ]
    }
}

#[lightning_module]
impl TwoTaskMnist {
    #[hook]
    fn training_step(&self, batch: TwoTasks, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let [(digit_loss, _), (high_loss, _)] = self.losses(batch);
        cx.log("train_digit_loss", digit_loss.clone());
        cx.log("train_high_loss", high_loss.clone());
        digit_loss + high_loss
    }

    #[hook]
    fn validation_step(&self, batch: TwoTasks, _batch_idx: usize, cx: &mut StepContext) {
        let [(_, digit_acc), (_, high_acc)] = self.losses(batch);
        cx.log("val_digit_acc", digit_acc);
        cx.log("val_high_acc", high_acc);
    }

    /// Both heads' answers for each image: `[n, 2]`, the digit and whether it is at least 5
    /// (1 or 0). The predict stage's batches are single [`MnistBatch`]es, not the tuple.
    #[hook]
    fn predict_step(&self, batch: MnistBatch, _batch_idx: usize) -> Tensor<2, Int> {
        let features = self.features(batch.images);
        let digit = self.digit_head.forward(features.clone()).argmax(1);
        let high = self.high_head.forward(features).argmax(1);
        Tensor::cat(vec![digit, high], 1)
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().init(), 1e-3)
    }
}

/// The bundled MNIST training file cut into the two tasks' sets: `digit_items` labelled with
/// their digit, the next `high_items` for the second task, and `val_items` of each held out.
pub struct TwoTaskData {
    dir: PathBuf,
    batch_size: usize,
    digit_items: usize,
    high_items: usize,
    val_items: usize,
    seed: u64,
    train: Option<Loader<TwoTasks>>,
    val: Option<Loader<TwoTasks>>,
    predict: Option<Loader<MnistBatch>>,
}

impl TwoTaskData {
    pub fn new(batch_size: usize, digit_items: usize, high_items: usize, val_items: usize) -> Self {
        Self {
            dir: MnistData::bundled_dir(),
            batch_size,
            digit_items,
            high_items,
            val_items,
            seed: 42,
            train: None,
            val: None,
            predict: None,
        }
    }
}

/// Training and validation read both tasks' tuples; prediction reads the held-out digit images.
impl DataModule<TwoTasks, TwoTasks, TwoTasks, MnistBatch> for TwoTaskData {
    fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    fn setup(&mut self, _stage: Stage) -> Result<(), Error> {
        burn_lightning::check_batch_size(self.batch_size, "TwoTaskData::new")?;
        let split = MnistSplit::read(&self.dir, "train").map_err(Error::user)?;
        let (digits, highs, val) = (self.digit_items, self.high_items, self.val_items);
        let needed = digits + highs + 2 * val;
        if needed > split.len() {
            return Err(Error::user(format!(
                "the two tasks need {needed} training images, the file has {}: ask for fewer items",
                split.len()
            )));
        }
        let items = |start: usize, count: usize| (start..start + count).collect::<Vec<_>>();
        let loader = |start, count, shuffle| mnist::loader(&split, items(start, count), self.batch_size, shuffle);
        // The two training sets are shuffled with seeds of their own: every pass a new order.
        self.train = Some(CombinedLoader::new(
            (
                loader(0, digits, Some(self.seed)),
                loader(digits, highs, Some(self.seed + 1)),
            ),
            CombinedMode::MaxSizeCycle,
        )?);
        let held_out = digits + highs;
        self.val = Some(CombinedLoader::new(
            (loader(held_out, val, None), loader(held_out + val, val, None)),
            CombinedMode::MinSize,
        )?);
        self.predict = Some(loader(held_out, val, None));
        Ok(())
    }

    fn train_dataloader(&mut self) -> Option<Loader<TwoTasks>> {
        self.train.clone()
    }

    fn val_dataloader(&mut self) -> Option<Loader<TwoTasks>> {
        self.val.clone()
    }

    fn predict_dataloader(&mut self) -> Option<Loader<MnistBatch>> {
        self.predict.clone()
    }
}

/// What a run reached: each task's validation accuracy, the training batches it ran, and where
/// the prediction run wrote.
pub struct Outcome {
    pub val_digit_acc: f64,
    pub val_high_acc: f64,
    pub global_step: usize,
    /// `position,digit,at_least_5,true_digit` per held-out digit image, in the loader's order.
    pub predictions_file: PathBuf,
    /// The predictions `predict` returned: none, with `return_predictions(false)`.
    pub returned: usize,
}

/// Trains `max_epochs` epochs (at most `train_batches` batches each) on `data`, then predicts
/// the held-out digit images into `<root>/predictions.csv`; writes under `root`.
pub fn run(
    max_epochs: usize,
    train_batches: Option<usize>,
    mut data: TwoTaskData,
    root: impl Into<PathBuf>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let root: PathBuf = root.into();
    let mut builder = Trainer::builder()
        .max_epochs(max_epochs)
        .seed(42)
        .default_root_dir(&root);
    if let Some(batches) = train_batches {
        builder = builder.limit_train_batches(batches);
    }
    let mut trainer = builder.build()?;
    let mut model = trainer.fit(TwoTaskMnist::new(64), &mut data)?;
    let logged = trainer.callback_metrics();
    let get = |name: &str| logged.get(name).ok_or(format!("{name} was not logged"));
    let (val_digit_acc, val_high_acc) = (get("val_digit_acc")?, get("val_high_acc")?);

    // Prediction on a trainer of its own, writing each batch's answers to a file as it goes
    // and keeping none of them.
    let file = root.join("predictions.csv");
    let writer = AnswersCsv {
        out: std::io::BufWriter::new(std::fs::File::create(&file)?),
    };
    let mut predictor = Trainer::builder()
        .default_root_dir(&root)
        .callback(PredictionWriter::new(writer, WriteInterval::Batch))
        .return_predictions(false)
        .build()?;
    let returned = predictor.predict(&mut model, &mut data)?.len();
    Ok(Outcome {
        val_digit_acc,
        val_high_acc,
        global_step: trainer.global_step(),
        predictions_file: file,
        returned,
    })
}

/// Writes `position,digit,at_least_5,true_digit` per image, a batch at a time.
struct AnswersCsv {
    out: std::io::BufWriter<std::fs::File>,
}

impl WritePredictions<TwoTaskMnist> for AnswersCsv {
    fn write_on_batch_end(
        &mut self,
        _module: &TwoTaskMnist,
        prediction: &Tensor<2, Int>,
        batch_indices: &[usize],
        batch: &MnistBatch,
        _batch_idx: usize,
        _dataloader_idx: usize,
    ) -> Result<(), Error> {
        // Row-major `[n, 2]`: each item's digit, then its `at least 5`.
        let answers = prediction.clone().into_data().iter::<i64>().collect::<Vec<_>>();
        let truth = batch.targets.clone().into_data().iter::<i64>().collect::<Vec<_>>();
        for ((position, pair), true_digit) in batch_indices.iter().zip(answers.chunks(2)).zip(truth) {
            writeln!(self.out, "{position},{},{},{true_digit}", pair[0], pair[1]).map_err(Error::user)?;
        }
        // Each batch whole on disk: a write error surfaces here, not when the file is dropped.
        self.out.flush().map_err(Error::user)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("EPOCHS must be a number, not `{arg}`"))?,
        None => 3,
    };
    // 2,000 digit images (32 batches) and 8,000 for the second task (125 batches): an epoch is
    // 125 batches, the digit set read about four times.
    let outcome = run(
        epochs,
        None,
        TwoTaskData::new(64, 2_000, 8_000, 1_000),
        "target/mnist_two_task",
    )?;
    println!(
        "validation accuracy: digit {:.2}%, at least 5 {:.2}% ({} steps)",
        outcome.val_digit_acc * 100.0,
        outcome.val_high_acc * 100.0,
        outcome.global_step
    );
    println!(
        "predictions of the held-out digits written to {} ({} returned)",
        outcome.predictions_file.display(),
        outcome.returned
    );
    Ok(())
}
