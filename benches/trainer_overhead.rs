//! What the Lightning trainer costs over a hand-written burn loop.
//!
//! Both sides train the MNIST perceptron of the `mnist` example (784-128-10, Adam 1e-3, batch 64)
//! on the bundled data, with the same dataloaders (`MnistData`), the same model code
//! (`LitMnist::loss_and_accuracy`) and the same work per epoch: every training batch, then every
//! validation batch on the evaluation copy (`model.valid()`), with the epoch means of the
//! training loss and of the validation loss and accuracy read back once per epoch.
//!
//! - (a) the hand-written loop;
//! - (b) `Trainer::fit` with its defaults (sanity check, the `ProgressBar`: bars on a terminal,
//!   one line per epoch when stdout is piped), a `ModelCheckpoint`
//!   written every epoch and the default TensorBoard logger, into a temporary
//!   `default_root_dir`), timed by a callback.
//!
//! Runs of (a) and (b) alternate, `--reps` times each, so that drift in the machine's load hits
//! both. The first epoch of every run is a warm-up and is left out. The headline ratio compares
//! the median time per epoch from one epoch's start to the next's: training, validation, metric
//! reads, the summary line and, for (b), the checkpoint and the logger's writes. The time from `on_train_epoch_start` to
//! `on_train_epoch_end` (training and validation only) is reported beside it. Besides the wall
//! clock, the process's CPU time is measured where Linux reports it (`/proc`, to the scheduler
//! tick): it is less disturbed by other processes on a busy machine. The last line gives both
//! ratios, wall clock and CPU time.
//!
//! Both sides must end every repetition with bit-identical final metrics (training loss,
//! validation loss and accuracy, compared as `f64` bits), which shows that they did the same
//! work; if they do not, the benchmark stops with an error and a non-zero exit status.
//!
//! `cargo bench --bench trainer_overhead [-- --epochs N --reps N --side a|b --profiler NAME]`, or
//! the environment variables `TRAINER_OVERHEAD_EPOCHS`, `TRAINER_OVERHEAD_REPS`,
//! `TRAINER_OVERHEAD_SIDE` and `TRAINER_OVERHEAD_PROFILER` (`--side` runs one side only, to
//! profile it; `--profiler simple|advanced` turns the trainer's profiler on, to measure what it
//! costs).

#[path = "../examples/common/lit_mnist.rs"]
mod lit_mnist;
#[path = "../examples/common/mnist.rs"]
mod mnist;

use burn::optim::{AdamConfig, GradientsParams};
use burn_lightning::prelude::*;
use lit_mnist::{LitMnist, LitMnistHparams};
use mnist::MnistData;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SEED: u64 = 42;
const BATCH_SIZE: usize = 64;
const VAL_ITEMS: usize = 1000;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

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
    /// End of each training epoch, validation and metric reads included.
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
        let next_starts = self.starts.iter().skip(1).copied().chain([finished]);
        let mut times = Times::default();
        for ((start, end), next) in self.starts.iter().zip(&self.ends).zip(next_starts).skip(1) {
            times.epoch.push((end.wall - start.wall).as_secs_f64());
            times.period.push((next.wall - start.wall).as_secs_f64());
            if let (Some(start), Some(end), Some(next)) = (start.cpu, end.cpu, next.cpu) {
                times.epoch_cpu.push(end - start);
                times.period_cpu.push(next - start);
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

impl Callback<LitMnist> for EpochTimer {
    fn on_train_epoch_start(&mut self, _module: &mut LitMnist, _cx: &mut EpochContext<'_>) {
        let mark = Mark::now();
        self.marks().starts.push(mark);
    }

    fn on_train_epoch_end(&mut self, _module: &mut LitMnist, _cx: &mut EpochContext<'_>) {
        let mark = Mark::now();
        self.marks().ends.push(mark);
    }

    fn on_train_end(&mut self, _module: &mut LitMnist, _cx: &mut HookContext<'_>) {
        let mark = Mark::now();
        self.marks().finished = Some(mark);
    }
}

/// The final metrics of a run, to check that both sides computed the same thing.
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

    /// Why the hand-written loop's metrics (`self`) and the trainer's (`other`) do not show
    /// that both did the same work: a metric that is not finite, or whose bits differ.
    fn mismatches(&self, other: &Final) -> Vec<String> {
        self.named()
            .into_iter()
            .zip(other.named())
            .filter_map(|((name, a), (_, b))| {
                if !a.is_finite() || !b.is_finite() {
                    Some(format!("{name}: a {a:?}, b {b:?} (not finite)"))
                } else if a.to_bits() != b.to_bits() {
                    Some(format!(
                        "{name}: a {a:?} ({:#018x}), b {b:?} ({:#018x})",
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

/// (a) The hand-written loop.
fn hand_written(data: &mut MnistData, device: &Device, epochs: usize) -> BenchResult<(Marks, Final)> {
    let eval_device = device.clone().without_autodiff();
    let train_device = eval_device.clone().autodiff();
    eval_device.seed(SEED);
    let hparams = LitMnistHparams::new();
    let mut model = LitMnist::new(&hparams, &train_device);
    let mut optimizer = AdamConfig::new().init();
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
            let (loss, _accuracy) = model.loss_and_accuracy(batch);
            losses.push(loss.clone().detach());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(hparams.lr, model, grads);
            last_loss = Some(loss.detach());
        }
        let train_loss = epoch_mean(losses, &sizes);

        let valid = model.valid();
        let (mut val_losses, mut val_accs, mut val_sizes) = (Vec::new(), Vec::new(), Vec::new());
        for batch in val.iter() {
            let batch = batch?;
            val_sizes.push(batch.targets.dims()[0]);
            let (loss, accuracy) = valid.loss_and_accuracy(batch);
            val_losses.push(loss);
            val_accs.push(accuracy);
        }
        drop(valid);
        let val_loss = epoch_mean(val_losses, &val_sizes);
        let val_acc = epoch_mean(val_accs, &val_sizes);
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
fn trainer(
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
    let model = LitMnist::new(&LitMnistHparams::new(), device);
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

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs = count(&args, "epochs", "TRAINER_OVERHEAD_EPOCHS", 3)?;
    let reps = count(&args, "reps", "TRAINER_OVERHEAD_REPS", 40)?;
    if epochs < 2 || reps == 0 {
        return Err("need at least 2 epochs (the first is a warm-up) and 1 repetition".into());
    }
    let sides: &[bool] = match setting(&args, "side", "TRAINER_OVERHEAD_SIDE").as_deref() {
        None => &[false, true],
        Some("a") => &[false],
        Some("b") => &[true],
        Some(other) => return Err(format!("--side {other}: expected `a` or `b`").into()),
    };

    let profiler = setting(&args, "profiler", "TRAINER_OVERHEAD_PROFILER");

    println!("load average before: {}", load_average());
    let device = Device::default();
    let mut data = MnistData::new(MnistData::bundled_dir(), BATCH_SIZE, VAL_ITEMS, SEED);
    let (mut a, mut b) = (Times::default(), Times::default());
    let mut paired = Vec::new();
    let mut checked = 0;
    for rep in 0..reps {
        // Alternate which side goes first.
        let mut order = sides.to_vec();
        if rep % 2 == 1 {
            order.reverse();
        }
        let mut runs = [None, None];
        for use_trainer in order {
            let (marks, last) = if use_trainer {
                trainer(&mut data, &device, epochs, profiler.as_deref())?
            } else {
                hand_written(&mut data, &device, epochs)?
            };
            let times = marks.times();
            if use_trainer { &mut b } else { &mut a }.extend(&times);
            runs[usize::from(use_trainer)] = Some((last, median(&times.epoch)));
        }
        let describe = |name: &str, run: Option<(Final, f64)>| {
            run.map(|(f, t)| {
                format!(
                    "{name} {t:.4} s/epoch (train_loss={:.6} val_loss={:.6} val_acc={:.4})",
                    f.train_loss, f.val_loss, f.val_acc
                )
            })
        };
        let mut line: Vec<String> = [describe("a", runs[0]), describe("b", runs[1])]
            .into_iter()
            .flatten()
            .collect();
        if let [Some((_, ta)), Some((_, tb))] = runs {
            paired.push(tb / ta);
            line.push(format!("b/a {:.3}", tb / ta));
        }
        println!("rep {}/{reps}: {}", rep + 1, line.join(", "));
        if let [Some((fa, _)), Some((fb, _))] = runs {
            let mismatches = fa.mismatches(&fb);
            if !mismatches.is_empty() {
                eprintln!(
                    "error: rep {}/{reps}: the hand-written loop (a) and Trainer::fit (b) did not end with \
                     bit-identical metrics, so they did not do the same work and their times do not compare:",
                    rep + 1
                );
                for mismatch in mismatches {
                    eprintln!("  {mismatch}");
                }
                std::process::exit(1);
            }
            checked += 1;
        }
    }
    println!("load average after: {}", load_average());

    let n = a.epoch.len().max(b.epoch.len());
    println!();
    println!("{reps} runs of {epochs} epochs per side, first epoch of each run left out: {n} epochs per side");
    println!("seconds per epoch (train + validation, metrics read):");
    println!("  (a) hand-written  wall {}", spread(&a.epoch));
    println!("  (b) Trainer::fit  wall {}", spread(&b.epoch));
    println!("  (a) hand-written  cpu  {}", spread(&a.epoch_cpu));
    println!("  (b) Trainer::fit  cpu  {}", spread(&b.epoch_cpu));
    println!("seconds per epoch up to the next epoch (+ summary line, + checkpoint for b):");
    println!("  (a) hand-written  wall {}", spread(&a.period));
    println!("  (b) Trainer::fit  wall {}", spread(&b.period));
    println!("  (a) hand-written  cpu  {}", spread(&a.period_cpu));
    println!("  (b) Trainer::fit  cpu  {}", spread(&b.period_cpu));
    if paired.is_empty() {
        println!("one side only: final metrics not compared");
        return Ok(());
    }
    println!("final train_loss, val_loss and val_acc of (a) and (b): bit-identical in all {checked} reps");
    let ratio = |b: &[f64], a: &[f64]| median(b) / median(a);
    let extra_ms = |b: &[f64], a: &[f64]| (median(b) - median(a)) * 1e3;
    let fastest = |v: &[f64]| quantile(v, 0.0);
    println!(
        "ratio of the fastest epochs (least disturbed by other processes): wall {:.3}, cpu {:.3}",
        fastest(&b.epoch) / fastest(&a.epoch),
        fastest(&b.epoch_cpu) / fastest(&a.epoch_cpu)
    );
    println!(
        "median of the {} per-run wall-clock ratios b/a = {:.3}",
        paired.len(),
        median(&paired)
    );
    println!(
        "ratio within the epoch (training and validation only): wall {:.3} (a: {:.4} s, b: {:.4} s), \
         cpu {:.3} (a: {:.4} s, b: {:.4} s)",
        ratio(&b.epoch, &a.epoch),
        median(&a.epoch),
        median(&b.epoch),
        ratio(&b.epoch_cpu, &a.epoch_cpu),
        median(&a.epoch_cpu),
        median(&b.epoch_cpu)
    );
    // The headline counts everything an epoch costs, the default checkpoint included.
    println!(
        "ratio trainer/hand-written: wall {:.3} ({:+.1} ms/epoch; a: {:.4} s, b: {:.4} s), \
         cpu {:.3} ({:+.1} ms/epoch; a: {:.4} s, b: {:.4} s) \
         (median per epoch over {n} epochs each, epoch start to next epoch start)",
        ratio(&b.period, &a.period),
        extra_ms(&b.period, &a.period),
        median(&a.period),
        median(&b.period),
        ratio(&b.period_cpu, &a.period_cpu),
        extra_ms(&b.period_cpu, &a.period_cpu),
        median(&a.period_cpu),
        median(&b.period_cpu)
    );
    Ok(())
}
