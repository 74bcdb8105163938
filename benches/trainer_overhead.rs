//! What the Lightning trainer costs over a hand-written burn loop, and over burn's own trainer.
//!
//! Two models train on the bundled MNIST data: the perceptron of the `mnist` example (`mlp`,
//! 784-128-10) and a LeNet-5-sized CNN (`cnn`, `examples/common/lit_lenet.rs`), both with Adam
//! 1e-3 and batch 64, with the same dataloaders (`MnistData`), the same model code (the
//! cross-entropy of `mnist::cross_entropy`, the validation accuracy of a metric object,
//! `metrics::Accuracy`, updated on the device at every validation batch) and the same work per
//! epoch: every training batch, then every validation batch on the evaluation copy
//! (`model.valid()`), with the epoch means of the training and validation losses and the
//! accuracy's value read back once per epoch.
//!
//! Sides (`--sides`, comma-separated; all by default):
//! - `hand-written` (a): the hand-written loop;
//! - `trainer` (b): `Trainer::fit` with its defaults (sanity check, the `ProgressBar`: bars on a
//!   terminal, one line per epoch when stdout is piped), a `ModelCheckpoint` written every epoch
//!   and the default TensorBoard logger, into a temporary `default_root_dir`), timed by a
//!   callback;
//! - with the `bench-peers` feature (`--features bench-peers`: burn's `train` feature, without
//!   its terminal dashboard and system metrics), burn-train's `SupervisedTraining` on a
//!   `Learner` with the same model, optimizer and batches: `burn-train` configured as burn's
//!   MNIST example does (loss and accuracy metrics on both splits, the file metric logger, the
//!   experiment log, checkpoints every epoch with its default keep-last-2 and best-loss strategy,
//!   the summary), and `burn-train-minimal` (no metrics, no checkpoints, an in-memory metric
//!   logger, no experiment log). Both use burn-train's renderer for a non-terminal (its CLI
//!   renderer, which is what it uses without the `tui` feature). Epochs are timed by a wrapper
//!   around the training dataloader (an epoch starts when burn-train asks for its batches).
//!   burn-train asks for burn-flex's default features (`std`, `simd`, `rayon`), so with
//!   `bench-peers` every side of the run trains on that build of flex: ratios within a run
//!   compare like with like, absolute times may differ from a build without the feature.
//!
//! Runs of every side alternate (the order rotates every repetition), `--reps` times each, so
//! that drift in the machine's load hits all. The first epoch of every run is a warm-up and is
//! left out. The headline ratio compares the median time per epoch from one epoch's start to the
//! next's: training, validation, metric reads, the summary line and, for the trainers, their
//! checkpoints and loggers' writes. For (a) and (b) the time from `on_train_epoch_start` to
//! `on_train_epoch_end` (training and validation only) is reported beside it. Besides the wall
//! clock, the process's CPU time is measured where Linux reports it (`/proc`, to the scheduler
//! tick): it is less disturbed by other processes on a busy machine. The `RATIO` lines give both
//! ratios against the hand-written loop, wall clock and CPU time.
//!
//! (a) and (b) must end every repetition with bit-identical final metrics (training loss,
//! validation loss and accuracy, compared as `f64` bits), which shows that they did the same
//! work; if they do not, the benchmark stops with an error and a non-zero exit status. For the
//! burn-train sides the validation loss and accuracy of the trained model, evaluated as (a)
//! evaluates it, are compared with (a)'s and the `BENCH` line says whether they match
//! (`same_work=yes|no`).
//!
//! `--startup-reps N` (default 0) also measures, for every side and model, the time from
//! spawning this binary as a child process (`--child SIDE`) to its first optimizer step (a
//! marker line it prints), and its peak resident set size (`VmHWM` of `/proc/self/status`,
//! printed by the child when it ends); the median over N children is reported in `STARTUP`
//! lines.
//!
//! `cargo bench --bench trainer_overhead [--features bench-peers] [-- --models mlp,cnn --sides
//! LIST --epochs N --reps N --startup-reps N --side a|b --profiler NAME]`, or the environment
//! variables `TRAINER_OVERHEAD_MODELS`, `TRAINER_OVERHEAD_SIDES`, `TRAINER_OVERHEAD_EPOCHS`,
//! `TRAINER_OVERHEAD_REPS`, `TRAINER_OVERHEAD_STARTUP_REPS`, `TRAINER_OVERHEAD_SIDE` and
//! `TRAINER_OVERHEAD_PROFILER` (`--side` runs (a) or (b) only, to profile it; `--profiler
//! simple|advanced` turns the trainer's profiler on, to measure what it costs). `--models`
//! defaults to `mlp`. Lines starting with `BENCH`, `RATIO` and `STARTUP` are meant for
//! `benches/run_all.sh`.

#[path = "../examples/common/lit_lenet.rs"]
mod lit_lenet;
#[path = "../examples/common/lit_mnist.rs"]
mod lit_mnist;
#[path = "../examples/common/mnist.rs"]
mod mnist;

use burn::optim::{AdamConfig, GradientsParams};
use burn_lightning::metrics::Accuracy;
use burn_lightning::prelude::*;
use burn_lightning::{ConfigureOptimizers, TrainingStep};
use lit_lenet::{LitLenet, LitLenetHparams};
use lit_mnist::{LitMnist, LitMnistHparams};
use mnist::{MnistBatch, MnistData};
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SEED: u64 = 42;
const BATCH_SIZE: usize = 64;
const VAL_ITEMS: usize = 1000;
/// The line a child process prints after its first optimizer step.
const FIRST_STEP_MARKER: &str = "FIRST_OPTIMIZER_STEP_DONE";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Set once the first optimizer step is done; in a child process (`--child`), the first side to
/// set it prints [`FIRST_STEP_MARKER`].
static FIRST_STEP_SEEN: AtomicBool = AtomicBool::new(false);
/// Whether this process is a `--child` whose first optimizer step is awaited.
static IS_CHILD: AtomicBool = AtomicBool::new(false);

/// Optimizer steps taken so far in this process, to show how many steps each side took.
static OPTIMIZER_STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Called after every optimizer step: counts it, and prints the marker once, in a child process.
fn optimizer_stepped() {
    OPTIMIZER_STEPS.fetch_add(1, Ordering::Relaxed);
    if IS_CHILD.load(Ordering::Relaxed) && !FIRST_STEP_SEEN.swap(true, Ordering::Relaxed) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{FIRST_STEP_MARKER}");
        let _ = stdout.flush();
    }
}

/// A model of the benchmark: the code every side shares.
trait BenchModel:
    TrainingStep<Batch = MnistBatch, ValBatch = MnistBatch, TestBatch = MnistBatch, PredictBatch = MnistBatch>
    + ConfigureOptimizers
    + burn::module::Module
    + 'static
{
    /// The name on the command line and in the results.
    const NAME: &'static str;
    /// A fresh model with its default hyperparameters.
    fn fresh(device: &Device) -> Self;
    /// Adam's learning rate.
    fn learning_rate() -> f64;
    /// Class scores `[n, 10]` of images `[n, 784]`.
    fn logits(&self, images: Tensor<2>) -> Tensor<2>;
    /// Cross-entropy loss of a batch (what `training_step` computes).
    fn loss(&self, batch: MnistBatch) -> Tensor<1> {
        mnist::cross_entropy(self.logits(batch.images), batch.targets)
    }
}

impl BenchModel for LitMnist {
    const NAME: &'static str = "mlp";
    fn fresh(device: &Device) -> Self {
        LitMnist::new(&LitMnistHparams::new(), device)
    }
    fn learning_rate() -> f64 {
        LitMnistHparams::new().lr
    }
    fn logits(&self, images: Tensor<2>) -> Tensor<2> {
        self.forward(images)
    }
}

impl BenchModel for LitLenet {
    const NAME: &'static str = "cnn";
    fn fresh(device: &Device) -> Self {
        LitLenet::new(&LitLenetHparams::new(), device)
    }
    fn learning_rate() -> f64 {
        LitLenetHparams::new().lr
    }
    fn logits(&self, images: Tensor<2>) -> Tensor<2> {
        self.forward(images)
    }
}

/// CPU time of this process in seconds: the sum over its threads of
/// `/proc/self/task/*/schedstat`, which the kernel updates at least every scheduler tick.
/// `None` where that is not available.
fn process_cpu_seconds() -> Option<f64> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 * 1e-9)
}

/// Peak resident set size of this process in kB (`VmHWM`), where Linux reports it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A point in time: the wall clock and, where available, the CPU time used so far.
#[derive(Debug, Clone, Copy)]
struct Mark {
    wall: Instant,
    cpu: Option<f64>,
}

impl Mark {
    fn now() -> Self {
        Self {
            cpu: process_cpu_seconds(),
            wall: Instant::now(),
        }
    }
}

/// The marks of one run.
#[derive(Debug, Default)]
struct Marks {
    /// Start of each training epoch.
    starts: Vec<Mark>,
    /// End of each training epoch, validation and metric reads included (hand-written loop and
    /// `Trainer::fit` only).
    ends: Vec<Mark>,
    /// When the last epoch's end-of-epoch work is done.
    finished: Option<Mark>,
}

/// Seconds per epoch, warm-up epochs left out.
#[derive(Debug, Default)]
struct Times {
    /// Wall clock from epoch start to epoch end.
    epoch: Vec<f64>,
    /// Wall clock from epoch start to the next epoch's start.
    period: Vec<f64>,
    /// CPU time from epoch start to epoch end.
    epoch_cpu: Vec<f64>,
    /// CPU time from epoch start to the next epoch's start.
    period_cpu: Vec<f64>,
}

impl Times {
    fn extend(&mut self, other: &Times) {
        self.epoch.extend(&other.epoch);
        self.period.extend(&other.period);
        self.epoch_cpu.extend(&other.epoch_cpu);
        self.period_cpu.extend(&other.period_cpu);
    }
}

impl Marks {
    fn times(&self) -> Times {
        let finished = self.finished.expect("the run finished");
        let next_starts: Vec<Mark> = self.starts.iter().skip(1).copied().chain([finished]).collect();
        let mut times = Times::default();
        for (start, next) in self.starts.iter().zip(&next_starts).skip(1) {
            times.period.push((next.wall - start.wall).as_secs_f64());
            if let (Some(start), Some(next)) = (start.cpu, next.cpu) {
                times.period_cpu.push(next - start);
            }
        }
        for (start, end) in self.starts.iter().zip(&self.ends).skip(1) {
            times.epoch.push((end.wall - start.wall).as_secs_f64());
            if let (Some(start), Some(end)) = (start.cpu, end.cpu) {
                times.epoch_cpu.push(end - start);
            }
        }
        times
    }
}

/// Records the trainer's epoch boundaries. Runs before the default callbacks (it is a plain
/// callback, added first), so `on_train_epoch_end` is marked before the summary and checkpoint.
struct EpochTimer(Arc<Mutex<Marks>>);

impl EpochTimer {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.0.lock().expect("not poisoned")
    }
}

impl<M: LightningModule> Callback<M> for EpochTimer {
    fn on_train_epoch_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        let mark = Mark::now();
        self.marks().starts.push(mark);
    }

    fn on_train_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: Option<&StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        _batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        optimizer_stepped();
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        let mark = Mark::now();
        self.marks().ends.push(mark);
    }

    fn on_train_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        let mark = Mark::now();
        self.marks().finished = Some(mark);
    }
}

/// The final metrics of a run, to check that the sides computed the same thing. `NaN` where a
/// side does not report the metric in a comparable form (burn-train's training loss).
#[derive(Debug, Clone, Copy)]
struct Final {
    train_loss: f64,
    val_loss: f64,
    val_acc: f64,
}

impl Final {
    fn named(&self) -> [(&'static str, f64); 3] {
        [
            ("train_loss", self.train_loss),
            ("val_loss", self.val_loss),
            ("val_acc", self.val_acc),
        ]
    }

    /// Why the hand-written loop's metrics (`self`) and another side's (`other`) do not show
    /// that both did the same work: a metric that is not finite, or whose bits differ. Metrics
    /// the other side does not report (`NaN`) are not compared.
    fn mismatches(&self, other: &Final, compare_train_loss: bool) -> Vec<String> {
        self.named()
            .into_iter()
            .zip(other.named())
            .filter(|((name, _), _)| compare_train_loss || *name != "train_loss")
            .filter_map(|((name, a), (_, b))| {
                if !a.is_finite() || !b.is_finite() {
                    Some(format!("{name}: a {a:?}, other {b:?} (not finite)"))
                } else if a.to_bits() != b.to_bits() {
                    Some(format!(
                        "{name}: a {a:?} ({:#018x}), other {b:?} ({:#018x})",
                        a.to_bits(),
                        b.to_bits()
                    ))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// The size-weighted mean of one-value tensors, read from the device at once (as the trainer
/// reduces epoch metrics).
fn epoch_mean(values: Vec<Tensor<1>>, weights: &[usize]) -> f64 {
    let values = Tensor::cat(values, 0)
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64 values");
    let (sum, total) = values.iter().zip(weights).fold((0.0, 0.0), |(sum, total), (v, w)| {
        (sum + v * *w as f64, total + *w as f64)
    });
    sum / total
}

/// The validation loss and accuracy of `valid` (an evaluation copy), as the hand-written loop
/// computes them: the loss's epoch mean, and an `Accuracy` metric updated at every batch and
/// computed once (what the models' `validation_step` logs).
fn validate<M: BenchModel>(valid: &M, val: &Loader<MnistBatch>) -> BenchResult<(f64, f64)> {
    let accuracy = Accuracy::multiclass(10);
    let (mut val_losses, mut val_sizes) = (Vec::new(), Vec::new());
    for batch in val.iter() {
        let batch = batch?;
        val_sizes.push(batch.targets.dims()[0]);
        let logits = valid.logits(batch.images);
        accuracy.update(&logits, &batch.targets);
        val_losses.push(mnist::cross_entropy(logits, batch.targets));
    }
    Ok((epoch_mean(val_losses, &val_sizes), accuracy.compute()?))
}

/// The devices and dataloaders every side starts from: seeded as the trainer seeds them.
struct Setup {
    train_device: Device,
    train: Loader<MnistBatch>,
    val: Loader<MnistBatch>,
}

fn setup(data: &mut MnistData, device: &Device) -> BenchResult<Setup> {
    let eval_device = device.clone().without_autodiff();
    let train_device = eval_device.clone().autodiff();
    eval_device.seed(SEED);
    // What the trainer does with its seed before `setup`.
    data.set_seed(SEED);
    data.setup(Stage::Fit)?;
    let train = data
        .train_dataloader()
        .ok_or("no training data")?
        .to_device(&train_device);
    let val = data
        .val_dataloader()
        .ok_or("no validation data")?
        .to_device(&eval_device);
    Ok(Setup {
        train_device,
        train,
        val,
    })
}

/// (a) The hand-written loop.
fn hand_written<M: BenchModel>(data: &mut MnistData, device: &Device, epochs: usize) -> BenchResult<(Marks, Final)> {
    let Setup {
        train_device,
        train,
        val,
    } = setup(data, device)?;
    let mut model = M::fresh(&train_device);
    let mut optimizer = AdamConfig::new().init();
    let lr = M::learning_rate();

    let mut marks = Marks::default();
    let mut last = Final {
        train_loss: f64::NAN,
        val_loss: f64::NAN,
        val_acc: f64::NAN,
    };
    for epoch in 0..epochs {
        marks.starts.push(Mark::now());
        let (mut losses, mut sizes) = (Vec::new(), Vec::new());
        let mut last_loss = None;
        for batch in train.iter() {
            let batch = batch?;
            sizes.push(batch.targets.dims()[0]);
            let loss = model.loss(batch);
            losses.push(loss.clone().detach());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            optimizer_stepped();
            last_loss = Some(loss.detach());
        }
        let train_loss = epoch_mean(losses, &sizes);

        let (val_loss, val_acc) = validate(&model.valid(), &val)?;
        marks.ends.push(Mark::now());

        // What the progress bar prints after the epoch when stdout is not a terminal.
        let step_loss = last_loss.map_or(f64::NAN, |l| l.into_scalar::<f64>());
        let seconds = (marks.ends[epoch].wall - marks.starts[epoch].wall).as_secs_f64();
        println!(
            "hand-written epoch {epoch} | train_loss={train_loss:.4} train_loss_step={step_loss:.4} \
             val_acc={val_acc:.4} val_loss={val_loss:.4} | {seconds:.2}s"
        );
        last = Final {
            train_loss,
            val_loss,
            val_acc,
        };
    }
    marks.finished = Some(Mark::now());
    Ok((marks, last))
}

/// (b) `Trainer::fit` with its defaults.
fn trainer<M: BenchModel>(
    data: &mut MnistData,
    device: &Device,
    epochs: usize,
    profiler: Option<&str>,
) -> BenchResult<(Marks, Final)> {
    let root = tempfile::tempdir()?;
    let marks = Arc::new(Mutex::new(Marks::default()));
    let mut builder = Trainer::builder();
    if let Some(profiler) = profiler {
        builder = builder.profiler(profiler);
    }
    let mut trainer = builder
        .max_epochs(epochs)
        .seed(SEED)
        .device(device.clone())
        .default_root_dir(root.path())
        .callback(EpochTimer(marks.clone()))
        .build()?;
    let model = M::fresh(device);
    trainer.fit(model, &mut *data)?;
    let metrics = trainer.callback_metrics();
    let metric = |name: &str| metrics.get(name).ok_or(format!("`{name}` was not logged"));
    let last = Final {
        train_loss: metric("train_loss")?,
        val_loss: metric("val_loss")?,
        val_acc: metric("val_acc")?,
    };
    let marks = std::mem::take(&mut *marks.lock().expect("not poisoned"));
    Ok((marks, last))
}

/// burn-train's sides: `SupervisedTraining` on a `Learner`.
#[cfg(feature = "bench-peers")]
mod burn_train_sides {
    use super::*;
    use burn::data::dataloader::{DataLoader, DataLoaderIterator};
    use burn::optim::ModuleOptimizer;
    use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
    use burn::train::logger::InMemoryMetricLogger;
    use burn::train::metric::{AccuracyMetric, LossMetric};
    use burn::train::{ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep};

    /// burn-train's step, on the benchmark's model code: the same cross-entropy as
    /// `mnist::cross_entropy`, with the logits and targets its metrics need.
    fn classification<M: BenchModel>(model: &M, batch: MnistBatch) -> ClassificationOutput {
        let logits = model.logits(batch.images);
        let loss = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }

    macro_rules! burn_train_steps {
        ($($model:ty),*) => {$(
            impl TrainStep for $model {
                type Input = MnistBatch;
                type Output = ClassificationOutput;

                fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
                    let output = classification(self, batch);
                    TrainOutput::new(self, output.loss.backward(), output)
                }

                fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
                    let model = optim.step(lr, self, grads);
                    optimizer_stepped();
                    model
                }
            }

            impl InferenceStep for $model {
                type Input = MnistBatch;
                type Output = ClassificationOutput;

                fn step(&self, batch: MnistBatch) -> ClassificationOutput {
                    classification(self, batch)
                }
            }
        )*};
    }
    burn_train_steps!(LitMnist, LitLenet);

    /// A training dataloader that marks the start of an epoch when burn-train asks it for its
    /// batches.
    struct EpochMarking {
        inner: Loader<MnistBatch>,
        marks: Arc<Mutex<Marks>>,
    }

    impl DataLoader<MnistBatch> for EpochMarking {
        fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<MnistBatch> + 'a> {
            let mark = Mark::now();
            self.marks.lock().expect("not poisoned").starts.push(mark);
            self.inner.iter()
        }

        fn num_items(&self) -> usize {
            self.inner.num_items()
        }

        /// The same loader: its batches are already on the training device. burn's
        /// `to_device` would fork the loader's shuffle generator, so burn-train (whose
        /// single-device strategy calls it once at launch) would see other batches than the
        /// other sides, in another order.
        fn to_device(&self, _device: &Device) -> Loader<MnistBatch> {
            Arc::new(EpochMarking {
                inner: self.inner.clone(),
                marks: self.marks.clone(),
            })
        }

        fn slice(&self, start: usize, end: usize) -> Loader<MnistBatch> {
            Arc::new(EpochMarking {
                inner: self.inner.slice(start, end),
                marks: self.marks.clone(),
            })
        }
    }

    /// (c) burn-train as its MNIST example configures it, or (d) minimal.
    pub(super) fn burn_train<M>(
        data: &mut MnistData,
        device: &Device,
        epochs: usize,
        as_in_example: bool,
    ) -> BenchResult<(Marks, Final)>
    where
        M: BenchModel
            + TrainStep<Input = MnistBatch, Output = ClassificationOutput>
            + InferenceStep<Input = MnistBatch, Output = ClassificationOutput>
            + std::fmt::Display,
    {
        let Setup {
            train_device,
            train,
            val,
            ..
        } = setup(data, device)?;
        let root = tempfile::tempdir()?;
        let marks = Arc::new(Mutex::new(Marks::default()));
        let train: Loader<MnistBatch> = Arc::new(EpochMarking {
            inner: train,
            marks: marks.clone(),
        });
        let training = SupervisedTraining::new(root.path(), train, val.clone()).num_epochs(epochs);
        let training = if as_in_example {
            training
                .metric_train_numeric(AccuracyMetric::new())
                .metric_valid_numeric(AccuracyMetric::new())
                .metric_train_numeric(LossMetric::new())
                .metric_valid_numeric(LossMetric::new())
                .with_default_checkpointers()
                .summary()
        } else {
            training
                .with_metric_logger(InMemoryMetricLogger::new())
                .with_application_logger(None)
        };
        let learner = Learner::new(M::fresh(&train_device), AdamConfig::new().init(), M::learning_rate());
        let result = training.launch(learner);
        let mut marks = std::mem::take(&mut *marks.lock().expect("not poisoned"));
        marks.finished = Some(Mark::now());
        // The returned model is the evaluation copy.
        let (val_loss, val_acc) = validate(&result.model, &val)?;
        let last = Final {
            train_loss: f64::NAN,
            val_loss,
            val_acc,
        };
        Ok((marks, last))
    }
}

/// One way of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    HandWritten,
    Trainer,
    #[cfg(feature = "bench-peers")]
    BurnTrain,
    #[cfg(feature = "bench-peers")]
    BurnTrainMinimal,
}

impl Side {
    /// Every side this build has.
    fn all() -> Vec<Side> {
        #[allow(unused_mut)]
        let mut sides = vec![Side::HandWritten, Side::Trainer];
        #[cfg(feature = "bench-peers")]
        sides.extend([Side::BurnTrain, Side::BurnTrainMinimal]);
        sides
    }

    fn name(self) -> &'static str {
        match self {
            Side::HandWritten => "hand-written",
            Side::Trainer => "trainer",
            #[cfg(feature = "bench-peers")]
            Side::BurnTrain => "burn-train",
            #[cfg(feature = "bench-peers")]
            Side::BurnTrainMinimal => "burn-train-minimal",
        }
    }

    fn parse(name: &str) -> BenchResult<Side> {
        match name {
            "a" => Ok(Side::HandWritten),
            "b" => Ok(Side::Trainer),
            _ => Side::all().into_iter().find(|side| side.name() == name).ok_or_else(|| {
                let known: Vec<&str> = Side::all().iter().map(|side| side.name()).collect();
                let hint = if name.starts_with("burn-train") {
                    " (the burn-train sides need `--features bench-peers`)"
                } else {
                    ""
                };
                format!("unknown side `{name}`: expected one of {}{hint}", known.join(", ")).into()
            }),
        }
    }

    /// Trains `M` once on this side.
    fn run<M>(
        self,
        data: &mut MnistData,
        device: &Device,
        epochs: usize,
        profiler: Option<&str>,
    ) -> BenchResult<(Marks, Final)>
    where
        M: RunnableModel,
    {
        match self {
            Side::HandWritten => hand_written::<M>(data, device, epochs),
            Side::Trainer => trainer::<M>(data, device, epochs, profiler),
            #[cfg(feature = "bench-peers")]
            Side::BurnTrain => burn_train_sides::burn_train::<M>(data, device, epochs, true),
            #[cfg(feature = "bench-peers")]
            Side::BurnTrainMinimal => burn_train_sides::burn_train::<M>(data, device, epochs, false),
        }
    }
}

/// A model every side can train.
#[cfg(feature = "bench-peers")]
trait RunnableModel:
    BenchModel
    + burn::train::TrainStep<Input = MnistBatch, Output = burn::train::ClassificationOutput>
    + burn::train::InferenceStep<Input = MnistBatch, Output = burn::train::ClassificationOutput>
    + std::fmt::Display
{
}
#[cfg(feature = "bench-peers")]
impl<M> RunnableModel for M where
    M: BenchModel
        + burn::train::TrainStep<Input = MnistBatch, Output = burn::train::ClassificationOutput>
        + burn::train::InferenceStep<Input = MnistBatch, Output = burn::train::ClassificationOutput>
        + std::fmt::Display
{
}
/// A model every side can train.
#[cfg(not(feature = "bench-peers"))]
trait RunnableModel: BenchModel {}
#[cfg(not(feature = "bench-peers"))]
impl<M: BenchModel> RunnableModel for M {}

/// The `q` quantile of `values` (linear interpolation between the closest ranks).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// Minimum, quartiles and maximum, in seconds.
fn spread(values: &[f64]) -> String {
    let q = |q| quantile(values, q);
    format!(
        "min {:.4} | q1 {:.4} | median {:.4} | q3 {:.4} | max {:.4}",
        q(0.0),
        q(0.25),
        q(0.5),
        q(0.75),
        q(1.0)
    )
}

/// `key=value` pairs of the minimum, quartiles and maximum, for the machine-readable lines.
fn spread_fields(prefix: &str, values: &[f64]) -> String {
    [("min", 0.0), ("q1", 0.25), ("median", 0.5), ("q3", 0.75), ("max", 1.0)]
        .iter()
        .map(|(name, q)| format!("{prefix}_{name}={:.6}", quantile(values, *q)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--name VALUE` or `--name=VALUE`, else the environment variable `env`; other arguments
/// (`cargo bench` passes `--bench`) are ignored.
fn setting(args: &[String], name: &str, env: &str) -> Option<String> {
    let flag = format!("--{name}");
    let prefixed = format!("--{name}=");
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        if *arg == flag {
            args.get(i + 1).cloned()
        } else {
            arg.strip_prefix(&prefixed).map(str::to_string)
        }
    });
    from_args.or_else(|| std::env::var(env).ok())
}

/// A numeric [`setting`], `default` when not given.
fn count(args: &[String], name: &str, env: &str, default: usize) -> BenchResult<usize> {
    match setting(args, name, env) {
        Some(value) => Ok(value.parse().map_err(|e| format!("--{name} {value}: {e}"))?),
        None => Ok(default),
    }
}

/// The system's load average, to judge how quiet the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// What the benchmark runs, from the command line.
struct Settings {
    models: Vec<String>,
    sides: Vec<Side>,
    epochs: usize,
    reps: usize,
    startup_reps: usize,
    profiler: Option<String>,
}

fn settings(args: &[String]) -> BenchResult<Settings> {
    let epochs = count(args, "epochs", "TRAINER_OVERHEAD_EPOCHS", 3)?;
    let reps = count(args, "reps", "TRAINER_OVERHEAD_REPS", 40)?;
    let startup_reps = count(args, "startup-reps", "TRAINER_OVERHEAD_STARTUP_REPS", 0)?;
    if epochs < 2 || reps == 0 {
        return Err("need at least 2 epochs (the first is a warm-up) and 1 repetition".into());
    }
    let sides = match (
        setting(args, "side", "TRAINER_OVERHEAD_SIDE"),
        setting(args, "sides", "TRAINER_OVERHEAD_SIDES"),
    ) {
        (Some(side), _) => match side.as_str() {
            "a" | "b" => vec![Side::parse(&side)?],
            other => return Err(format!("--side {other}: expected `a` or `b`").into()),
        },
        (None, Some(list)) => list.split(',').map(Side::parse).collect::<BenchResult<_>>()?,
        (None, None) => Side::all(),
    };
    let models: Vec<String> = setting(args, "models", "TRAINER_OVERHEAD_MODELS")
        .unwrap_or_else(|| "mlp".into())
        .split(',')
        .map(str::to_string)
        .collect();
    for model in &models {
        if model != LitMnist::NAME && model != LitLenet::NAME {
            return Err(format!("--models: unknown model `{model}`: expected `mlp` or `cnn`").into());
        }
    }
    Ok(Settings {
        models,
        sides,
        epochs,
        reps,
        startup_reps,
        profiler: setting(args, "profiler", "TRAINER_OVERHEAD_PROFILER"),
    })
}

/// The results of one model.
struct ModelResults {
    /// Per side, in `Settings::sides` order: the times of all its runs.
    times: Vec<Times>,
    /// Per side: per repetition, its median wall-clock time per epoch over (a)'s.
    paired: Vec<Vec<f64>>,
    /// Per side: whether every repetition did the same work as (a) (`None`: not compared).
    same_work: Vec<Option<bool>>,
}

/// Trains `M` once on every side, in `order`, and records the results of repetition `rep`.
fn repetition<M: RunnableModel>(
    settings: &Settings,
    data: &mut MnistData,
    device: &Device,
    rep: usize,
    results: &mut ModelResults,
) -> BenchResult<()> {
    let sides = &settings.sides;
    // Rotate which side goes first.
    let order: Vec<usize> = (0..sides.len()).map(|i| (i + rep) % sides.len()).collect();
    let mut runs: Vec<Option<(Final, f64)>> = vec![None; sides.len()];
    let mut steps = vec![0; sides.len()];
    for index in order {
        let steps_before = OPTIMIZER_STEPS.load(Ordering::Relaxed);
        let (marks, last) = sides[index].run::<M>(data, device, settings.epochs, settings.profiler.as_deref())?;
        steps[index] = OPTIMIZER_STEPS.load(Ordering::Relaxed) - steps_before;
        let times = marks.times();
        results.times[index].extend(&times);
        runs[index] = Some((last, median(&times.period)));
    }
    let mut line = Vec::new();
    let hand = sides
        .iter()
        .position(|side| *side == Side::HandWritten)
        .and_then(|i| runs[i]);
    for (index, side) in sides.iter().enumerate() {
        let Some((last, seconds)) = runs[index] else { continue };
        let mut text = format!(
            "{} {seconds:.4} s/epoch ({} optimizer steps, train_loss={:.6} val_loss={:.6} val_acc={:.4})",
            side.name(),
            steps[index],
            last.train_loss,
            last.val_loss,
            last.val_acc
        );
        if let (Some((hand_last, hand_seconds)), false) = (hand, *side == Side::HandWritten) {
            results.paired[index].push(seconds / hand_seconds);
            text.push_str(&format!(" x{:.3}", seconds / hand_seconds));
            let mismatches = hand_last.mismatches(&last, *side == Side::Trainer);
            if *side == Side::Trainer && !mismatches.is_empty() {
                eprintln!(
                    "error: {} rep {}: the hand-written loop (a) and Trainer::fit (b) did not end with \
                     bit-identical metrics, so they did not do the same work and their times do not compare:",
                    M::NAME,
                    rep + 1
                );
                for mismatch in mismatches {
                    eprintln!("  {mismatch}");
                }
                std::process::exit(1);
            }
            let same = results.same_work[index].unwrap_or(true) && mismatches.is_empty();
            results.same_work[index] = Some(same);
        }
        line.push(text);
    }
    println!("{} rep {}/{}: {}", M::NAME, rep + 1, settings.reps, line.join(", "));
    Ok(())
}

/// Prints one model's summary: the human-readable spread and the `BENCH` / `RATIO` lines.
fn report(model: &str, settings: &Settings, results: &ModelResults) {
    let sides = &settings.sides;
    let n = results.times.iter().map(|t| t.period.len()).max().unwrap_or(0);
    println!();
    println!(
        "{model}: {} runs of {} epochs per side, first epoch of each run left out: {n} epochs per side",
        settings.reps, settings.epochs
    );
    println!("seconds per epoch, epoch start to next epoch start (+ summary line, checkpoints, logs):");
    for (side, times) in sides.iter().zip(&results.times) {
        println!("  {:<20} wall {}", side.name(), spread(&times.period));
        println!("  {:<20} cpu  {}", side.name(), spread(&times.period_cpu));
    }
    println!("seconds per epoch, training and validation only (hand-written loop and trainer):");
    for (side, times) in sides.iter().zip(&results.times) {
        if !times.epoch.is_empty() {
            println!("  {:<20} wall {}", side.name(), spread(&times.epoch));
            println!("  {:<20} cpu  {}", side.name(), spread(&times.epoch_cpu));
        }
    }
    for ((side, times), same_work) in sides.iter().zip(&results.times).zip(&results.same_work) {
        let same_work = match same_work {
            None => "n/a",
            Some(true) => "yes",
            Some(false) => "no",
        };
        println!(
            "BENCH model={model} side={} epochs_timed={} {} {} same_work={same_work}",
            side.name(),
            times.period.len(),
            spread_fields("wall", &times.period),
            spread_fields("cpu", &times.period_cpu),
        );
    }
    let Some(hand) = sides.iter().position(|side| *side == Side::HandWritten) else {
        println!("no hand-written side: no ratios");
        return;
    };
    let a = &results.times[hand];
    for (index, side) in sides.iter().enumerate() {
        if index == hand {
            continue;
        }
        let b = &results.times[index];
        let ratio = |b: &[f64], a: &[f64]| median(b) / median(a);
        let extra_ms = |b: &[f64], a: &[f64]| (median(b) - median(a)) * 1e3;
        println!(
            "{model}: {}/hand-written: wall {:.3} ({:+.1} ms/epoch), cpu {:.3} ({:+.1} ms/epoch); \
             fastest epochs: wall {:.3}, cpu {:.3}; median of per-run wall ratios {:.3}",
            side.name(),
            ratio(&b.period, &a.period),
            extra_ms(&b.period, &a.period),
            ratio(&b.period_cpu, &a.period_cpu),
            extra_ms(&b.period_cpu, &a.period_cpu),
            quantile(&b.period, 0.0) / quantile(&a.period, 0.0),
            quantile(&b.period_cpu, 0.0) / quantile(&a.period_cpu, 0.0),
            median(&results.paired[index]),
        );
        println!(
            "RATIO model={model} side={} wall={:.4} cpu={:.4} paired_wall={:.4}",
            side.name(),
            ratio(&b.period, &a.period),
            ratio(&b.period_cpu, &a.period_cpu),
            median(&results.paired[index]),
        );
        if *side == Side::Trainer {
            println!(
                "{model}: trainer/hand-written within the epoch (training and validation only): wall {:.3}, cpu {:.3}",
                ratio(&b.epoch, &a.epoch),
                ratio(&b.epoch_cpu, &a.epoch_cpu),
            );
            println!(
                "{model}: final train_loss, val_loss and val_acc of (a) and (b): bit-identical in all {} reps",
                results.paired[index].len()
            );
        }
    }
}

/// Runs all repetitions of one model and reports them.
fn bench_model<M: RunnableModel>(settings: &Settings, data: &mut MnistData, device: &Device) -> BenchResult<()> {
    let sides = settings.sides.len();
    let mut results = ModelResults {
        times: (0..sides).map(|_| Times::default()).collect(),
        paired: vec![Vec::new(); sides],
        same_work: vec![None; sides],
    };
    for rep in 0..settings.reps {
        repetition::<M>(settings, data, device, rep, &mut results)?;
    }
    report(M::NAME, settings, &results);
    Ok(())
}

/// `--child SIDE --models MODEL`: one run, printing [`FIRST_STEP_MARKER`] after the first
/// optimizer step and `PEAK_RSS_KB n` at the end.
fn child(side: &str, settings: &Settings) -> BenchResult<()> {
    IS_CHILD.store(true, Ordering::Relaxed);
    let side = Side::parse(side)?;
    let device = Device::default();
    let mut data = MnistData::new(MnistData::bundled_dir(), BATCH_SIZE, VAL_ITEMS, SEED);
    let model = settings.models.first().ok_or("--child needs --models")?;
    if model == LitLenet::NAME {
        side.run::<LitLenet>(&mut data, &device, settings.epochs, None)?;
    } else {
        side.run::<LitMnist>(&mut data, &device, settings.epochs, None)?;
    }
    println!(
        "PEAK_RSS_KB {}",
        peak_rss_kb().map_or_else(|| "unknown".into(), |kb| kb.to_string())
    );
    Ok(())
}

/// Spawns this binary as a `--child` and returns the seconds from spawn to its first optimizer
/// step and its peak RSS in kB.
fn startup(model: &str, side: Side, epochs: usize) -> BenchResult<(f64, Option<u64>)> {
    let exe = std::env::current_exe()?;
    let spawned = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args([
            "--child",
            side.name(),
            "--models",
            model,
            "--epochs",
            &epochs.to_string(),
        ])
        .env_remove("TRAINER_OVERHEAD_SIDE")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (mut first_step, mut peak) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // A progress output may have left part of a line before the marker.
        if line.ends_with(FIRST_STEP_MARKER) && first_step.is_none() {
            first_step = Some(spawned.elapsed().as_secs_f64());
        } else if let Some(kb) = line.strip_prefix("PEAK_RSS_KB ") {
            peak = kb.parse().ok();
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child {model} {} failed: {status}", side.name()).into());
    }
    Ok((first_step.ok_or("the child never reported its first step")?, peak))
}

fn main() -> BenchResult<()> {
    run(std::env::args().skip(1).collect())
}

/// The benchmark with its arguments (without the program name); also run by the GPU checks'
/// harness (`tests/gpu_checks.rs`).
pub fn run(args: Vec<String>) -> BenchResult<()> {
    let settings = settings(&args)?;
    if let Some(side) = setting(&args, "child", "TRAINER_OVERHEAD_CHILD") {
        return child(&side, &settings);
    }

    println!("load average before: {}", load_average());
    let device = Device::default();
    let mut data = MnistData::new(MnistData::bundled_dir(), BATCH_SIZE, VAL_ITEMS, SEED);
    for model in &settings.models {
        if model == LitLenet::NAME {
            bench_model::<LitLenet>(&settings, &mut data, &device)?;
        } else {
            bench_model::<LitMnist>(&settings, &mut data, &device)?;
        }
    }
    println!("load average after: {}", load_average());

    if settings.startup_reps > 0 {
        println!();
        println!(
            "time from spawn to the first optimizer step and peak RSS, median of {} child processes \
             (each trains {} epochs):",
            settings.startup_reps, settings.epochs
        );
        for model in &settings.models {
            for side in &settings.sides {
                let (mut seconds, mut peaks) = (Vec::new(), Vec::new());
                for _ in 0..settings.startup_reps {
                    let (first_step, peak) = startup(model, *side, settings.epochs)?;
                    seconds.push(first_step);
                    peaks.extend(peak.map(|kb| kb as f64 / 1024.0));
                }
                println!(
                    "STARTUP model={model} side={} first_step_s={:.4} first_step_min_s={:.4} peak_rss_mb={:.1}",
                    side.name(),
                    median(&seconds),
                    quantile(&seconds, 0.0),
                    median(&peaks)
                );
            }
        }
    }
    Ok(())
}
