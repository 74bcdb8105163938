//! SIGINT, SIGTERM and SIGHUP, sent for real to a child process that trains: the run stops at a
//! batch boundary, `on_exception` runs (`OnExceptionCheckpoint` saves a checkpoint that loads),
//! the loggers are flushed, and the process exits with 130, 143 or 129, also when its terminal
//! is gone; a second Ctrl-C while it shuts down exits at once and says what it abandoned. A run stuck in its dataloader still ends on a signal, after the trainer's
//! `signal_timeout`, with the queued checkpoints written and the loggers flushed. Each test runs
//! one child (about a second of training). In a SLURM job, SIGUSR1 saves an HPC checkpoint and
//! requeues the job through a stand-in `scontrol`.

mod common;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use burn_lightning::{JsonValue, Logger};
use common::{Pair, pair_loader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set in the child: its directory, and whether its `on_exception` is slow.
const CHILD_DIR: &str = "BURN_LIGHTNING_SIGNAL_CHILD_DIR";
const CHILD_SLOW: &str = "BURN_LIGHTNING_SIGNAL_CHILD_SLOW";
/// Set in the child: its module carries ballast weights, and only the on-exception checkpoint
/// is saved.
const CHILD_BIG: &str = "BURN_LIGHTNING_SIGNAL_CHILD_BIG";
/// Set in the child: its training loader blocks forever after this many batches.
const CHILD_STUCK_AFTER: &str = "BURN_LIGHTNING_SIGNAL_CHILD_STUCK_AFTER";
/// Set in the child: it fits without `ckpt_path` up to this global step, writes the step it
/// reached to `<dir>/reached` and exits.
const CHILD_MAX_STEPS: &str = "BURN_LIGHTNING_SIGNAL_CHILD_MAX_STEPS";

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    /// Weights no step uses, to make checkpoints large (writes that take a while).
    ballast: Option<Linear>,
}

impl Net {
    /// The regressor; with `ballast`, 33.5 million more weights (a 134 MB checkpoint).
    fn new(ballast: bool) -> Self {
        let device = Device::default();
        Self {
            layer: LinearConfig::new(32, 2).init(&device),
            ballast: ballast.then(|| {
                LinearConfig::new(8192, 4096)
                    .with_bias(false)
                    .with_initializer(burn::nn::Initializer::Zeros)
                    .init(&device)
            }),
        }
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        cx.log("loss", &loss);
        loss
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

/// Marks the child's progress with files, and slows it down so that signals land mid-run.
struct Pace {
    dir: PathBuf,
    slow_exception: bool,
}

impl Callback<Net> for Pace {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if cx.global_step == 3 {
            std::fs::write(self.dir.join("started"), b"").unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    fn on_exception(&mut self, _module: &mut Net, _error: &Error, _cx: &mut HookContext<'_>) {
        std::fs::write(self.dir.join("on_exception"), b"").unwrap();
        if self.slow_exception {
            std::thread::sleep(Duration::from_secs(120));
        }
    }
}

/// Writes the status `finalize` gets to `<dir>/finalized` (a tracker records a signal as
/// "interrupted", not as a failure: MLflow's KILLED).
struct FinalizeStatus(PathBuf);

impl Logger for FinalizeStatus {
    fn name(&self) -> &str {
        "finalize-status"
    }
    fn log_dir(&mut self) -> Result<PathBuf, Error> {
        Ok(self.0.clone())
    }
    fn log_hyperparams(&mut self, _hparams: &JsonValue) -> Result<(), Error> {
        Ok(())
    }
    fn log_metrics(&mut self, _metrics: &BTreeMap<String, f64>, _step: usize) -> Result<(), Error> {
        Ok(())
    }
    fn finalize(&mut self, status: &str) -> Result<(), Error> {
        std::fs::write(self.0.join("finalized"), status).unwrap();
        Ok(())
    }
}

/// A loader whose iterator yields `batches` batches of `inner`, then writes `<dir>/blocked` and
/// blocks forever (a dataloader waiting for a dead source).
#[derive(Clone)]
struct BlockingLoader {
    inner: Loader<Pair>,
    batches: usize,
    dir: PathBuf,
}

struct BlockingIter<'a> {
    inner: Box<dyn DataLoaderIterator<Pair> + 'a>,
    left: usize,
    dir: PathBuf,
}

impl Iterator for BlockingIter<'_> {
    type Item = Result<Pair, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            std::fs::write(self.dir.join("blocked"), b"").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        self.left -= 1;
        self.inner.next()
    }
}

impl DataLoaderIterator<Pair> for BlockingIter<'_> {
    fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

impl DataLoader<Pair> for BlockingLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<Pair> + 'a> {
        Box::new(BlockingIter {
            inner: self.inner.iter(),
            left: self.batches,
            dir: self.dir.clone(),
        })
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<Pair>> {
        Arc::new(Self {
            inner: self.inner.to_device(device),
            ..self.clone()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<Pair>> {
        Arc::new(Self {
            inner: self.inner.slice(start, end),
            ..self.clone()
        })
    }
}

/// The child's side: trains until a signal stops it.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child_trains_until_signalled() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by the signal tests"));
    let slow_exception = std::env::var(CHILD_SLOW).is_ok();
    let stuck_after: Option<usize> = std::env::var(CHILD_STUCK_AFTER).ok().map(|n| n.parse().unwrap());
    let loader = match stuck_after {
        Some(batches) => Arc::new(BlockingLoader {
            inner: pair_loader(64, 4),
            batches,
            dir: dir.clone(),
        }) as Loader<Pair>,
        None => pair_loader(64, 4),
    };
    if let Ok(steps) = std::env::var(CHILD_MAX_STEPS) {
        let mut trainer = Trainer::builder()
            .default_root_dir(&dir)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .max_steps(steps.parse::<usize>().unwrap())
            .build()
            .unwrap();
        let model = Net::new(false);
        trainer.fit(model, Loaders::fit(loader, None)).unwrap();
        std::fs::write(dir.join("reached"), trainer.global_step().to_string()).unwrap();
        return;
    }
    // With ballast, only the on-exception checkpoint is written (a 134 MB write that is still
    // in progress when the second Ctrl-C comes).
    let big = std::env::var(CHILD_BIG).is_ok();
    let mut builder = Trainer::builder().signal_timeout(1.0);
    if !big {
        builder = builder.callback(ModelCheckpoint::new().every_n_train_steps(2).save_top_k(-1));
    }
    let mut trainer = builder
        .default_root_dir(&dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .log_every_n_steps(1)
        .max_epochs(100_000)
        .logger(CsvLogger::new(&dir))
        .logger(FinalizeStatus(dir.clone()))
        .callback(Pace {
            dir: dir.clone(),
            slow_exception,
        })
        .callback(OnExceptionCheckpoint::new(&dir))
        .build()
        .unwrap();
    let model = Net::new(big);
    let _ = trainer.fit(model, Loaders::fit(loader, None));
    unreachable!("fit exits the process after a signal");
}

fn spawn_child(dir: &Path, slow_exception: bool) -> Child {
    spawn_child_with(dir, slow_exception, None)
}

/// A child in a SLURM batch job (job 4242) whose `scontrol` is a stand-in on the `PATH` that
/// writes its arguments to `<dir>/scontrol_args`.
fn spawn_slurm_child(dir: &Path) -> Child {
    spawn_slurm_child_with(dir, None)
}

fn spawn_slurm_child_with(dir: &Path, max_steps: Option<usize>) -> Child {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let scontrol = bin.join("scontrol");
    let script = format!("#!/bin/sh\necho \"$@\" > '{}'\n", dir.join("scontrol_args").display());
    std::fs::write(&scontrol, script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&scontrol, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_trains_until_signalled", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env("PATH", path)
        .env("SLURM_NTASKS", "1")
        .env("SLURM_JOB_ID", "4242")
        .env("SLURM_JOB_NAME", "train")
        .env_remove("SLURM_ARRAY_JOB_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(steps) = max_steps {
        command.env(CHILD_MAX_STEPS, steps.to_string()).stdout(Stdio::piped());
    }
    command.spawn().unwrap()
}

fn spawn_child_with(dir: &Path, slow_exception: bool, stuck_after: Option<usize>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_trains_until_signalled", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if slow_exception {
        command.env(CHILD_SLOW, "1");
    }
    if let Some(batches) = stuck_after {
        command.env(CHILD_STUCK_AFTER, batches.to_string());
    }
    command.spawn().unwrap()
}

/// Waits up to a minute for `path` to exist (the child is compiled and starting).
fn wait_for(path: &Path, child: &mut Child) {
    let started = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended before {}: {status}", path.display());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(signal: &str, child: &Child) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The child's exit code and what it wrote to stderr; a child still running after `limit` is
/// killed and the test fails.
fn wait_exit(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let output = child.wait_with_output().unwrap();
            return (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the child still ran {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stops_gracefully(signal: &str, expected_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), false);
    wait_for(&dir.path().join("started"), &mut child);
    send(signal, &child);
    let (code, stderr) = wait_exit(child, Duration::from_secs(60));
    assert_eq!(code, Some(expected_code), "{stderr}");
    assert!(stderr.contains(&format!("SIG{signal}")), "{stderr}");
    assert!(dir.path().join("on_exception").exists(), "on_exception ran");
    let status = std::fs::read_to_string(dir.path().join("finalized")).unwrap();
    assert_eq!(status, "interrupted", "the loggers hear of a signal, not of a failure");

    // The checkpoint `on_exception` asked for is complete and loads, at a batch boundary.
    let checkpoint = Checkpoint::load(&dir.path().join("on_exception.ckpt")).unwrap();
    assert!(checkpoint.global_step >= 3, "{}", checkpoint.global_step);
    assert!(checkpoint.has_optimizer_state());
    // The logger was flushed: a row per step up to the last one.
    let csv = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/metrics.csv")).unwrap();
    assert!(csv.lines().count() > checkpoint.global_step, "{csv}");
}

#[test]
fn sigint_stops_at_a_batch_boundary_saves_a_checkpoint_and_exits_with_130() {
    stops_gracefully("INT", 130);
}

#[test]
fn sigterm_stops_at_a_batch_boundary_saves_a_checkpoint_and_exits_with_143() {
    stops_gracefully("TERM", 143);
}

#[test]
fn sighup_stops_at_a_batch_boundary_saves_a_checkpoint_and_exits_with_129() {
    stops_gracefully("HUP", 129);
}

/// A closed terminal: the child's stdout and stderr are a pseudo-terminal whose other side is
/// closed before the hangup, so that every write to them fails (`EIO`) as after a dropped ssh
/// connection. The shutdown prints (the checkpoint's line, the exit line) must not panic: the
/// child still exits 129 with its on-exception checkpoint and every row in `metrics.csv`.
#[test]
fn sighup_after_the_terminal_closed_still_shuts_down_cleanly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: plain libc calls on a descriptor this test owns; `ptsname` is read at once.
    let (master, slave) = unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "no pseudo-terminal: {}", std::io::Error::last_os_error());
        // The child must not inherit it: the terminal closes when this test drops it.
        assert_eq!(libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC), 0);
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(master)).to_owned();
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(slave >= 0);
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_trains_until_signalled", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    wait_for(&dir.path().join("started"), &mut child);
    drop(master);
    send("HUP", &child);
    let (code, _) = wait_exit(child, Duration::from_secs(60));
    assert_eq!(
        code,
        Some(129),
        "a panic exits 101, the default action kills without a code"
    );
    let checkpoint = Checkpoint::load(&dir.path().join("on_exception.ckpt")).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/metrics.csv")).unwrap();
    assert!(csv.lines().count() > checkpoint.global_step, "{csv}");
}

/// A second Ctrl-C while the shutdown runs exits at once and says what it abandoned: first in a
/// slow `on_exception`; then while the on-exception checkpoint (134 MB) is being written, whose
/// temporary file it removes.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), true);
    wait_for(&dir.path().join("started"), &mut child);
    send("INT", &child);
    // `on_exception` now sleeps for two minutes; the second Ctrl-C does not wait for it.
    wait_for(&dir.path().join("on_exception"), &mut child);
    send("INT", &child);
    let (code, stderr) = wait_exit(child, Duration::from_secs(30));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("SIGINT again") && stderr.contains("on-exception checkpoint") && stderr.contains("abandoned"),
        "{stderr}"
    );
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());

    // The on-exception checkpoint's write in progress: its temporary file is there at the second
    // Ctrl-C and gone after (before, a forced exit left it behind).
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_trains_until_signalled", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_BIG, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&dir.path().join("started"), &mut child);
    send("INT", &child);
    let started = Instant::now();
    let writing = loop {
        let found = temp_files(dir.path());
        if !found.is_empty() {
            break found;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended before its on-exception checkpoint was being written: {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no write began");
        std::thread::sleep(Duration::from_millis(1));
    };
    send("INT", &child);
    let (code, stderr) = wait_exit(child, Duration::from_secs(30));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        writing[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".on_exception.ckpt.tmp-"),
        "{writing:?}"
    );
    assert!(stderr.contains("(1 partly written file(s) removed)"), "{stderr}");
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());
    assert!(
        !dir.path().join("on_exception.ckpt").exists(),
        "the abandoned write never completed"
    );
}

/// The temporary files (`.<name>.tmp-<random>`) under `dir`, at any depth.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temp_files(&path));
        } else if path.file_name().unwrap().to_string_lossy().contains(".tmp-") {
            found.push(path);
        }
    }
    found
}

/// A run whose dataloader blocks forever never reaches a batch boundary: after the signal and
/// the trainer's `signal_timeout` (1 s here) it ends anyway, with 143 or 130, the queued
/// checkpoints written and complete, the rows the CSV logger held in memory (it flushes every
/// 100 steps) on disk, and a word on stderr about the skipped `on_exception`.
fn stuck_run_ends(signal: &str, expected_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child_with(dir.path(), false, Some(13));
    wait_for(&dir.path().join("blocked"), &mut child);
    let sent = Instant::now();
    send(signal, &child);
    let (code, stderr) = wait_exit(child, Duration::from_secs(30));
    let took = sent.elapsed();
    assert_eq!(code, Some(expected_code), "{stderr}");
    assert!(stderr.contains(&format!("SIG{signal}")), "{stderr}");
    assert!(
        stderr.contains("no batch boundary") && stderr.contains("signal_timeout"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "ended after {took:?}, before the timeout"
    );
    assert!(
        !dir.path().join("on_exception").exists(),
        "the stuck thread holds the module"
    );

    // 12 batches trained (the loop fetches one batch ahead, and the 14th never comes): the 12
    // rows logged are on disk, and so is the checkpoint of step 12, complete, with no temporary
    // file left.
    let csv = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 12, "{csv}");
    let checkpoints = dir.path().join("lightning_logs/version_0/checkpoints");
    let names: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".ckpt")), "{names:?}");
    let last = Checkpoint::load(&checkpoints.join("epoch=0-step=12.ckpt")).unwrap();
    assert_eq!(last.global_step, 12);
}

#[test]
fn sigterm_ends_a_run_stuck_in_its_dataloader_after_the_timeout() {
    stuck_run_ends("TERM", 143);
}

#[test]
fn sigint_ends_a_run_stuck_in_its_dataloader_after_the_timeout() {
    stuck_run_ends("INT", 130);
}

/// SLURM's `--signal=SIGUSR1@90`: the run saves `hpc_ckpt_1.ckpt`, requeues the job with
/// `scontrol requeue <job id>` and trains on until SLURM's SIGTERM; `ckpt_path = "hpc"` and
/// `"last"` resume from that checkpoint.
#[test]
fn sigusr1_in_a_slurm_job_saves_an_hpc_checkpoint_and_requeues_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_slurm_child(dir.path());
    wait_for(&dir.path().join("started"), &mut child);
    send("USR1", &child);
    wait_for(&dir.path().join("scontrol_args"), &mut child);
    let hpc = dir.path().join("hpc_ckpt_1.ckpt");
    assert!(hpc.is_file(), "the checkpoint is written before the requeue");
    // Training goes on until SLURM stops the job.
    assert!(child.try_wait().unwrap().is_none(), "the run goes on after the requeue");
    send("TERM", &child);
    let (code, stderr) = wait_exit(child, Duration::from_secs(60));
    assert_eq!(code, Some(143), "{stderr}");
    let args = std::fs::read_to_string(dir.path().join("scontrol_args")).unwrap();
    assert_eq!(args.trim(), "requeue 4242");
    let saved = Checkpoint::load(&hpc).unwrap();
    assert!(
        saved.global_step >= 3 && saved.has_optimizer_state(),
        "{}",
        saved.global_step
    );

    // The requeued job: `"hpc"` resumes from it; so does `"last"` where it is the newest.
    let alone = dir.path().join("requeued");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(&hpc, alone.join("hpc_ckpt_1.ckpt")).unwrap();
    for (root, ckpt_path) in [(dir.path(), "hpc"), (alone.as_path(), "last")] {
        let mut trainer = Trainer::builder()
            .default_root_dir(root)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .max_steps(saved.global_step + 2)
            .build()
            .unwrap();
        let model = Net::new(false);
        trainer
            .fit_from(model, Loaders::fit(pair_loader(64, 4), None), ckpt_path)
            .unwrap();
        assert_eq!(trainer.global_step(), saved.global_step + 2, "{ckpt_path}");
    }
    // The requeued job itself, in the SLURM job: a fit without `ckpt_path` resumes from it.
    let child = spawn_slurm_child_with(dir.path(), Some(saved.global_step + 1));
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("Restored all states from the checkpoint at") && stdout.contains("hpc_ckpt_1.ckpt"),
        "{stdout}"
    );
    let reached = std::fs::read_to_string(dir.path().join("reached")).unwrap();
    assert_eq!(
        reached,
        (saved.global_step + 1).to_string(),
        "one step after the HPC checkpoint's"
    );
    // Without one, `"hpc"` is an error naming where it looked.
    let empty = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::<Net>::builder()
        .default_root_dir(empty.path())
        .build()
        .unwrap();
    let model = Net::new(false);
    let error = trainer
        .fit_from(model, Loaders::fit(pair_loader(64, 4), None), "hpc")
        .unwrap_err()
        .into_error();
    assert!(error.to_string().contains("hpc_ckpt_"), "{error}");
}

/// Seconds from `sent` until the child exits (polled every 2 ms), its exit code and stderr; a
/// child still running after a minute is killed and counted as a hang (`None`).
fn exit_after(mut child: Child, sent: Instant) -> (Option<f64>, Option<i32>, String) {
    loop {
        if child.try_wait().unwrap().is_some() {
            let took = sent.elapsed().as_secs_f64();
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            return (Some(took), output.status.code(), stderr);
        }
        if sent.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, None, String::new());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `metrics.csv` under `dir` has a row per step up to `step`, each with the header's
/// number of fields.
fn rows_intact(dir: &Path, step: usize) -> bool {
    let Ok(csv) = std::fs::read_to_string(dir.join("lightning_logs/version_0/metrics.csv")) else {
        return false;
    };
    let mut lines = csv.lines();
    let fields = lines.next().map_or(0, |header| header.split(',').count());
    let rows: Vec<&str> = lines.collect();
    rows.len() >= step && rows.iter().all(|row| row.split(',').count() == fields)
}

/// `(min, median, max)` of `times`, in seconds.
fn spread(times: &mut [f64]) -> String {
    if times.is_empty() {
        return "no times".into();
    }
    times.sort_by(f64::total_cmp);
    format!(
        "{:.3}/{:.3}/{:.3} s min/median/max",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    )
}

/// The signal trial `scripts/fault_trials.sh` runs (not CI): `FAULT_SIGNAL_RUNS` (10) children
/// per signal. SIGINT, SIGTERM, SIGHUP to a training child: its exit code, a loadable
/// on-exception checkpoint with the optimizer's state, `metrics.csv` rows intact, no temporary
/// file, and the time from the signal to the exit. SIGUSR1 in a SLURM job (stand-in
/// `scontrol`): the time to the requeue, a loadable `hpc_ckpt_1.ckpt`, then SIGTERM's exit.
/// SIGTERM to a child stuck in its dataloader (`signal_timeout` 1 s): its exit and time. One
/// `FAULT` line per signal.
#[test]
#[ignore = "a fault trial: scripts/fault_trials.sh"]
fn fault_trial_real_signals() {
    let runs: usize = std::env::var("FAULT_SIGNAL_RUNS").map_or(10, |n| n.parse().unwrap());
    let mut all_ok = true;
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let (mut ok, mut times, mut failures) = (0, Vec::new(), Vec::new());
        for _ in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            let mut child = spawn_child(dir.path(), false);
            wait_for(&dir.path().join("started"), &mut child);
            let sent = Instant::now();
            send(signal, &child);
            let (took, exit, stderr) = exit_after(child, sent);
            let checkpoint = Checkpoint::load(&dir.path().join("on_exception.ckpt"));
            let resumable = checkpoint.as_ref().is_ok_and(|c| c.has_optimizer_state());
            let rows = checkpoint
                .as_ref()
                .is_ok_and(|c| rows_intact(dir.path(), c.global_step));
            let clean = temp_files(dir.path()).is_empty();
            times.extend(took);
            if exit == Some(code) && resumable && rows && clean {
                ok += 1;
            } else {
                failures.push(format!(
                    "exit {exit:?}, resumable {resumable}, rows {rows}, no temp file {clean}: {stderr}"
                ));
            }
        }
        println!(
            "FAULT SIG{signal}: {ok} of {runs} exited {code} with a resumable checkpoint, metrics.csv rows intact and no temp file; \
             signal to exit {}",
            spread(&mut times)
        );
        for failure in &failures {
            println!("  {failure}");
        }
        all_ok &= failures.is_empty();
    }

    let (mut ok, mut requeue, mut exit_times, mut failures) = (0, Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_slurm_child(dir.path());
        wait_for(&dir.path().join("started"), &mut child);
        let sent = Instant::now();
        send("USR1", &child);
        while !dir.path().join("scontrol_args").exists() && sent.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        requeue.push(sent.elapsed().as_secs_f64());
        let args = std::fs::read_to_string(dir.path().join("scontrol_args")).unwrap_or_default();
        let hpc = Checkpoint::load(&dir.path().join("hpc_ckpt_1.ckpt"));
        let resumable = hpc.as_ref().is_ok_and(|c| c.has_optimizer_state());
        let running = child.try_wait().unwrap().is_none();
        let sent = Instant::now();
        send("TERM", &child);
        let (took, exit, stderr) = exit_after(child, sent);
        exit_times.extend(took);
        if args.trim() == "requeue 4242" && resumable && running && exit == Some(143) {
            ok += 1;
        } else {
            failures.push(format!(
                "scontrol {args:?}, resumable {resumable}, ran on {running}, exit {exit:?}: {stderr}"
            ));
        }
    }
    println!(
        "FAULT SIGUSR1 (SLURM, stand-in scontrol): {ok} of {runs} saved a resumable hpc_ckpt_1.ckpt, ran `scontrol requeue 4242`, \
         trained on, then exited 143 on SIGTERM; signal to requeue {}; SIGTERM to exit {}",
        spread(&mut requeue),
        spread(&mut exit_times)
    );
    for failure in &failures {
        println!("  {failure}");
    }
    all_ok &= failures.is_empty();

    let (mut ok, mut times, mut failures) = (0, Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_child_with(dir.path(), false, Some(13));
        wait_for(&dir.path().join("blocked"), &mut child);
        let sent = Instant::now();
        send("TERM", &child);
        let (took, exit, stderr) = exit_after(child, sent);
        times.extend(took);
        let checkpoint = Checkpoint::load(
            &dir.path()
                .join("lightning_logs/version_0/checkpoints/epoch=0-step=12.ckpt"),
        );
        if exit == Some(143) && checkpoint.is_ok() && rows_intact(dir.path(), 12) && temp_files(dir.path()).is_empty() {
            ok += 1;
        } else {
            failures.push(format!("exit {exit:?}, checkpoint {:?}: {stderr}", checkpoint.err()));
        }
    }
    println!(
        "FAULT SIGTERM to a run stuck in its dataloader (signal_timeout 1 s): {ok} of {runs} exited 143 with the step-12 checkpoint \
         and 12 rows; signal to exit {}",
        spread(&mut times)
    );
    for failure in &failures {
        println!("  {failure}");
    }
    assert!(all_ok && failures.is_empty(), "see the lines above");
}
