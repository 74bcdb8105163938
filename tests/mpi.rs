//! Data-parallel training across processes with MPI (feature `mpi`): each test re-launches this
//! test binary under `mpirun -np 2` (the child runs the same test, told apart by the
//! `BURN_LIGHTNING_MPI_CHILD` variable) and checks what the ranks wrote and how the job ended.
//! Needs Open MPI's `mpirun` on the `PATH` (`scripts/ci_mpi.sh` installs it). Every module
//! starts from constant weights, so no test draws from the device RNG.
#![cfg(feature = "mpi")]

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::Reduce;
use burn_lightning::metrics::{AUROC, MaxMetric, MeanSquaredError, MinMetric};
use burn_lightning::prelude::*;
use common::{Pair, pair_loader, pair_loader_in_order};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in the children `mpirun` starts: the directory they write into.
const CHILD: &str = "BURN_LIGHTNING_MPI_CHILD";

/// A linear regressor (mean squared error) with constant initial weights.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Regressor {
    layer: Linear,
    /// This rank ends its process at its second training step: `abort`, or `exit(3)` when
    /// `EXIT_NOT_ABORT` is set.
    #[module(skip)]
    exit_at_step_one: bool,
    /// Metric objects of every reduction: sums (the squared error and its count),
    /// concatenation (AUROC's scores and targets), maximum and minimum.
    train_mse: MeanSquaredError,
    train_auroc: AUROC,
    train_max: MaxMetric,
    train_min: MinMetric,
}

impl Regressor {
    fn new() -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
            exit_at_step_one: false,
            train_mse: MeanSquaredError::new(),
            train_auroc: AUROC::binary(),
            train_max: MaxMetric::new(),
            train_min: MinMetric::new(),
        }
    }

    fn weights(&self) -> Vec<f32> {
        common::linear_weights(&self.layer)
    }
}

#[lightning_module]
impl Regressor {
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        if self.exit_at_step_one && batch_idx == 1 {
            if std::env::var_os("EXIT_NOT_ABORT").is_some() {
                std::process::exit(3);
            }
            std::process::abort();
        }
        // Each rank updates with its shard; the logged epoch values merge every rank's states.
        // AUROC ranks an input feature (the same bits in every process: predictions tie or not
        // depending on the batch's shape, in the last bit), the others the targets.
        let [n, _] = batch.x.dims();
        let positive = batch.y.clone().slice([0..n, 0..1]).greater_elem(0.0).int();
        self.train_auroc.update(batch.x.clone().slice([0..n, 0..1]), positive);
        self.train_max.update(&batch.y);
        self.train_min.update(&batch.y);
        let prediction = self.layer.forward(batch.x);
        self.train_mse.update(&prediction, &batch.y);
        let epoch = LogOptions::new().on_step(false).on_epoch(true);
        cx.log_with("train_mse", &self.train_mse, epoch.clone());
        cx.log_with("train_auroc", &self.train_auroc, epoch.clone());
        cx.log_with("train_max", &self.train_max, epoch.clone());
        cx.log_with("train_min", &self.train_min, epoch.clone());
        let loss = (prediction - batch.y).powi_scalar(2).mean();
        // Plain values accumulated over the epoch: reduced across the ranks at each step, and
        // each rank's own.
        cx.log_with("train_loss", &loss, epoch.clone().sync_dist(true));
        cx.log_with("rank_loss", &loss, epoch.clone());
        cx.log_with("rank_mean", cx.global_rank as f64, LogOptions::new().sync_dist(true));
        cx.log_with("loss", &loss, LogOptions::new().sync_dist(true));
        cx.log("world_size", cx.world_size as f64);
        loss
    }

    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        // Every rank validates on the whole dataloader: the sum must not count it twice.
        cx.log_with(
            "val_loss_sum",
            &loss,
            LogOptions::new().sync_dist(true).reduce(Reduce::Sum),
        );
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

fn builder(root: &Path) -> TrainerBuilder<Regressor> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .accelerator("cpu")
        .max_epochs(1)
}

/// The child's output directory, when this process is a rank started by [`mpirun`].
fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD).map(PathBuf::from)
}

fn rank() -> usize {
    std::env::var("OMPI_COMM_WORLD_RANK").unwrap().parse().unwrap()
}

/// Runs `test` of this binary on 2 ranks (`mpirun -np 2`) writing into `dir`, with `env` set;
/// returns how `mpirun` ended and what it printed. A job still running after `limit` is killed
/// and the test fails: no test here may hang.
fn mpirun(test: &str, dir: &Path, env: &[(&str, &str)], limit: Duration) -> (ExitStatus, String) {
    let output_path = dir.join("mpirun.log");
    let output = std::fs::File::create(&output_path).unwrap();
    let mut command = Command::new("mpirun");
    command.args(["-np", "2", "--oversubscribe", "--allow-run-as-root"]);
    command.args(["-x", CHILD]);
    command.env(CHILD, dir);
    for (name, value) in env {
        command.args(["-x", name]).env(name, value);
    }
    command
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output);
    let mut child = command
        .spawn()
        .expect("`mpirun` must be on the PATH (Debian: `apt-get install openmpi-bin libopenmpi-dev`)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "`mpirun` ran past {limit:?}: the job hangs\n{}",
                std::fs::read_to_string(&output_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&output_path).unwrap())
}

/// The items of [`pair_loader`]`(48, 8)` as one process sees them in batches of 16 when two
/// ranks share them: each global batch is rank 0's 8 items (of the first 24) then rank 1's 8.
fn global_order() -> Vec<usize> {
    (0..3)
        .flat_map(|step| (0..2).flat_map(move |rank| (0..8).map(move |i| rank * 24 + step * 8 + i)))
        .collect()
}

fn assert_close(processes: &[f32], single: &[f32]) {
    assert_eq!(processes.len(), single.len());
    for (process, one) in processes.iter().zip(single) {
        assert!((process - one).abs() <= 1e-5, "two processes {process} vs one {one}");
    }
}

/// What a rank of the training job reports.
#[derive(serde::Serialize, serde::Deserialize)]
struct RankReport {
    val_loss_sum: f64,
    weights: Vec<f32>,
    global_step: usize,
    rank_mean: f64,
    world_size: f64,
    log_dir: Option<PathBuf>,
    /// The metric objects' epoch values: `train_mse`, `train_auroc`, `train_max`, `train_min`.
    metric_objects: Vec<f64>,
}

const METRIC_OBJECTS: [&str; 4] = ["train_mse", "train_auroc", "train_max", "train_min"];

fn report_path(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("rank{rank}.json"))
}

/// Two processes with batches of 8 each against one process with batches of 16 made of the
/// same items: one epoch (3 steps) gives the same weights to 1e-5, on both ranks. Summing the
/// gradients instead of averaging them, or each rank stepping on its own shard, would move
/// the weights by far more (the learning rate is 0.1). Rank zero alone writes the run
/// directory (one `version_0`, its logs and its checkpoint); `sync_dist` values are reduced
/// across the processes.
#[test]
fn two_processes_train_as_one_on_the_same_global_batch() {
    if let Some(dir) = child_dir() {
        let mut trainer = builder(&dir.join("root")).build().unwrap();
        let model = trainer
            .fit(
                Regressor::new(),
                Loaders::fit(pair_loader(48, 8), Some(pair_loader(20, 4))),
            )
            .unwrap();
        let metrics = trainer.callback_metrics();
        let report = RankReport {
            val_loss_sum: metrics.get("val_loss_sum").unwrap(),
            weights: model.weights(),
            global_step: trainer.global_step(),
            rank_mean: metrics.get("rank_mean").unwrap(),
            world_size: metrics.get("world_size").unwrap(),
            log_dir: trainer.log_dir().map(Path::to_path_buf),
            metric_objects: METRIC_OBJECTS.iter().map(|name| metrics.get(name).unwrap()).collect(),
        };
        std::fs::write(report_path(&dir, rank()), serde_json::to_vec(&report).unwrap()).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "two_processes_train_as_one_on_the_same_global_batch",
        dir.path(),
        &[],
        Duration::from_secs(300),
    );
    assert!(status.success(), "{output}");
    let read = |rank| -> RankReport {
        serde_json::from_slice(&std::fs::read(report_path(dir.path(), rank)).unwrap()).unwrap()
    };
    let (rank0, rank1) = (read(0), read(1));

    let single_root = tempfile::tempdir().unwrap();
    let mut trainer = builder(single_root.path()).build().unwrap();
    let single = trainer
        .fit(
            Regressor::new(),
            Loaders::fit(pair_loader_in_order(&global_order(), 16), Some(pair_loader(20, 4))),
        )
        .unwrap();
    let single_val_loss_sum = trainer.callback_metrics().get("val_loss_sum").unwrap();
    let single_metric_objects: Vec<f64> = METRIC_OBJECTS
        .iter()
        .map(|name| trainer.callback_metrics().get(name).unwrap())
        .collect();
    assert_ne!(
        single.weights(),
        Regressor::new().weights(),
        "the steps must move the weights"
    );
    for report in [&rank0, &rank1] {
        assert_eq!(report.global_step, 3, "one optimizer step per global batch");
        assert_close(&report.weights, &single.weights());
        assert_eq!(report.world_size, 2.0);
        assert_eq!(report.rank_mean, 0.5, "`sync_dist` averages ranks 0 and 1");
        assert!(
            (report.val_loss_sum - single_val_loss_sum).abs() <= 1e-5,
            "validation as one process: {} vs {single_val_loss_sum}",
            report.val_loss_sum
        );
        // Every rank's states merged by their reductions: the values of one process that saw
        // every item (a rank's own shard gives other values).
        for ((name, two), one) in METRIC_OBJECTS
            .iter()
            .zip(&report.metric_objects)
            .zip(&single_metric_objects)
        {
            assert!((two - one).abs() <= 1e-5, "{name}: two processes {two} vs one {one}");
        }
    }
    assert_eq!(rank1.log_dir, None, "rank 1 has no run directory");
    let logs = dir.path().join("root/lightning_logs");
    let versions: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(versions, ["version_0"], "rank 0 alone writes a run directory");
    assert_eq!(rank0.log_dir.as_deref(), Some(logs.join("version_0").as_path()));
    let checkpoints = std::fs::read_dir(logs.join("version_0/checkpoints")).unwrap().count();
    assert_eq!(checkpoints, 1, "one checkpoint, rank 0's");
}

/// Both ranks train one epoch (rank zero writes the checkpoint), then every rank resumes from
/// that same file for a second epoch: the weights match one process trained for two epochs
/// on the global batches.
#[test]
fn every_rank_resumes_from_the_same_checkpoint() {
    if let Some(dir) = child_dir() {
        let root = dir.join("root");
        let mut first = builder(&root).build().unwrap();
        first
            .fit(Regressor::new(), Loaders::fit(pair_loader(48, 8), None))
            .unwrap();
        // Written by rank 0 alone; `fit` returns on every rank once it is.
        let checkpoint = root.join("lightning_logs/version_0/checkpoints/epoch=0-step=3.ckpt");
        let mut second = builder(&root).max_epochs(2).build().unwrap();
        let model = second
            .fit_from(Regressor::new(), Loaders::fit(pair_loader(48, 8), None), &checkpoint)
            .unwrap();
        let weights = serde_json::to_vec(&(model.weights(), second.global_step())).unwrap();
        std::fs::write(dir.join(format!("rank{}.json", rank())), weights).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "every_rank_resumes_from_the_same_checkpoint",
        dir.path(),
        &[],
        Duration::from_secs(300),
    );
    assert!(status.success(), "{output}");
    let single_root = tempfile::tempdir().unwrap();
    let mut trainer = builder(single_root.path()).max_epochs(2).build().unwrap();
    let single = trainer
        .fit(
            Regressor::new(),
            Loaders::fit(pair_loader_in_order(&global_order(), 16), None),
        )
        .unwrap();
    for rank in 0..2 {
        let (weights, global_step): (Vec<f32>, usize) =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("rank{rank}.json"))).unwrap()).unwrap();
        assert_eq!(global_step, 6, "3 steps restored, 3 trained");
        assert_close(&weights, &single.weights());
    }
}

/// The epoch values a resumed run must compute as the uninterrupted one: metric objects of
/// every reduction, a `sync_dist` mean and each rank's own mean.
const EPOCH_VALUES: [&str; 6] = [
    "train_mse",
    "train_auroc",
    "train_max",
    "train_min",
    "train_loss",
    "rank_loss",
];

/// Both ranks train one epoch (3 steps) with a checkpoint after every step, then resume from
/// the one after the first step: every epoch value equals the uninterrupted run's, on both
/// ranks, bit for bit. The checkpoint holds every rank's share of the metric states (rank zero
/// alone writes it, with its own share only, each rank would resume from rank zero's: its
/// first batch counted twice, rank one's lost). Resumed in one process, the same checkpoint
/// gives the values of one process that trained on both ranks' items.
#[test]
fn a_resume_inside_an_epoch_on_two_ranks_computes_the_epoch_values_of_an_uninterrupted_run() {
    if let Some(dir) = child_dir() {
        let root = dir.join("whole");
        let every_step = ModelCheckpoint::new().every_n_train_steps(1).save_top_k(-1);
        let mut whole = builder(&root).callback(every_step).build().unwrap();
        whole
            .fit(Regressor::new(), Loaders::fit(pair_loader(48, 8), None))
            .unwrap();
        let checkpoint = root.join("lightning_logs/version_0/checkpoints/epoch=0-step=1.ckpt");
        let mut resumed = builder(&dir.join("resumed")).build().unwrap();
        resumed
            .fit_from(Regressor::new(), Loaders::fit(pair_loader(48, 8), None), &checkpoint)
            .unwrap();
        let values = |metrics: &burn_lightning::Metrics| -> Vec<f64> {
            EPOCH_VALUES.iter().map(|name| metrics.get(name).unwrap()).collect()
        };
        let report = (values(whole.callback_metrics()), values(resumed.callback_metrics()));
        std::fs::write(report_path(&dir, rank()), serde_json::to_vec(&report).unwrap()).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "a_resume_inside_an_epoch_on_two_ranks_computes_the_epoch_values_of_an_uninterrupted_run",
        dir.path(),
        &[],
        Duration::from_secs(300),
    );
    assert!(status.success(), "{output}");
    let checkpoint_path = dir
        .path()
        .join("whole/lightning_logs/version_0/checkpoints/epoch=0-step=1.ckpt");
    let checkpoint = burn_lightning::Checkpoint::load(&checkpoint_path).unwrap();
    // Each rank's first batch: 8 items of 2 outputs.
    let total = &checkpoint.metrics["train_mse"]["state"]["total"];
    assert_eq!(total[0], 2 * 8 * 2, "both ranks' first batch: {total}");
    for rank in 0..2 {
        let (whole, resumed): (Vec<f64>, Vec<f64>) =
            serde_json::from_slice(&std::fs::read(report_path(dir.path(), rank)).unwrap()).unwrap();
        for ((name, whole), resumed) in EPOCH_VALUES.iter().zip(&whole).zip(&resumed) {
            assert_eq!(
                resumed.to_bits(),
                whole.to_bits(),
                "{name} on rank {rank}: resumed {resumed} vs uninterrupted {whole}"
            );
        }
    }

    // The same checkpoint resumed in one process (batches of 16 made of both ranks' items):
    // its metric objects start from the merged states and end the epoch as one process that
    // ran it all. (Plain values do not: their saved means are weighted by a rank's batch size.)
    let (two_ranks, _): (Vec<f64>, Vec<f64>) =
        serde_json::from_slice(&std::fs::read(report_path(dir.path(), 0)).unwrap()).unwrap();
    let one = tempfile::tempdir().unwrap();
    let mut resumed = builder(one.path()).build().unwrap();
    resumed
        .fit_from(
            Regressor::new(),
            Loaders::fit(pair_loader_in_order(&global_order(), 16), None),
            &checkpoint_path,
        )
        .unwrap();
    for (name, two) in EPOCH_VALUES.iter().zip(&two_ranks).take(4) {
        let one = resumed.callback_metrics().get(name).unwrap();
        assert!(
            (one - two).abs() <= 1e-5,
            "{name}: resumed in one process {one} vs two ranks {two}"
        );
    }
}

/// Ranks given different flags fail on every rank, naming them; then a launch of 2 processes
/// where `devices * num_nodes` is 1 fails on every rank, saying how many to start.
#[test]
fn ranks_with_mismatched_flags_or_world_size_fail_on_every_rank() {
    if let Some(dir) = child_dir() {
        let rank = rank();
        let root = dir.join("root");
        // Both products are 2, but the flags differ.
        let disagreeing = match rank {
            0 => builder(&root).devices(2).num_nodes(1),
            _ => builder(&root).devices(1).num_nodes(2),
        };
        let first = disagreeing
            .build()
            .err()
            .expect("different flags on the ranks")
            .to_string();
        let second = builder(&root)
            .devices(1)
            .num_nodes(1)
            .build()
            .err()
            .expect("1 device on 1 node under 2 processes")
            .to_string();
        std::fs::write(dir.join(format!("rank{rank}.txt")), format!("{first}\n{second}")).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "ranks_with_mismatched_flags_or_world_size_fail_on_every_rank",
        dir.path(),
        &[],
        Duration::from_secs(120),
    );
    assert!(status.success(), "{output}");
    for rank in 0..2 {
        let text = std::fs::read_to_string(dir.path().join(format!("rank{rank}.txt"))).unwrap();
        let (first, second) = text.split_once('\n').unwrap();
        assert!(first.contains("`num_nodes`") && first.contains("different"), "{first}");
        assert!(
            second.contains("started 2 processes") && second.contains("`devices`"),
            "{second}"
        );
    }
    assert!(!dir.path().join("root").exists(), "nothing was written");
}

/// A rank that stops answering (here: sleeps instead of training) makes the other's gradient
/// all-reduce time out: the watchdog names the rank and the collective and aborts the job,
/// which ends with an error instead of hanging.
#[test]
fn a_rank_that_hangs_makes_the_job_fail_after_the_timeout() {
    if let Some(dir) = child_dir() {
        let mut trainer = builder(&dir.join("root")).build().unwrap();
        if rank() == 1 {
            std::thread::sleep(Duration::from_secs(600));
        }
        let _ = trainer.fit(Regressor::new(), Loaders::fit(pair_loader(48, 8), None));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "a_rank_that_hangs_makes_the_job_fail_after_the_timeout",
        dir.path(),
        &[("BURN_LIGHTNING_MPI_TIMEOUT", "2")],
        Duration::from_secs(120),
    );
    assert!(!status.success(), "{output}");
    // Its first collective of the step is the `sync_dist` reduction of `training_step`.
    assert!(
        output.contains("rank 0 timed out") && output.contains("`sync_dist` value"),
        "{output}"
    );
}

/// The ranks of the two tests below: rank 1 ends its process at its second step (exits or
/// aborts, as `EXIT_NOT_ABORT` says) while rank 0 trains on.
fn rank_one_ends_its_process_at_step_one(dir: &Path) {
    let mut trainer = builder(&dir.join("root")).build().unwrap();
    let model = Regressor {
        exit_at_step_one: rank() == 1,
        ..Regressor::new()
    };
    let _ = trainer.fit(model, Loaders::fit(pair_loader(48, 8), None));
}

/// A rank that ends its process in the middle of training (`process::exit`, as a `main` that
/// returns a rank's error does) leaves the other waiting in a collective and itself in
/// `MPI_Finalize`: the watchdog ends the job after the timeout.
#[test]
fn a_rank_that_exits_mid_run_ends_the_job_after_the_timeout() {
    if let Some(dir) = child_dir() {
        rank_one_ends_its_process_at_step_one(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "a_rank_that_exits_mid_run_ends_the_job_after_the_timeout",
        dir.path(),
        &[("BURN_LIGHTNING_MPI_TIMEOUT", "2"), ("EXIT_NOT_ABORT", "1")],
        Duration::from_secs(120),
    );
    assert!(!status.success(), "{output}");
    assert!(output.contains("timed out after 2.0 s"), "{output}");
}

/// A rank that crashes in the middle of training (aborts at its second step) ends the job:
/// `mpirun` names the rank that died and stops the other, which waits in a collective, with an
/// error status, not a hang.
#[test]
fn a_rank_that_dies_mid_run_ends_the_job_with_an_error() {
    if let Some(dir) = child_dir() {
        rank_one_ends_its_process_at_step_one(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = mpirun(
        "a_rank_that_dies_mid_run_ends_the_job_with_an_error",
        dir.path(),
        &[("BURN_LIGHTNING_MPI_TIMEOUT", "20")],
        Duration::from_secs(120),
    );
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("rank 1") && output.contains("signal 6"),
        "mpirun names the rank that died: {output}"
    );
}
