//! MNIST validated and tested on two sets at once, a clean one and a noisy copy of it (as
//! Lightning validates in-domain and out-of-domain data with several dataloaders), then used to
//! predict the digits of unlabelled images.
//!
//! Every validation and test metric is logged once per dataloader: `val_acc/dataloader_idx_0`
//! (clean) and `val_acc/dataloader_idx_1` (noisy); `test` returns one `Metrics` per set.
//!
//! The predictions are written to `predictions.csv` (`position,digit`) by a `PredictionWriter`,
//! on a trainer with `return_predictions(false)`, and read back from there.
//!
//! `cargo run --release --example mnist_noisy [-- EPOCHS]` (3 epochs by default);
//! `tests/mnist_noisy.rs` runs it for two short epochs.

#[path = "common/mnist.rs"]
mod mnist;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::AdamConfig;
use burn_lightning::metrics::Accuracy;
use burn_lightning::prelude::*;
use mnist::{MnistData, MnistSplit, PIXELS};
use std::path::PathBuf;

/// Images `[n, 784]` and their digits `[n]`: what training, validation and test take.
#[derive(Clone, Debug)]
pub struct Digits {
    pub images: Tensor<2>,
    pub labels: Tensor<1, Int>,
}

/// Images `[n, 784]` without labels: what `predict_step` takes (each stage has its own batch
/// type, the predict stage this one).
#[derive(Clone, Debug)]
pub struct Images {
    pub images: Tensor<2>,
}

/// The noise added to every pixel of the noisy copy, in pixel units (a pixel is 0 to 1).
const NOISE: f32 = 0.6;

/// Builds [`Digits`] (and [`Images`]) from item indices into a split: clean or noisy.
#[derive(Clone, Debug)]
struct DigitsBatcher {
    split: MnistSplit,
    noisy: bool,
}

impl DigitsBatcher {
    /// The normalized pixels `[n, 784]` of the items.
    fn images(&self, items: &[usize], device: &Device) -> Tensor<2> {
        let n = items.len();
        let mut pixels = Vec::with_capacity(n * PIXELS);
        for &i in items {
            let image = &self.split.images[i * PIXELS..(i + 1) * PIXELS];
            pixels.extend(image.iter().enumerate().map(|(p, &byte)| {
                let mut value = f32::from(byte) / 255.0;
                if self.noisy {
                    value = (value + NOISE * noise(i * PIXELS + p)).clamp(0.0, 1.0);
                }
                // The usual MNIST normalization (mean 0.1307, std 0.3081).
                (value - 0.1307) / 0.3081
            }));
        }
        Tensor::from_data(TensorData::new(pixels, [n, PIXELS]), device)
    }
}

impl Batcher<usize, Digits> for DigitsBatcher {
    fn batch(&self, items: Vec<usize>, device: &Device) -> Digits {
        let labels: Vec<i64> = items.iter().map(|&i| i64::from(self.split.labels[i])).collect();
        Digits {
            images: self.images(&items, device),
            labels: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
        }
    }
}

impl Batcher<usize, Images> for DigitsBatcher {
    fn batch(&self, items: Vec<usize>, device: &Device) -> Images {
        Images {
            images: self.images(&items, device),
        }
    }
}

/// A fixed pseudo-random value in [-1, 1] for each pixel of the data set (a hash of its index):
/// the noisy copy is the same at every epoch and every run.
fn noise(index: usize) -> f32 {
    let mut x = index as u64 ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// The bundled MNIST files: training items (shuffled) less `val_items` held out, validated and
/// tested clean and noisy; the first `predict_items` test images, without their labels, to
/// predict.
pub struct CleanAndNoisy {
    dir: PathBuf,
    batch_size: usize,
    val_items: usize,
    predict_items: usize,
    seed: u64,
    train: Option<MnistSplit>,
    test: Option<MnistSplit>,
}

impl CleanAndNoisy {
    pub fn new(batch_size: usize, val_items: usize, predict_items: usize) -> Self {
        Self {
            dir: MnistData::bundled_dir(),
            batch_size,
            val_items,
            predict_items,
            seed: 42,
            train: None,
            test: None,
        }
    }

    /// A loader of `items` of `split`, of labelled [`Digits`] or of [`Images`].
    fn loader<B>(&self, split: &MnistSplit, items: Vec<usize>, noisy: bool) -> Loader<B>
    where
        DigitsBatcher: Batcher<usize, B>,
        B: Clone + std::fmt::Debug + Send + 'static,
    {
        let batcher = DigitsBatcher {
            split: split.clone(),
            noisy,
        };
        DataLoaderBuilder::new(batcher)
            .batch_size(self.batch_size)
            .build(InMemDataset::new(items))
    }

    /// The labels of the images `predict_dataloader` gives without them, to score predictions.
    pub fn predict_labels(&self) -> Option<Vec<u8>> {
        let test = self.test.as_ref()?;
        Some(test.labels[..self.predict_items.min(test.len())].to_vec())
    }
}

/// Labelled digits for training, validation and test; images alone for prediction.
impl DataModule<Digits, Digits, Digits, Images> for CleanAndNoisy {
    fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    fn setup(&mut self, stage: Stage) -> Result<(), Error> {
        burn_lightning::check_batch_size(self.batch_size, "CleanAndNoisy::new")?;
        if matches!(stage, Stage::Fit | Stage::Validate) && self.train.is_none() {
            self.train = Some(MnistSplit::read(&self.dir, "train").map_err(Error::user)?);
        }
        if matches!(stage, Stage::Test | Stage::Predict) && self.test.is_none() {
            self.test = Some(MnistSplit::read(&self.dir, "t10k").map_err(Error::user)?);
        }
        Ok(())
    }

    fn train_dataloader(&mut self) -> Option<Loader<Digits>> {
        let train = self.train.as_ref()?;
        let items = (0..train.len().saturating_sub(self.val_items)).collect();
        let batcher = DigitsBatcher {
            split: train.clone(),
            noisy: false,
        };
        Some(
            DataLoaderBuilder::new(batcher)
                .batch_size(self.batch_size)
                .shuffle(self.seed)
                .build(InMemDataset::new(items)),
        )
    }

    /// Two validation sets: dataloader 0 clean, dataloader 1 the same images with noise.
    fn val_dataloaders(&mut self) -> Vec<Loader<Digits>> {
        let Some(train) = self.train.as_ref() else {
            return Vec::new();
        };
        let held_out: Vec<usize> = (train.len().saturating_sub(self.val_items)..train.len()).collect();
        vec![
            self.loader(train, held_out.clone(), false),
            self.loader(train, held_out, true),
        ]
    }

    /// The test set, clean and noisy.
    fn test_dataloaders(&mut self) -> Vec<Loader<Digits>> {
        let Some(test) = self.test.as_ref() else {
            return Vec::new();
        };
        let all: Vec<usize> = (0..test.len()).collect();
        vec![self.loader(test, all.clone(), false), self.loader(test, all, true)]
    }

    /// Images without labels.
    fn predict_dataloader(&mut self) -> Option<Loader<Images>> {
        let test = self.test.as_ref()?;
        let items = (0..self.predict_items.min(test.len())).collect();
        Some(self.loader(test, items, false))
    }
}

/// Classifies MNIST digits with a two-layer perceptron (784-128-10), measuring its accuracy on
/// each validation and test set with a metric object of its own.
#[lightning_module]
#[derive(Module, Debug)]
pub struct NoisyMnist {
    l1: Linear,
    act: Relu,
    l2: Linear,
    /// Accuracy on each validation set (clean, noisy), as Lightning's `ModuleList` of metrics.
    val_acc: Vec<Accuracy>,
    test_acc: Vec<Accuracy>,
    /// Adam's learning rate.
    #[hparam(default = 1e-3)]
    lr: f64,
}

impl NoisyMnist {
    pub fn new(hparams: &NoisyMnistHparams, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(PIXELS, 128).init(device),
            act: Relu::new(),
            l2: LinearConfig::new(128, 10).init(device),
            val_acc: vec![Accuracy::multiclass(10), Accuracy::multiclass(10)],
            test_acc: vec![Accuracy::multiclass(10), Accuracy::multiclass(10)],
            lr: hparams.lr,
        }
    }

    fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.l2.forward(self.act.forward(self.l1.forward(images)))
    }

    /// Class scores and loss of a labelled batch.
    fn evaluate(&self, batch: &Digits) -> (Tensor<2>, Tensor<1>) {
        let logits = self.forward(batch.images.clone());
        let loss = mnist::cross_entropy(logits.clone(), batch.labels.clone());
        (logits, loss)
    }
}

#[lightning_module]
impl NoisyMnist {
    #[hook]
    fn training_step(&self, batch: Digits, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let (_, loss) = self.evaluate(&batch);
        cx.log_with("train_loss", &loss, LogOptions::new().prog_bar(true));
        loss
    }

    /// Logged as `val_loss/dataloader_idx_N` and `val_acc/dataloader_idx_N`: each set is
    /// reduced on its own.
    #[hook]
    fn validation_step(&self, batch: Digits, _batch_idx: usize, dataloader_idx: usize, cx: &mut StepContext) {
        let (logits, loss) = self.evaluate(&batch);
        let accuracy = &self.val_acc[dataloader_idx];
        accuracy.update(&logits, &batch.labels);
        cx.log_with("val_loss", loss, LogOptions::new().prog_bar(true));
        cx.log_with("val_acc", accuracy, LogOptions::new().prog_bar(true));
    }

    #[hook]
    fn test_step(&self, batch: Digits, _batch_idx: usize, dataloader_idx: usize, cx: &mut StepContext) {
        let (logits, loss) = self.evaluate(&batch);
        let accuracy = &self.test_acc[dataloader_idx];
        accuracy.update(&logits, &batch.labels);
        cx.log("test_loss", loss);
        cx.log("test_acc", accuracy);
    }

    /// The predicted digits of images without labels: the predict stage's batches are
    /// [`Images`], the other stages' [`Digits`].
    #[hook]
    fn predict_step(&self, batch: Images, _batch_idx: usize) -> Tensor<1, Int> {
        self.forward(batch.images).argmax(1).squeeze_dim::<1>(1)
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new(), self.lr)
    }
}

/// What a run found.
pub struct Outcome {
    /// Validation accuracy of the last epoch on the clean set and on the noisy set.
    pub val_acc: [f64; 2],
    /// Test accuracy on the clean set and on the noisy set.
    pub test_acc: [f64; 2],
    /// The predicted digit of every unlabelled image, and its true label, as read back from
    /// the file the prediction writer wrote.
    pub predicted: Vec<(i64, u8)>,
    /// That file: `position,digit` per image, in the loader's order.
    pub predictions_file: PathBuf,
    /// The predictions `predict` returned: none, with `return_predictions(false)`.
    pub returned: usize,
}

/// Trains for `max_epochs` (at most `train_batches` batches each, when given), tests on both
/// sets and predicts `predict_items` unlabelled images into `<root>/predictions.csv`; writes
/// under `root`.
pub fn run(
    max_epochs: usize,
    train_batches: Option<usize>,
    predict_items: usize,
    root: impl Into<PathBuf>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let device = Device::default();
    let model = NoisyMnist::new(&NoisyMnistHparams::default(), &device);
    let mut data = CleanAndNoisy::new(64, 1000, predict_items);
    let root: PathBuf = root.into();
    let mut builder = Trainer::builder()
        .max_epochs(max_epochs)
        .seed(42)
        .default_root_dir(&root);
    if let Some(batches) = train_batches {
        builder = builder.limit_train_batches(batches);
    }
    let mut trainer = builder.build()?;
    let mut model = trainer.fit(model, &mut data)?;
    let logged = trainer.callback_metrics();
    let val_acc = |idx: usize| {
        logged
            .get(&format!("val_acc/dataloader_idx_{idx}"))
            .ok_or("val_acc was not logged")
    };
    let val_acc = [val_acc(0)?, val_acc(1)?];

    // One `Metrics` per test set, in dataloader order.
    let results = trainer.test(&mut model, &mut data)?;
    let accuracy = |idx: usize| {
        results
            .get(idx)
            .and_then(|metrics| metrics.get(&format!("test_acc/dataloader_idx_{idx}")))
            .ok_or("test_acc was not logged")
    };
    let test_acc = [accuracy(0)?, accuracy(1)?];

    // Prediction on a trainer of its own, which writes each batch's digits to a file as it
    // goes (a `PredictionWriter`) and keeps none of them (`return_predictions(false)`).
    let file = root.join("predictions.csv");
    let writer = DigitsCsv {
        out: std::io::BufWriter::new(std::fs::File::create(&file)?),
    };
    let mut predictor = Trainer::builder()
        .default_root_dir(&root)
        .callback(PredictionWriter::new(writer, WriteInterval::Batch))
        .return_predictions(false)
        .build()?;
    let returned = predictor.predict(&mut model, &mut data)?.len();
    let labels = data.predict_labels().ok_or("the test set was not read")?;
    let mut digits = Vec::new();
    for line in std::fs::read_to_string(&file)?.lines() {
        let (_, digit) = line
            .split_once(',')
            .ok_or("a line of predictions.csv without a comma")?;
        digits.push(digit.parse::<i64>()?);
    }
    Ok(Outcome {
        val_acc,
        test_acc,
        predicted: digits.into_iter().zip(labels).collect(),
        predictions_file: file,
        returned,
    })
}

/// Writes `position,digit` per predicted image, a batch at a time.
struct DigitsCsv {
    out: std::io::BufWriter<std::fs::File>,
}

impl WritePredictions<NoisyMnist> for DigitsCsv {
    fn write_on_batch_end(
        &mut self,
        _module: &NoisyMnist,
        prediction: &Tensor<1, Int>,
        batch_indices: &[usize],
        _batch: &Images,
        _batch_idx: usize,
        _dataloader_idx: usize,
    ) -> Result<(), Error> {
        use std::io::Write;
        let digits = prediction.clone().into_data().iter::<i64>().collect::<Vec<_>>();
        for (position, digit) in batch_indices.iter().zip(digits) {
            writeln!(self.out, "{position},{digit}").map_err(Error::user)?;
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
    let outcome = run(epochs, None, 20, "target/mnist_noisy")?;
    println!(
        "test accuracy: clean {:.2}%, noisy {:.2}%",
        outcome.test_acc[0] * 100.0,
        outcome.test_acc[1] * 100.0
    );
    let shown: Vec<String> = outcome
        .predicted
        .iter()
        .map(|(digit, label)| format!("{digit} ({label})"))
        .collect();
    println!(
        "predicted digits of unlabelled images (true label), written to {}: {}",
        outcome.predictions_file.display(),
        shown.join(", ")
    );
    Ok(())
}
