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
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Logs `train_loss` every step, `edge` (NaN, +inf, -inf, then the batch index) on step only,
/// `val_loss` and `test_loss`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[hparam(default = 0.05)]
    lr: f64,
    #[hparam(default = 32)]
    width: usize,
}

impl Net {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            lr: 0.05,
            width: 32,
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = self.loss(batch);
        cx.log("train_loss", &loss);
        let edge = match batch_idx {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            i => i as f64,
        };
        cx.log("edge", edge);
        loss
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
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
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
        let output = Command::new(&self.python)
            .arg("-c")
            .arg(READ_RUN)
            .arg(self.uri())
            .arg(run_id)
            .arg(self.dir.join("downloads"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(output.status.success(), "reading the run back failed");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let strings = |v: &serde_json::Value| -> BTreeMap<String, String> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        };
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
            status: json["status"].as_str().unwrap().to_string(),
            experiment_id: json["experiment_id"].as_str().unwrap().to_string(),
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

/// Metric histories as `(step, repr(value))`, params, tags, status, and the artifacts (path,
/// size) downloaded with MLflow's client.
const READ_RUN: &str = r#"
import json, os, sys
from mlflow.tracking import MlflowClient
uri, run_id, downloads = sys.argv[1:4]
client = MlflowClient(uri)
run = client.get_run(run_id)
metrics = {}
for key in run.data.metrics:
    metrics[key] = [[m.step, repr(m.value)] for m in client.get_metric_history(run_id, key)]
os.makedirs(downloads, exist_ok=True)
local = client.download_artifacts(run_id, "", downloads)
artifacts = []
for root, _, files in os.walk(local):
    for name in files:
        path = os.path.join(root, name)
        artifacts.append([os.path.relpath(path, local), os.path.getsize(path)])
print(json.dumps({"status": run.info.status, "experiment_id": run.info.experiment_id,
    "params": run.data.params, "tags": run.data.tags, "metrics": metrics, "artifacts": sorted(artifacts)}))
"#;

struct RunRecord {
    status: String,
    experiment_id: String,
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
