//! SIGINT and SIGTERM, sent for real to a child process that trains: the run stops at a batch
//! boundary, `on_exception` runs (`OnExceptionCheckpoint` saves a checkpoint that loads), the
//! loggers are flushed, and the process exits with 130 or 143; a second Ctrl-C while it shuts
//! down exits at once. Each test runs one child (about a second of training).

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child: its directory, and whether its `on_exception` is slow.
const CHILD_DIR: &str = "BURN_LIGHTNING_SIGNAL_CHILD_DIR";
const CHILD_SLOW: &str = "BURN_LIGHTNING_SIGNAL_CHILD_SLOW";

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
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

/// The child's side: trains until a signal stops it.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child_trains_until_signalled() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by the signal tests"));
    let slow_exception = std::env::var(CHILD_SLOW).is_ok();
    let mut trainer = Trainer::builder()
        .default_root_dir(&dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .log_every_n_steps(1)
        .max_epochs(100_000)
        .logger(CsvLogger::new(&dir))
        .callback(Pace {
            dir: dir.clone(),
            slow_exception,
        })
        .callback(OnExceptionCheckpoint::new(&dir))
        .build()
        .unwrap();
    let model = Net {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    };
    let _ = trainer.fit(model, Loaders::fit(pair_loader(64, 4), None));
    unreachable!("fit exits the process after a signal");
}

fn spawn_child(dir: &Path, slow_exception: bool) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_trains_until_signalled", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if slow_exception {
        command.env(CHILD_SLOW, "1");
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
}
