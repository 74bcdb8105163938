//! The MLflow logger against MLflow itself: a real `mlflow server` (SQLite backend, artifacts
//! served by the server) on a free port, started and killed by each test, and MLflow's Python
//! client reading back what the runs logged. `MLFLOW_PYTHON` names the python of a venv with
//! `mlflow` (`export MLFLOW_PYTHON="$(bash scripts/mlflow_venv.sh)"`); without it the tests that
//! need a server say so and pass. `cargo test --features mlflow --test mlflow`.
#![cfg(all(feature = "mlflow", unix))]

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use burn_lightning::{LogModel, MlflowLogger};
use common::recording::{Call, Recording};
use common::{Pair, pair_loader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Logs `train_loss` every step, `edge` (NaN, +inf, -inf, then the batch index) on step only,
/// `val_loss` and `test_loss`. Its `training_step` returns `Err` at batch `fail_at`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[hparam(default = 0.05)]
    lr: f64,
    #[hparam(default = 32)]
    width: usize,
    #[module(skip)]
    fail_at: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("batch {0} fails on purpose")]
struct StepFailed(usize);

impl Net {
    fn new() -> Self {
        Self::from_hparams(&NetHparams::default(), &Device::default())
    }

    /// What `LightningCli` builds.
    fn from_hparams(hparams: &NetHparams, device: &Device) -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(device),
            lr: hparams.lr,
            width: hparams.width,
            fail_at: None,
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Result<Tensor<1>, StepFailed> {
        if self.fail_at == Some(batch_idx) {
            return Err(StepFailed(batch_idx));
        }
        let loss = self.loss(batch);
        cx.log("train_loss", &loss);
        let edge = match batch_idx {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            i => i as f64,
        };
        cx.log("edge", edge);
        Ok(loss)
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
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
}

/// `data()` for `LightningCli`.
#[derive(Default, Serialize, Deserialize, DataOptions)]
#[serde(default, deny_unknown_fields)]
struct NetData {
    /// Unused: a datamodule has options.
    seed: u64,
}

impl DataModule<Pair> for NetData {
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(16, 4))
    }
    fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(4, 4))
    }
    fn test_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(8, 4))
    }
    fn predict_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(4, 4))
    }
}

fn cli() -> LightningCli<Net, NetData> {
    LightningCli::new(Net::from_hparams).trainer_defaults(
        TrainerConfig::default()
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .exit_on_signal(false),
    )
}

/// The run a trainer logged to (its `log_dir` is `<save_dir>/<experiment id>/<run id>`).
fn run_id_of<M: LightningModule>(trainer: &Trainer<M>) -> String {
    let dir = trainer.log_dir().expect("the run has a log_dir");
    dir.file_name().unwrap().to_str().unwrap().to_string()
}

/// The python of a venv with mlflow, or `None` (the test then says why it skips).
fn mlflow_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("MLFLOW_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None => {
            eprintln!(
                "SKIPPED {test}: MLFLOW_PYTHON is unset (export MLFLOW_PYTHON=\"$(bash scripts/mlflow_venv.sh)\")"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An `mlflow server` in its own process group, killed (the group: its workers too) when
/// dropped, so that a failing test leaves no server behind.
struct Server {
    python: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(python: &Path, dir: &Path) -> Self {
        let mut server = Self {
            python: python.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and database) and waits until it answers.
    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(&self.python)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--workers", "1"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", self.dir.join("mlflow.db").display()))
            .arg("--serve-artifacts")
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("mlflow server exited ({status}):\n{log}");
            }
            if health(self.port) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "mlflow server did not answer in 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: the server's workers hold the port too.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            // Until the port refuses connections (the workers are gone).
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// What MLflow's Python client reads of `run_id`.
    fn read_run(&self, run_id: &str) -> RunRecord {
        self.read_runs(&[run_id]).remove(0)
    }

    /// What MLflow's Python client reads of each run (one python: its start takes seconds).
    fn read_runs(&self, run_ids: &[&str]) -> Vec<RunRecord> {
        let output = Command::new(&self.python)
            .arg("-c")
            .arg(READ_RUN)
            .arg(self.uri())
            .arg(self.dir.join("downloads"))
            .args(run_ids)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(output.status.success(), "reading the runs back failed");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        json.as_array().unwrap().iter().map(RunRecord::from_json).collect()
    }
}

impl RunRecord {
    fn from_json(json: &serde_json::Value) -> Self {
        let strings = |v: &serde_json::Value| -> BTreeMap<String, String> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        };
        let text = |key: &str| json[key].as_str().unwrap().to_string();
        let metrics = json["metrics"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, history)| {
                let mut points: Vec<(usize, f64)> = history
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_str().unwrap().parse().unwrap()))
                    .collect();
                points.sort_by_key(|a| a.0);
                (key.clone(), points)
            })
            .collect();
        RunRecord {
            status: text("status"),
            experiment_id: text("experiment_id"),
            experiment_name: text("experiment_name"),
            artifact_location: text("artifact_location"),
            artifact_uri: text("artifact_uri"),
            params: strings(&json["params"]),
            tags: strings(&json["tags"]),
            metrics,
            artifacts: json["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a[0].as_str().unwrap().to_string(), a[1].as_u64().unwrap()))
                .collect(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Per run: metric histories as `(step, repr(value))`, params, tags, status, its experiment, and
/// the artifacts (path, size) downloaded with MLflow's client.
const READ_RUN: &str = r#"
import json, os, sys
from mlflow.tracking import MlflowClient
uri, downloads = sys.argv[1:3]
client = MlflowClient(uri)
runs = []
for run_id in sys.argv[3:]:
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    metrics = {}
    for key in run.data.metrics:
        metrics[key] = [[m.step, repr(m.value)] for m in client.get_metric_history(run_id, key)]
    into = os.path.join(downloads, run_id)
    os.makedirs(into, exist_ok=True)
    local = client.download_artifacts(run_id, "", into)
    artifacts = []
    for root, _, files in os.walk(local):
        for name in files:
            path = os.path.join(root, name)
            artifacts.append([os.path.relpath(path, local), os.path.getsize(path)])
    runs.append({"status": run.info.status, "experiment_id": run.info.experiment_id,
        "experiment_name": experiment.name, "artifact_location": experiment.artifact_location,
        "artifact_uri": run.info.artifact_uri, "params": run.data.params, "tags": run.data.tags,
        "metrics": metrics, "artifacts": sorted(artifacts)})
print(json.dumps(runs))
"#;

struct RunRecord {
    status: String,
    experiment_id: String,
    experiment_name: String,
    artifact_location: String,
    artifact_uri: String,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    metrics: BTreeMap<String, Vec<(usize, f64)>>,
    artifacts: Vec<(String, u64)>,
}

/// Every value the recording logger got, per metric, as `(step, value)` sorted by step.
fn recorded_histories(calls: &[Call]) -> BTreeMap<String, Vec<(usize, f64)>> {
    let mut histories: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    for call in calls {
        if let Call::Metrics(step, metrics) = call {
            for (key, value) in metrics {
                histories.entry(key.clone()).or_default().push((*step, *value));
            }
        }
    }
    for points in histories.values_mut() {
        points.sort_by_key(|a| a.0);
    }
    histories
}

/// MLflow's SQL store keeps NaN, and infinities as the largest finite doubles.
fn as_mlflow_stores(value: f64) -> f64 {
    match value {
        f64::INFINITY => f64::MAX,
        f64::NEG_INFINITY => f64::MIN,
        v => v,
    }
}

/// The distinct `(step, value)` points, sorted. MLflow keeps one of identical points logged in
/// the same millisecond (its SQL store's key is key, timestamp, step and value): `epoch` at an
/// epoch's last step comes from both the validation and the training epoch's values.
fn distinct(points: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let mut points: Vec<(usize, f64)> = points.iter().map(|&(s, v)| (s, as_mlflow_stores(v))).collect();
    points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup_by(|a, b| a.0 == b.0 && a.1.total_cmp(&b.1).is_eq());
    points
}

fn assert_same_histories(logged: &BTreeMap<String, Vec<(usize, f64)>>, read: &BTreeMap<String, Vec<(usize, f64)>>) {
    assert_eq!(logged.keys().collect::<Vec<_>>(), read.keys().collect::<Vec<_>>());
    for (key, points) in logged {
        let points = &distinct(points);
        let got = &distinct(&read[key]);
        assert_eq!(points.len(), got.len(), "{key}: {points:?} vs {got:?}");
        for ((step, value), (got_step, got_value)) in points.iter().zip(got) {
            let value = *value;
            assert_eq!(step, got_step, "{key}");
            assert!(
                value == *got_value || (value.is_nan() && got_value.is_nan()),
                "{key} at step {step}: logged {value}, MLflow has {got_value}"
            );
        }
    }
}

#[test]
fn a_fit_and_a_test_reach_the_server_as_logged() {
    let Some(python) = mlflow_python("a_fit_and_a_test_reach_the_server_as_logged") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&python, dir.path());
    let logger = MlflowLogger::new()
        .tracking_uri(server.uri())
        .experiment_name("burn-lightning-test")
        .run_name("fit-then-test")
        .tag("team", "vision")
        .save_dir(dir.path().join("mlruns"))
        .log_model(LogModel::AtEnd);
    let delivery = logger.delivery();
    let (recording, calls) = Recording::new(dir.path());
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(2)
        .log_every_n_steps(1)
        .logger(logger)
        .logger(recording)
        .build()
        .unwrap();
    let mut model = trainer.fit(Net::new(), data()).unwrap();
    trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();

    // The run directory is `<save_dir>/<experiment id>/<run id>`, as Lightning's.
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    let experiment_id = run_dir.parent().unwrap().file_name().unwrap().to_str().unwrap();
    assert!(run_dir.starts_with(dir.path().join("mlruns")));
    let checkpoint = run_dir.join("checkpoints/epoch=1-step=8.ckpt");
    assert!(checkpoint.exists());

    let read = server.read_run(&run_id);
    assert_eq!(read.experiment_id, experiment_id);
    assert_eq!(read.status, "FINISHED");
    let calls = calls.lock().unwrap().clone();
    let logged = recorded_histories(&calls);
    assert!(logged.contains_key("test_loss") && logged["edge"].len() == 8);
    assert_same_histories(&logged, &read.metrics);
    assert_eq!(
        read.params,
        BTreeMap::from([
            ("lr".to_string(), "0.05".to_string()),
            ("width".to_string(), "32".to_string())
        ])
    );
    assert_eq!(read.tags["team"], "vision");
    assert_eq!(read.tags["mlflow.runName"], "fit-then-test");
    assert_eq!(read.tags["mlflow.source.type"], "LOCAL");
    // The checkpoint, byte for byte in size, under its stem (Lightning's layout).
    let size = std::fs::metadata(&checkpoint).unwrap().len();
    assert_eq!(
        read.artifacts,
        [("epoch=1-step=8/epoch=1-step=8.ckpt".to_string(), size)]
    );
    let report = delivery.report();
    assert_eq!((report.dropped, report.unsent, report.uploads), (0, 0, 1), "{report:?}");
}

/// The logger chosen by name in a config file for `LightningCli`, with Lightning's options: the
/// experiment (created with its `artifact_location`), the run's name and tags, `prefix` before
/// every key (`-`, Lightning's `LOGGER_JOIN_CHAR`), and the checkpoint uploaded at the end into
/// that location. Then `--trainer.logger` with `run_id` continues the run, and refuses to change
/// its params.
#[test]
fn a_logger_chosen_in_the_cli_logs_to_the_server_and_its_run_continues_by_id() {
    let Some(python) = mlflow_python("a_logger_chosen_in_the_cli_logs_to_the_server_and_its_run_continues_by_id")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&python, dir.path());
    let root = dir.path().display();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "trainer:\n  max_epochs: 2\n  log_every_n_steps: 1\n  default_root_dir: '{root}'\n  logger:\n    \
             class_path: mlflow\n    init_args:\n      tracking_uri: '{}'\n      experiment_name: from-the-cli\n      \
             run_name: cli\n      tags: {{team: vision}}\n      prefix: p\n      \
             artifact_location: 'mlflow-artifacts:/elsewhere'\n      log_model: true\n      save_dir: '{root}/mlruns'\n",
            server.uri()
        ),
    )
    .unwrap();
    let run = cli()
        .run_from(["net", "fit", "--config", config.to_str().unwrap()])
        .unwrap()
        .unwrap();
    let run_id = run_id_of(&run.trainer);
    let read = server.read_run(&run_id);
    assert_eq!(read.status, "FINISHED");
    assert_eq!(read.experiment_name, "from-the-cli");
    assert_eq!(read.artifact_location, "mlflow-artifacts:/elsewhere");
    assert_eq!(
        read.artifact_uri,
        format!("mlflow-artifacts:/elsewhere/{run_id}/artifacts")
    );
    assert_eq!(
        (read.tags["team"].as_str(), read.tags["mlflow.runName"].as_str()),
        ("vision", "cli")
    );
    assert_eq!(
        (read.params["lr"].as_str(), read.params["width"].as_str()),
        ("0.05", "32")
    );
    let keys: Vec<&str> = read.metrics.keys().map(String::as_str).collect();
    assert!(keys.iter().all(|k| k.starts_with("p-")), "{keys:?}");
    for key in ["p-train_loss", "p-edge", "p-val_loss"] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert_eq!(read.metrics["p-edge"].len(), 8, "2 epochs of 4 steps");
    // The checkpoint went through the server into the experiment's location.
    let checkpoint = run.trainer.log_dir().unwrap().join("checkpoints/epoch=1-step=8.ckpt");
    let size = std::fs::metadata(&checkpoint).unwrap().len();
    assert_eq!(
        read.artifacts,
        [("epoch=1-step=8/epoch=1-step=8.ckpt".to_string(), size)]
    );
    let stored = dir.path().join(format!(
        "artifacts/elsewhere/{run_id}/artifacts/epoch=1-step=8/epoch=1-step=8.ckpt"
    ));
    assert_eq!(
        std::fs::metadata(&stored).map(|m| m.len()).ok(),
        Some(size),
        "{}",
        stored.display()
    );

    // `run_id` continues the run (from the command line): its histories go on.
    let continued = format!(
        "{{class_path: MLFlowLogger, init_args: {{tracking_uri: '{}', run_id: {run_id}, prefix: p, \
         save_dir: '{root}/mlruns'}}}}",
        server.uri()
    );
    let args = [
        "net",
        "fit",
        "--trainer.max_epochs",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    ];
    let root_arg = ["--trainer.default_root_dir", &format!("{root}/continued")];
    let run = cli()
        .run_from(args.iter().chain(&root_arg).chain(&["--trainer.logger", &continued]))
        .unwrap()
        .unwrap();
    assert_eq!(run_id_of(&run.trainer), run_id);
    // A run continued with other hyperparameters: the server's refusal is the error.
    let error = cli()
        .run_from(
            args.iter()
                .chain(&root_arg)
                .chain(&["--trainer.logger", &continued, "--model.lr", "0.5"]),
        )
        .err()
        .unwrap();
    let error = error.message();
    assert!(error.contains("cannot change them") && error.contains("lr"), "{error}");
    let read = server.read_run(&run_id);
    assert_eq!(
        read.metrics["p-edge"].len(),
        8 + 4,
        "the second fit's steps were appended"
    );
    assert_eq!(read.params["lr"], "0.05", "the refused value is not stored");
    assert_eq!(read.status, "FAILED", "the refused run's end");
}

/// Per training epoch's start, the checkpoints uploaded so far.
struct UploadsAtEpochStart(burn_lightning::loggers::mlflow::MlflowDelivery, Arc<Mutex<Vec<usize>>>);

impl Callback<Net> for UploadsAtEpochStart {
    fn on_train_epoch_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.1.lock().unwrap().push(self.0.report().uploads);
    }
}

/// `log_model = "all"` uploads each checkpoint as it is written: the default checkpoint keeps
/// only the last epoch's file on disk, the server has all three.
#[test]
fn log_model_all_uploads_every_checkpoint_as_it_is_written() {
    let Some(python) = mlflow_python("log_model_all_uploads_every_checkpoint_as_it_is_written") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&python, dir.path());
    // An epoch's end waits for its upload, so that the count below does not race it.
    let logger = MlflowLogger::new()
        .tracking_uri(server.uri())
        .save_dir(dir.path().join("mlruns"))
        .log_model(LogModel::All)
        .epoch_flush_timeout(Duration::from_secs(60));
    let (delivery, uploads) = (logger.delivery(), Arc::new(Mutex::new(Vec::new())));
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(3)
        .logger(logger)
        .callback(UploadsAtEpochStart(delivery, uploads.clone()))
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(*uploads.lock().unwrap(), [0, 1, 2]);
    let checkpoints = trainer.log_dir().unwrap().join("checkpoints");
    let on_disk: Vec<_> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(on_disk, ["epoch=2-step=12.ckpt"]);
    let read = server.read_run(&run_id_of(&trainer));
    let names: Vec<&str> = read.artifacts.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "epoch=0-step=4/epoch=0-step=4.ckpt",
            "epoch=1-step=8/epoch=1-step=8.ckpt",
            "epoch=2-step=12/epoch=2-step=12.ckpt"
        ]
    );
    let size = std::fs::metadata(checkpoints.join("epoch=2-step=12.ckpt"))
        .unwrap()
        .len();
    assert_eq!(read.artifacts[2].1, size);
}

/// Set in a child process (`child_logs_to_mlflow`): its directory, and what it does: `signal`
/// trains until a signal stops it, `defaults` logs two short fits, with no option and with an
/// `experiment_name`. Its environment sets the server and an experiment (`MLFLOW_TRACKING_URI`,
/// `MLFLOW_EXPERIMENT_NAME`): a child, so that no other test sees them.
const CHILD_DIR: &str = "BURN_LIGHTNING_MLFLOW_CHILD_DIR";
const CHILD_MODE: &str = "BURN_LIGHTNING_MLFLOW_CHILD_MODE";

/// Writes `<dir>/started` after 3 steps, and slows each step so that a signal lands mid-run.
struct Started(PathBuf);

impl Callback<Net> for Started {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if cx.global_step == 3 {
            std::fs::write(self.0.join("started"), b"").unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The child's side (run by `a_run_ends_failed_on_an_error_and_killed_on_a_signal_...`); its
/// run ids go to `<dir>/<name>`.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child_logs_to_mlflow() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by a test"));
    let trainer = |logger: MlflowLogger, epochs: usize| {
        Trainer::builder()
            .default_root_dir(&dir)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .log_every_n_steps(1)
            .max_epochs(epochs)
            .logger(logger.save_dir(dir.join("mlruns")))
            .callback(Started(dir.clone()))
    };
    match std::env::var(CHILD_MODE).unwrap().as_str() {
        "defaults" => {
            for (name, logger) in [
                ("default_run", MlflowLogger::new()),
                ("named_run", MlflowLogger::new().experiment_name("given")),
            ] {
                let mut trainer = trainer(logger, 1).build().unwrap();
                trainer.fit(Net::new(), data()).unwrap();
                std::fs::write(dir.join(name), run_id_of(&trainer)).unwrap();
            }
        }
        "signal" => {
            let mut trainer = trainer(MlflowLogger::new().experiment_name("given"), 100_000)
                .build()
                .unwrap();
            let _ = trainer.fit(Net::new(), data());
            unreachable!("fit exits the process after a signal");
        }
        mode => panic!("unknown mode {mode}"),
    }
}

fn spawn_child(dir: &Path, mode: &str, server: &Server) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_logs_to_mlflow", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_EXPERIMENT_NAME", "from-the-environment")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child's exit code and stderr; one still running after a minute is killed.
fn wait_exit(mut child: Child) -> (Option<i32>, String) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the child still ran after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The run's end as MLflow records it: `FAILED` when `training_step` returns `Err`, `KILLED`
/// when SIGTERM stops the run (a child process). The children also take the server from
/// `MLFLOW_TRACKING_URI`, and the experiment from `MLFLOW_EXPERIMENT_NAME` unless the logger
/// names one.
#[test]
fn a_run_ends_failed_on_an_error_and_killed_on_a_signal_and_the_environment_gives_the_defaults() {
    let Some(python) =
        mlflow_python("a_run_ends_failed_on_an_error_and_killed_on_a_signal_and_the_environment_gives_the_defaults")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&python, dir.path());
    let (signal_dir, defaults_dir) = (dir.path().join("signal"), dir.path().join("defaults"));
    std::fs::create_dir_all(&signal_dir).unwrap();
    std::fs::create_dir_all(&defaults_dir).unwrap();
    let mut signalled = spawn_child(&signal_dir, "signal", &server);
    let defaults = spawn_child(&defaults_dir, "defaults", &server);

    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(2)
        .log_every_n_steps(1)
        .logger(
            MlflowLogger::new()
                .tracking_uri(server.uri())
                .save_dir(dir.path().join("mlruns")),
        )
        .build()
        .unwrap();
    let model = Net {
        fail_at: Some(2),
        ..Net::new()
    };
    let error = trainer.fit(model, data()).unwrap_err().to_string();
    assert!(error.contains("batch 2 fails on purpose"), "{error}");
    let failed = run_id_of(&trainer);

    let started = Instant::now();
    while !signal_dir.join("started").exists() {
        if let Some(status) = signalled.try_wait().unwrap() {
            panic!("the child ended before it trained: {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the child did not train");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(signalled.id() as i32, libc::SIGTERM) };
    let (code, stderr) = wait_exit(signalled);
    assert_eq!(code, Some(143), "{stderr}");
    // Its run directory is `mlruns/<experiment id>/<run id>`.
    let experiment = std::fs::read_dir(signal_dir.join("mlruns"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let killed = std::fs::read_dir(experiment.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let (code, stderr) = wait_exit(defaults);
    assert_eq!(code, Some(0), "{stderr}");
    let default_run = std::fs::read_to_string(defaults_dir.join("default_run")).unwrap();
    let named_run = std::fs::read_to_string(defaults_dir.join("named_run")).unwrap();

    let read = server.read_runs(&[&failed, killed.to_str().unwrap(), &default_run, &named_run]);
    let seen: Vec<(&str, &str)> = read
        .iter()
        .map(|r| (r.status.as_str(), r.experiment_name.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("FAILED", "lightning_logs"),
            ("KILLED", "given"),
            ("FINISHED", "from-the-environment"),
            ("FINISHED", "given"),
        ]
    );
    // The failed run logged its first two steps.
    assert_eq!(read[0].metrics["edge"].len(), 2, "{:?}", read[0].metrics);
}

#[test]
fn a_server_down_at_start_is_an_error_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{}", free_port());
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(1)
        .logger(MlflowLogger::new().tracking_uri(&uri).save_dir(dir.path()))
        .build()
        .unwrap();
    let error = trainer.fit(Net::new(), data()).unwrap_err().to_string();
    assert!(
        error.contains("cannot reach the server") && error.contains("get-by-name"),
        "{error}"
    );
    assert!(error.contains("MLflow"), "{error}");
    assert_eq!(trainer.global_step(), 0, "no training without the tracker");
}

/// Kills the server when epoch `kill_at` starts and starts it again when `restart_at` starts
/// (when given).
struct Outage {
    server: Arc<Mutex<Server>>,
    kill_at: usize,
    restart_at: Option<usize>,
}

impl Callback<Net> for Outage {
    fn on_train_epoch_start(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
        if cx.current_epoch == self.kill_at {
            self.server.lock().unwrap().kill();
        }
        if Some(cx.current_epoch) == self.restart_at {
            self.server.lock().unwrap().restart();
        }
    }
}

#[test]
fn values_logged_while_the_server_is_down_are_kept_and_sent_when_it_is_back() {
    let Some(python) = mlflow_python("values_logged_while_the_server_is_down_are_kept_and_sent_when_it_is_back") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Mutex::new(Server::start(&python, dir.path())));
    let uri = server.lock().unwrap().uri();
    let logger = MlflowLogger::new()
        .tracking_uri(&uri)
        .save_dir(dir.path().join("mlruns"));
    let delivery = logger.delivery();
    let (recording, calls) = Recording::new(dir.path());
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(4)
        .log_every_n_steps(1)
        .logger(logger)
        .logger(recording)
        .callback(Outage {
            server: server.clone(),
            kill_at: 1,
            restart_at: Some(3),
        })
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(trainer.current_epoch(), 4, "training went on while the server was down");
    let report = delivery.report();
    assert!(report.retries > 0, "{report:?}");
    assert_eq!((report.dropped, report.unsent), (0, 0), "{report:?}");
    let run_id = trainer
        .log_dir()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let read = server.lock().unwrap().read_run(&run_id);
    assert_eq!(read.status, "FINISHED");
    assert_same_histories(&recorded_histories(&calls.lock().unwrap()), &read.metrics);
}

#[test]
fn a_server_gone_for_good_drops_beyond_the_bound_and_the_run_ends_without_waiting() {
    let Some(python) = mlflow_python("a_server_gone_for_good_drops_beyond_the_bound_and_the_run_ends_without_waiting")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Mutex::new(Server::start(&python, dir.path())));
    let uri = server.lock().unwrap().uri();
    let logger = MlflowLogger::new()
        .tracking_uri(&uri)
        .save_dir(dir.path().join("mlruns"))
        .max_queued(10)
        .flush_timeout(Duration::from_secs(1));
    let delivery = logger.delivery();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(3)
        .log_every_n_steps(1)
        .logger(logger)
        .callback(Outage {
            server: server.clone(),
            kill_at: 1,
            restart_at: None,
        })
        .build()
        .unwrap();
    // The fit succeeds: the tracker's loss is reported, the training's result stands.
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(trainer.current_epoch(), 3);
    let report = delivery.report();
    // Epochs 1 and 2 logged 2 x (4 steps x 3 values + validation + epoch values): more than 10.
    assert_eq!(report.unsent, 10, "the queue kept up to its bound: {report:?}");
    assert!(report.dropped > 0, "{report:?}");
    assert!(
        report.last_error.as_deref().is_some_and(|e| e.contains("cannot reach")),
        "{report:?}"
    );
}

/// A TCP proxy to the server that holds every request while its gate is closed: a server that
/// does not answer.
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
    }
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }
}

fn gated_proxy(target: u16, gate: Arc<Gate>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut client_read, mut server_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while let Ok(n) = client_read.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    gate.wait();
                    if server_write.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                let _ = server_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut server_read, mut client_write) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_read, &mut client_write);
                let _ = client_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Opens the gate when training ends: until then no request gets an answer.
struct OpenAtTrainEnd(Arc<Gate>, Arc<Mutex<usize>>);

impl Callback<Net> for OpenAtTrainEnd {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        _batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        *self.1.lock().unwrap() += 1;
    }
    fn on_train_end(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.0.set(false);
    }
}

#[test]
fn a_server_that_does_not_answer_does_not_hold_the_training_loop() {
    let Some(python) = mlflow_python("a_server_that_does_not_answer_does_not_hold_the_training_loop") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&python, dir.path());
    let gate = Arc::new(Gate {
        closed: Mutex::new(false),
        opened: Condvar::new(),
    });
    let proxy = gated_proxy(server.port, gate.clone());
    let logger = MlflowLogger::new()
        .tracking_uri(format!("http://127.0.0.1:{proxy}"))
        .save_dir(dir.path().join("mlruns"));
    let delivery = logger.delivery();
    let (recording, calls) = Recording::new(dir.path());
    let batches = Arc::new(Mutex::new(0));
    // The run is created through the open gate; once training starts the server stops
    // answering until the loop has run every batch: a loop that waited for it would not end.
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(3)
        .log_every_n_steps(1)
        .logger(logger)
        .logger(recording)
        .callback(CloseAtTrainStart(gate.clone()))
        .callback(OpenAtTrainEnd(gate.clone(), batches.clone()))
        .build()
        .unwrap();
    trainer.fit(Net::new(), data()).unwrap();
    assert_eq!(
        *batches.lock().unwrap(),
        12,
        "every batch ran while the server did not answer"
    );
    let report = delivery.report();
    assert_eq!((report.dropped, report.unsent), (0, 0), "{report:?}");
    let run_id = trainer
        .log_dir()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let read = server.read_run(&run_id);
    assert_eq!(read.status, "FINISHED");
    assert_same_histories(&recorded_histories(&calls.lock().unwrap()), &read.metrics);
}

struct CloseAtTrainStart(Arc<Gate>);

impl Callback<Net> for CloseAtTrainStart {
    fn on_train_start(&mut self, _module: &mut Net, _cx: &mut EpochContext<'_>) {
        self.0.set(true);
    }
}
