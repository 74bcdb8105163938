//! [`MlflowLogger`]: metrics, hyperparameters, tags and checkpoints to an MLflow tracking server
//! through its REST API (Lightning's `MLFlowLogger`), behind the `mlflow` cargo feature.
//!
//! The experiment and the run are created (or found) the first time the logger is used, before
//! training: a server that cannot be reached then is the run's error. Hyperparameters go to the
//! server at once (a run continued with `run_id` cannot change them: the server's refusal is the
//! error). Metric values and checkpoint uploads go through a queue to a background thread, so that
//! no step waits for the network: `log_metrics` and `save` only enqueue. The thread sends what
//! is queued in `log-batch` calls of at most 1000 values; when the server cannot be reached it
//! keeps what it could not send (at most [`MlflowLogger::max_queued`] values, the newest values
//! are dropped beyond that and counted) and retries. At each training epoch's end the logger
//! waits up to [`MlflowLogger::epoch_flush_timeout`] for the queue to empty, at the end of the
//! run up to [`MlflowLogger::flush_timeout`]; then it sets the run's status, and reports what was
//! not delivered (a warning, and [`MlflowDelivery::report`]).

use super::Logger;
use crate::{Error, JsonValue};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// MLflow's limit of metric values in one `log-batch` call.
const MAX_METRICS_PER_BATCH: usize = 1000;
/// MLflow's limit of params in one `log-batch` call.
const MAX_PARAMS_PER_BATCH: usize = 100;
/// How long the sender waits for more values before a call that would not be full: one call
/// per half second at most while values keep coming.
const LINGER: Duration = Duration::from_millis(500);
/// The pause between retries when the server cannot be reached grows up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A request's time limit; a slow server makes the sender wait, never the training loop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where `log_model = "all"` holds checkpoints until they are uploaded, in the `log_dir`.
const STAGING_DIR: &str = ".mlflow-uploads";

/// Lightning's `log_model`: which checkpoints become artifacts of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogModel {
    /// None (`log_model=False`, the default).
    #[default]
    No,
    /// The checkpoints still on disk when the run ends (`log_model=True`).
    AtEnd,
    /// Every checkpoint as it is written (`log_model="all"`).
    All,
}

/// Logs to an MLflow tracking server (Lightning's `MLFlowLogger`).
///
/// ```no_run
/// # use burn_lightning_runtime::loggers::mlflow::{MlflowLogger, LogModel};
/// let logger = MlflowLogger::new()
///     .tracking_uri("http://127.0.0.1:5000")
///     .experiment_name("mnist")
///     .run_name("baseline")
///     .tag("team", "vision")
///     .log_model(LogModel::AtEnd);
/// ```
pub struct MlflowLogger {
    experiment_name: Option<String>,
    run_name: Option<String>,
    tracking_uri: Option<String>,
    tags: BTreeMap<String, String>,
    save_dir: PathBuf,
    prefix: String,
    run_id: Option<String>,
    log_model: LogModel,
    artifact_location: Option<String>,
    max_queued: usize,
    epoch_flush_timeout: Duration,
    flush_timeout: Duration,
    session: Option<Session>,
    shared: Arc<Shared>,
    /// Checkpoints the trainer asked for, not uploaded yet (`log_model = true`).
    checkpoints: BTreeSet<PathBuf>,
    /// Checkpoints held for upload so far (`log_model = "all"`), numbering their links.
    staged: usize,
    log_dir: Option<PathBuf>,
}

/// The experiment and run, once created, and the sender thread.
struct Session {
    client: Arc<Client>,
    experiment_id: String,
    run_id: String,
    /// Where the run's artifacts go through the server (`mlflow-artifacts:` URIs), as a URL;
    /// `None` when the run's artifacts live elsewhere (an `s3://` location, a path).
    artifacts_url: Option<String>,
    artifact_uri: String,
    sender: Option<std::thread::JoinHandle<()>>,
}

impl Default for MlflowLogger {
    fn default() -> Self {
        Self::new()
    }
}

impl MlflowLogger {
    /// A logger with Lightning's defaults: the server of `MLFLOW_TRACKING_URI`, the experiment
    /// of `MLFLOW_EXPERIMENT_NAME` else `lightning_logs`, `save_dir` `./mlruns`.
    pub fn new() -> Self {
        Self {
            experiment_name: None,
            run_name: None,
            tracking_uri: None,
            tags: BTreeMap::new(),
            save_dir: PathBuf::from("./mlruns"),
            prefix: String::new(),
            run_id: None,
            log_model: LogModel::No,
            artifact_location: None,
            max_queued: 100_000,
            epoch_flush_timeout: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(30),
            session: None,
            shared: Arc::new(Shared::default()),
            checkpoints: BTreeSet::new(),
            staged: 0,
            log_dir: None,
        }
    }

    /// The experiment the run belongs to, created when missing. Wins over
    /// `MLFLOW_EXPERIMENT_NAME`; `lightning_logs` when neither is given.
    #[must_use]
    pub fn experiment_name(mut self, name: impl Into<String>) -> Self {
        self.experiment_name = Some(name.into());
        self
    }

    /// The run's name in the UI (the `mlflow.runName` tag).
    #[must_use]
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// The server, `http://host:port` or `https://...` (default: `MLFLOW_TRACKING_URI`).
    #[must_use]
    pub fn tracking_uri(mut self, uri: impl Into<String>) -> Self {
        self.tracking_uri = Some(uri.into());
        self
    }

    /// A tag of the new run.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Where the run's local files go: its `log_dir` is `<save_dir>/<experiment id>/<run id>`
    /// (Lightning's layout), the trainer's run directory when this is the first logger.
    #[must_use]
    pub fn save_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.save_dir = dir.into();
        self
    }

    /// Put before every metric's name, joined with `-` (Lightning's `LOGGER_JOIN_CHAR`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Continues this run instead of creating one (its experiment is the run's; its params
    /// cannot change).
    #[must_use]
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Which checkpoints become artifacts of the run (under `<checkpoint's stem>/`).
    #[must_use]
    pub fn log_model(mut self, log_model: LogModel) -> Self {
        self.log_model = log_model;
        self
    }

    /// Where a new experiment keeps its artifacts (the server's default when not given).
    #[must_use]
    pub fn artifact_location(mut self, location: impl Into<String>) -> Self {
        self.artifact_location = Some(location.into());
        self
    }

    /// The most metric values the queue holds (default 100 000, about 10 MB): while the server
    /// cannot be reached, values beyond it are dropped, counted, and reported at the end.
    #[must_use]
    pub fn max_queued(mut self, values: usize) -> Self {
        self.max_queued = values.max(1);
        self
    }

    /// How long the end of a training epoch waits for the queue to empty (default 1 s; none
    /// while the server cannot be reached).
    #[must_use]
    pub fn epoch_flush_timeout(mut self, timeout: Duration) -> Self {
        self.epoch_flush_timeout = timeout;
        self
    }

    /// How long the end of the run waits for the queue to empty (default 30 s).
    #[must_use]
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// What the logger delivered, readable after the logger moved into a trainer.
    pub fn delivery(&self) -> MlflowDelivery {
        MlflowDelivery(self.shared.clone())
    }

    /// The run's id, once the logger was used (`None` before).
    pub fn current_run_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.run_id.as_str())
    }

    /// The experiment's id, once the logger was used.
    pub fn experiment_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.experiment_id.as_str())
    }

    /// The run's artifact URI, as the server gave it.
    pub fn artifact_uri(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.artifact_uri.as_str())
    }

    fn error(message: impl Into<String>) -> Error {
        Error::Logger {
            logger: "MLflow",
            message: message.into(),
        }
    }

    /// Creates (or finds) the experiment and the run, and starts the sender thread.
    /// The session, its sender running (again, after a `finalize`: a `test` after a `fit`
    /// logs to the same run, as Lightning's).
    fn session(&mut self) -> Result<&mut Session, Error> {
        if self.session.is_none() {
            let session = self.start()?;
            self.session = Some(session);
        }
        let session = self.session.as_mut().expect("started above");
        if session.sender.is_none() {
            self.shared.lock().closing = false;
            session.sender = Some(spawn_sender(
                &session.client,
                &self.shared,
                &session.run_id,
                &session.artifacts_url,
            )?);
        }
        Ok(session)
    }

    fn start(&mut self) -> Result<Session, Error> {
        let uri = match self.tracking_uri.clone() {
            Some(uri) => uri,
            None => std::env::var("MLFLOW_TRACKING_URI").map_err(|_| {
                Self::error(
                    "no tracking server: give `tracking_uri` (`http://host:port`) or set MLFLOW_TRACKING_URI \
                     (a local server: `mlflow server --port 5000`)",
                )
            })?,
        };
        let client = Arc::new(Client::new(&uri)?);
        let (experiment_id, run_id, artifact_uri) = match &self.run_id {
            Some(run_id) => {
                let run = client.call_get("runs/get", &[("run_id", run_id)])?;
                let info = &run["run"]["info"];
                let experiment_id = json_str(info, "experiment_id")?;
                // A continued run is running again (as MLflow's `start_run(run_id=...)`).
                client.call_post(
                    "runs/update",
                    &serde_json::json!({"run_id": run_id, "status": "RUNNING"}),
                )?;
                (experiment_id, run_id.clone(), json_str(info, "artifact_uri")?)
            }
            None => {
                let name = self
                    .experiment_name
                    .clone()
                    .or_else(|| std::env::var("MLFLOW_EXPERIMENT_NAME").ok().filter(|n| !n.is_empty()))
                    .unwrap_or_else(|| "lightning_logs".into());
                let experiment_id = client.experiment_id(&name, self.artifact_location.as_deref())?;
                let mut tags = default_tags();
                tags.extend(self.tags.clone());
                if let Some(run_name) = &self.run_name {
                    tags.insert("mlflow.runName".into(), run_name.clone());
                }
                let tags: Vec<JsonValue> = tags
                    .iter()
                    .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
                    .collect();
                let mut request = serde_json::json!({
                    "experiment_id": experiment_id,
                    "start_time": now_ms(),
                    "tags": tags,
                });
                if let Some(run_name) = &self.run_name {
                    request["run_name"] = run_name.clone().into();
                }
                let run = client.call_post("runs/create", &request)?;
                let info = &run["run"]["info"];
                (
                    experiment_id,
                    json_str(info, "run_id")?,
                    json_str(info, "artifact_uri")?,
                )
            }
        };
        let artifacts_url = client.artifacts_url(&artifact_uri);
        Ok(Session {
            client,
            experiment_id,
            run_id,
            artifacts_url,
            artifact_uri,
            sender: None,
        })
    }

    /// Queues the checkpoints on disk not uploaded yet (all of them at the end).
    fn queue_checkpoints(&mut self, at_end: bool) -> Result<(), Error> {
        if self.log_model == LogModel::No || self.checkpoints.is_empty() {
            return Ok(());
        }
        let Some(session) = &self.session else { return Ok(()) };
        Self::artifacts_served(session)?;
        let ready: Vec<PathBuf> = self.checkpoints.iter().filter(|path| path.is_file()).cloned().collect();
        let mut queue = self.shared.lock();
        for path in ready {
            self.checkpoints.remove(&path);
            let stem = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            queue.uploads.push_back(Upload {
                path,
                name,
                artifact_dir: stem,
                staged: false,
            });
        }
        if at_end {
            // Files asked for but gone (a top-k checkpoint replaced before it was uploaded).
            self.checkpoints.clear();
        }
        // The sender lingers on a timer once it has work: it needs waking only from an empty
        // queue, or for a full batch.
        let wake = queue.sender_waits_for_work || queue.metrics.len() >= MAX_METRICS_PER_BATCH;
        drop(queue);
        if wake {
            self.shared.wake.notify_all();
        }
        Ok(())
    }

    fn artifacts_served(session: &Session) -> Result<(), Error> {
        match session.artifacts_url {
            Some(_) => Ok(()),
            None => Err(Self::error(format!(
                "`log_model` uploads checkpoints through the server, but the run's artifacts are at `{}`: \
                 start the server with `--serve-artifacts` (MLflow's default) and an experiment whose artifact \
                 location is `mlflow-artifacts:`",
                session.artifact_uri
            ))),
        }
    }

    /// `log_model = "all"`: queues the checkpoint at `path` now. The trainer writes checkpoints
    /// in the background and a later one may remove this one (top-k) before the sender reads
    /// it, so this waits until it is written (Lightning's save is synchronous), then holds it
    /// with a hard link (a copy on another file system) in `<log_dir>/.mlflow-uploads` until it
    /// is sent.
    fn stage_checkpoint(&mut self, path: &Path) -> Result<(), Error> {
        crate::checkpoint::writer::wait_for_queued_writes(Duration::from_secs(600));
        if !path.is_file() {
            // Its write failed: the trainer reports that.
            return Ok(());
        }
        let dir = self.log_dir()?.join(STAGING_DIR);
        let session = self.session()?;
        Self::artifacts_served(session)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create the directory", &dir, e))?;
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        self.staged += 1;
        let staged = dir.join(format!("{}-{name}", self.staged));
        std::fs::hard_link(path, &staged)
            .or_else(|_| std::fs::copy(path, &staged).map(|_| ()))
            .map_err(|e| Error::io("hold the checkpoint until it is uploaded", &staged, e))?;
        let mut queue = self.shared.lock();
        queue.uploads.push_back(Upload {
            path: staged,
            name,
            artifact_dir: stem,
            staged: true,
        });
        let wake = queue.sender_waits_for_work;
        drop(queue);
        if wake {
            self.shared.wake.notify_all();
        }
        Ok(())
    }

    fn close(&mut self, status: &str) -> Result<(), Error> {
        if self.session.as_ref().is_none_or(|s| s.sender.is_none()) {
            return Ok(());
        }
        let upload_result = self.queue_checkpoints(true);
        let drained = self.shared.flush(self.flush_timeout, false);
        {
            let mut queue = self.shared.lock();
            queue.closing = true;
        }
        self.shared.wake.notify_all();
        let session = self.session.as_mut().expect("checked above");
        if let Some(sender) = session.sender.take() {
            // It stops once it sees `closing`; one stuck in a request to a server that does not
            // answer is left to finish on its own (the request's time limit), not waited for.
            if !self.shared.lock().in_flight {
                let _ = sender.join();
            }
        }
        if let Some(dir) = &self.log_dir {
            // Empty once every held checkpoint was sent (what was not stays, with its name).
            let _ = std::fs::remove_dir(dir.join(STAGING_DIR));
        }
        let status = match status {
            "success" | "finished" => "FINISHED",
            "interrupted" => "KILLED",
            _ => "FAILED",
        };
        let update = session.client.call_post(
            "runs/update",
            &serde_json::json!({"run_id": session.run_id, "status": status, "end_time": now_ms()}),
        );
        let report = self.shared.report();
        if !drained || report.dropped > 0 || report.unsent > 0 || report.uploads_failed > 0 {
            let message = format!(
                "MLflow run {}: {} metric values sent, {} not sent before the {:?} deadline, {} dropped (queue \
                 full at {} values), {} checkpoint uploads failed{}",
                session.run_id,
                report.sent,
                report.unsent,
                self.flush_timeout,
                report.dropped,
                self.max_queued,
                report.uploads_failed,
                report
                    .last_error
                    .as_deref()
                    .map_or_else(String::new, |e| format!("; last error: {e}")),
            );
            tracing::warn!(target: "burn_lightning", "{message}");
            eprintln!("warning: {message}");
        }
        if let Err(e) = update {
            // The training's result stands; the tracker's record of it is what is missing.
            let message = format!(
                "MLflow run {}: could not set its status to {status}: {e}",
                session.run_id
            );
            tracing::warn!(target: "burn_lightning", "{message}");
            eprintln!("warning: {message}");
        }
        upload_result
    }
}

impl Logger for MlflowLogger {
    fn name(&self) -> &str {
        // Lightning's `name` is the experiment id; before the run exists, the experiment's name.
        match &self.session {
            Some(session) => &session.experiment_id,
            None => self.experiment_name.as_deref().unwrap_or("lightning_logs"),
        }
    }

    fn log_dir(&mut self) -> Result<PathBuf, Error> {
        if let Some(dir) = &self.log_dir {
            return Ok(dir.clone());
        }
        let save_dir = self.save_dir.clone();
        let session = self.session()?;
        let dir = save_dir.join(&session.experiment_id).join(&session.run_id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create the log directory", &dir, e))?;
        self.log_dir = Some(dir.clone());
        Ok(dir)
    }

    fn log_hyperparams(&mut self, hparams: &JsonValue) -> Result<(), Error> {
        let mut params = Vec::new();
        flatten_params(String::new(), hparams, &mut params);
        let session = self.session()?;
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            let params: Vec<JsonValue> = chunk
                .iter()
                .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
                .collect();
            session
                .client
                .call_post(
                    "runs/log-batch",
                    &serde_json::json!({"run_id": session.run_id, "params": params}),
                )
                .map_err(|e| {
                    Self::error(format!(
                        "could not log the hyperparameters to run {} ({e}); a run continued with `run_id` cannot \
                         change them",
                        session.run_id
                    ))
                })?;
        }
        Ok(())
    }

    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        if metrics.is_empty() {
            return Ok(());
        }
        self.session()?;
        let timestamp = now_ms();
        let mut queue = self.shared.lock();
        for (name, &value) in metrics {
            if queue.metrics.len() >= self.max_queued {
                queue.report.dropped += 1;
                continue;
            }
            let key = match self.prefix.is_empty() {
                true => metric_key(name),
                false => metric_key(&format!("{}-{name}", self.prefix)),
            };
            queue.metrics.push_back(Metric {
                key,
                value,
                timestamp,
                step,
            });
        }
        // Waking the sender at every step would cost two context switches a step: it sleeps
        // until woken only on an empty queue, and otherwise sends when its linger ends or a
        // batch is full.
        let wake = queue.sender_waits_for_work || queue.metrics.len() >= MAX_METRICS_PER_BATCH;
        drop(queue);
        if wake {
            self.shared.wake.notify_all();
        }
        Ok(())
    }

    fn epoch_end(&mut self) -> Result<(), Error> {
        if self.session.is_some() {
            self.shared.flush(self.epoch_flush_timeout, true);
        }
        Ok(())
    }

    fn after_save_checkpoint(&mut self, path: &Path) -> Result<(), Error> {
        match self.log_model {
            LogModel::No => Ok(()),
            LogModel::AtEnd => {
                self.checkpoints.insert(path.to_path_buf());
                Ok(())
            }
            LogModel::All => self.stage_checkpoint(path),
        }
    }

    fn finalize(&mut self, status: &str) -> Result<(), Error> {
        self.close(status)
    }
}

impl Drop for MlflowLogger {
    fn drop(&mut self) {
        // A logger dropped without `finalize` (no run used it to the end) still stops its thread.
        if let Some(session) = &mut self.session
            && let Some(sender) = session.sender.take()
        {
            self.shared.lock().closing = true;
            self.shared.wake.notify_all();
            let _ = sender.join();
        }
    }
}

/// What an [`MlflowLogger`] delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Metric values the server accepted.
    pub sent: usize,
    /// Metric values still queued (not sent when the run ended).
    pub unsent: usize,
    /// Metric values dropped: the queue was full, or the server refused them.
    pub dropped: usize,
    /// Checkpoints uploaded.
    pub uploads: usize,
    /// Checkpoint uploads that failed.
    pub uploads_failed: usize,
    /// Requests that failed and were retried.
    pub retries: usize,
    /// The last error met.
    pub last_error: Option<String>,
}

/// A handle on what an [`MlflowLogger`] delivered (see [`MlflowLogger::delivery`]).
#[derive(Clone)]
pub struct MlflowDelivery(Arc<Shared>);

impl MlflowDelivery {
    pub fn report(&self) -> DeliveryReport {
        self.0.report()
    }
}

struct Metric {
    key: String,
    value: f64,
    timestamp: u64,
    step: usize,
}

struct Upload {
    /// What is read: the checkpoint, or our link to it (`staged`, removed once sent).
    path: PathBuf,
    /// The artifact's file name (the checkpoint's).
    name: String,
    artifact_dir: String,
    staged: bool,
}

impl Upload {
    /// Done with it: our link goes.
    fn unstage(&self) {
        if self.staged {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[derive(Default)]
struct Queue {
    metrics: VecDeque<Metric>,
    uploads: VecDeque<Upload>,
    /// A request is out: its values are not in `metrics`.
    in_flight: bool,
    /// Requests failed in a row (the server cannot be reached).
    failing: usize,
    /// Someone waits for the queue to empty: send without lingering.
    flushing: usize,
    closing: bool,
    /// The sender sleeps until woken (nothing queued).
    sender_waits_for_work: bool,
    report: DeliveryReport,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The sender waits on it for work.
    wake: Condvar,
    /// Flushes wait on it for the queue to empty.
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self) -> DeliveryReport {
        let queue = self.lock();
        let mut report = queue.report.clone();
        report.unsent = queue.metrics.len();
        report
    }

    /// Waits until the queue is empty, at most `timeout`; with `skip_when_failing`, not at all
    /// while the server cannot be reached. Whether it emptied.
    fn flush(&self, timeout: Duration, skip_when_failing: bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.lock();
        queue.flushing += 1;
        self.wake.notify_all();
        let drained = loop {
            let empty = queue.metrics.is_empty() && queue.uploads.is_empty() && !queue.in_flight;
            if empty {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || (skip_when_failing && queue.failing > 0) {
                break false;
            }
            queue = self
                .idle
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        queue.flushing -= 1;
        drained
    }
}

fn spawn_sender(
    client: &Arc<Client>,
    shared: &Arc<Shared>,
    run_id: &str,
    artifacts_url: &Option<String>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    let (client, shared, run_id, artifacts_url) = (
        client.clone(),
        shared.clone(),
        run_id.to_string(),
        artifacts_url.clone(),
    );
    std::thread::Builder::new()
        .name("mlflow-logger".into())
        .spawn(move || send_loop(&client, &shared, &run_id, artifacts_url.as_deref()))
        .map_err(|e| MlflowLogger::error(format!("cannot start the sender thread: {e}")))
}

/// The sender thread: sends what is queued until the logger closes.
fn send_loop(client: &Client, shared: &Shared, run_id: &str, artifacts_url: Option<&str>) {
    let mut queue = shared.lock();
    loop {
        // Wait for work, lingering for more values unless someone waits or a batch is full.
        let mut linger_until: Option<Instant> = None;
        loop {
            if queue.closing && (queue.flushing == 0 || queue.failing > 0) {
                return;
            }
            let has_work = !queue.metrics.is_empty() || !queue.uploads.is_empty();
            if has_work
                && (queue.flushing > 0
                    || queue.closing
                    || queue.metrics.len() >= MAX_METRICS_PER_BATCH
                    || !queue.uploads.is_empty())
            {
                break;
            }
            let now = Instant::now();
            if has_work {
                let until = *linger_until.get_or_insert(now + LINGER);
                if now >= until {
                    break;
                }
                queue = shared
                    .wake
                    .wait_timeout(queue, until - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            } else {
                queue.sender_waits_for_work = true;
                queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
                queue.sender_waits_for_work = false;
            }
        }
        let batch: Vec<Metric> = {
            let n = queue.metrics.len().min(MAX_METRICS_PER_BATCH);
            queue.metrics.drain(..n).collect()
        };
        let upload = if batch.is_empty() {
            queue.uploads.pop_front()
        } else {
            None
        };
        queue.in_flight = true;
        drop(queue);

        let outcome = match (&upload, artifacts_url) {
            (Some(upload), Some(url)) => client.upload(url, &upload.artifact_dir, &upload.name, &upload.path),
            (Some(_), None) => Err(CallError::Rejected(
                "the run's artifacts are not served by the server".into(),
            )),
            (None, _) => client
                .call_post_text("runs/log-batch", log_batch(run_id, &batch))
                .map(|_| ()),
        };

        queue = shared.lock();
        queue.in_flight = false;
        match outcome {
            Ok(()) => {
                queue.failing = 0;
                match upload {
                    Some(upload) => {
                        queue.report.uploads += 1;
                        upload.unstage();
                    }
                    None => queue.report.sent += batch.len(),
                }
            }
            Err(CallError::Unreachable(message)) => {
                // Kept (in front, in order) and retried after a pause.
                queue.failing += 1;
                queue.report.retries += 1;
                queue.report.last_error = Some(message);
                match upload {
                    Some(upload) => queue.uploads.push_front(upload),
                    None => {
                        for metric in batch.into_iter().rev() {
                            queue.metrics.push_front(metric);
                        }
                    }
                }
                shared.idle.notify_all();
                let backoff = Duration::from_millis(250u64 << queue.failing.min(5)).min(MAX_BACKOFF);
                let until = Instant::now() + backoff;
                while !queue.closing && Instant::now() < until {
                    let left = until - Instant::now();
                    queue = shared
                        .wake
                        .wait_timeout(queue, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                continue;
            }
            Err(CallError::Rejected(message)) => {
                // The server refused them: sending again would not help.
                queue.failing = 0;
                queue.report.last_error = Some(message);
                match upload {
                    Some(upload) => {
                        queue.report.uploads_failed += 1;
                        upload.unstage();
                    }
                    None => queue.report.dropped += batch.len(),
                }
            }
        }
        shared.idle.notify_all();
    }
}

/// The `log-batch` request of `batch`, written directly (it is most of the sender's work).
fn log_batch(run_id: &str, batch: &[Metric]) -> String {
    use std::fmt::Write;
    let mut body = String::with_capacity(64 + batch.len() * 96);
    let _ = write!(body, "{{\"run_id\":{},\"metrics\":[", JsonValue::from(run_id));
    for (i, m) in batch.iter().enumerate() {
        let separator = if i == 0 { "" } else { "," };
        let key = serde_json::to_string(&m.key).unwrap_or_default();
        let _ = write!(
            body,
            "{separator}{{\"key\":{key},\"value\":{},\"timestamp\":{},\"step\":{}}}",
            metric_value(m.value),
            m.timestamp,
            m.step
        );
    }
    body.push_str("]}");
    body
}

/// JSON has no NaN or infinities: MLflow's server reads protobuf's JSON, whose strings for them
/// are `"NaN"`, `"Infinity"` and `"-Infinity"` (its SQL store keeps NaN, and infinities as the
/// largest finite doubles).
fn metric_value(value: f64) -> String {
    if value.is_nan() {
        "\"NaN\"".into()
    } else if value == f64::INFINITY {
        "\"Infinity\"".into()
    } else if value == f64::NEG_INFINITY {
        "\"-Infinity\"".into()
    } else {
        // The shortest text that reads back as the same double (`1e-7`, `0.25`, `3.0`): JSON.
        format!("{value:?}")
    }
}

/// Lightning's metric-name cleaning: MLflow takes letters, digits and `_ / . -` and spaces.
fn metric_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | ' ' | '-'))
        .collect()
}

/// Lightning's `_flatten_dict` (nested keys joined with `/`) and `str(value)` truncated to 250
/// characters; scalars read as Python prints them (`True`, `None`), lists as JSON.
fn flatten_params(prefix: String, value: &JsonValue, params: &mut Vec<(String, String)>) {
    match value {
        JsonValue::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}/{key}")
                };
                flatten_params(key, value, params);
            }
        }
        other => {
            let text = match other {
                JsonValue::Bool(true) => "True".to_string(),
                JsonValue::Bool(false) => "False".to_string(),
                JsonValue::Null => "None".to_string(),
                JsonValue::String(s) => s.clone(),
                other => other.to_string(),
            };
            params.push((prefix, text.chars().take(250).collect()));
        }
    }
}

/// The tags MLflow's own client adds to a run (`resolve_tags`): who ran what.
fn default_tags() -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert("mlflow.source.type".into(), "LOCAL".into());
    if let Some(program) = std::env::args().next() {
        tags.insert("mlflow.source.name".into(), program);
    }
    if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        tags.insert("mlflow.user".into(), user);
    }
    tags
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn json_str(value: &JsonValue, key: &str) -> Result<String, Error> {
    value[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| MlflowLogger::error(format!("the server's answer has no `{key}`: {value}")))
}

enum CallError {
    /// The server could not be reached or failed (connection refused, time out, 5xx, 429): worth
    /// retrying.
    Unreachable(String),
    /// The server refused the request (4xx).
    Rejected(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) | CallError::Rejected(m) => f.write_str(m),
        }
    }
}

impl From<CallError> for Error {
    fn from(error: CallError) -> Self {
        MlflowLogger::error(error.to_string())
    }
}

/// MLflow's REST API at one server, with the credentials MLflow's client reads from the
/// environment.
struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Client {
    fn new(uri: &str) -> Result<Self, Error> {
        Self::with_env(uri, |name| std::env::var(name).ok())
    }

    /// The client of `uri`, with the credentials and TLS settings `env` gives (the process's
    /// environment, or a test's).
    fn with_env(uri: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(MlflowLogger::error(format!(
                "tracking URI `{uri}`: give a server, `http://host:port` or `https://...` (MLflow's file store is \
                 legacy; a local server: `mlflow server --port 5000`)"
            )));
        }
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        // As MLflow's client (`rest_utils.http_request`): basic when both the user and the
        // password are set, else the token.
        let authorization = match (
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
            env("MLFLOW_TRACKING_TOKEN"),
        ) {
            (Some(user), Some(password), _) => {
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ))
            }
            (_, _, Some(token)) => Some(format!("Bearer {token}")),
            _ => None,
        };
        let insecure = env("MLFLOW_TRACKING_INSECURE_TLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(insecure);
        if let Some(path) = env("MLFLOW_TRACKING_SERVER_CERT_PATH") {
            let pem = std::fs::read(&path).map_err(|e| Error::io("read MLFLOW_TRACKING_SERVER_CERT_PATH", &path, e))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect::<Vec<_>>();
            if certs.is_empty() {
                return Err(MlflowLogger::error(format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH `{path}` holds no PEM certificate"
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(Duration::from_secs(5)))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self {
            agent,
            base,
            authorization,
        })
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    fn call_get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<JsonValue, CallError> {
        let mut request = self.agent.get(self.url(endpoint));
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        self.answer(endpoint, request.call())
    }

    fn call_post(&self, endpoint: &str, body: &JsonValue) -> Result<JsonValue, CallError> {
        self.call_post_text(endpoint, body.to_string())
    }

    fn call_post_text(&self, endpoint: &str, body: String) -> Result<JsonValue, CallError> {
        let mut request = self.agent.post(self.url(endpoint)).content_type("application/json");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        self.answer(endpoint, request.send(body))
    }

    fn answer(
        &self,
        endpoint: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<JsonValue, CallError> {
        let mut response = response.map_err(|e| {
            CallError::Unreachable(format!("`{endpoint}`: cannot reach the server at {}: {e}", self.base))
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        match status {
            200..=299 => Ok(serde_json::from_str(&text).unwrap_or(JsonValue::Null)),
            401 | 403 => Err(CallError::Rejected(format!(
                "`{endpoint}`: the server refused the credentials (HTTP {status}): set MLFLOW_TRACKING_TOKEN, or \
                 MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            ))),
            408 | 429 | 500..=599 => Err(CallError::Unreachable(format!("`{endpoint}`: HTTP {status}: {text}"))),
            _ => Err(CallError::Rejected(format!("`{endpoint}`: HTTP {status}: {text}"))),
        }
    }

    /// The experiment named `name`, created when missing or deleted (as Lightning does).
    fn experiment_id(&self, name: &str, artifact_location: Option<&str>) -> Result<String, Error> {
        match self.call_get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(found) if found["experiment"]["lifecycle_stage"] != "deleted" => {
                return json_str(&found["experiment"], "experiment_id");
            }
            Ok(_) => {}
            Err(CallError::Rejected(message)) if message.contains("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e.into()),
        }
        let mut request = serde_json::json!({"name": name});
        if let Some(location) = artifact_location {
            request["artifact_location"] = location.into();
        }
        let created = self.call_post("experiments/create", &request)?;
        json_str(&created, "experiment_id")
    }

    /// The URL the server takes the run's artifacts at, for an `mlflow-artifacts:` artifact URI
    /// (`mlflow-artifacts:/path` on this server, `mlflow-artifacts://host:port/path` on another).
    fn artifacts_url(&self, artifact_uri: &str) -> Option<String> {
        let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
        let endpoint = "api/2.0/mlflow-artifacts/artifacts";
        match rest.strip_prefix("//") {
            Some(host_and_path) => {
                let (host, path) = host_and_path.split_once('/').unwrap_or((host_and_path, ""));
                let scheme = self.base.split("://").next().unwrap_or("http");
                Some(format!("{scheme}://{host}/{endpoint}/{path}"))
            }
            None => Some(format!("{}/{endpoint}/{}", self.base, rest.trim_start_matches('/'))),
        }
    }

    /// Uploads `path` as `<artifact_dir>/<name>` (MLflow's `log_artifact`).
    fn upload(&self, artifacts_url: &str, artifact_dir: &str, name: &str, path: &Path) -> Result<(), CallError> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) => return Err(CallError::Rejected(format!("cannot read `{}`: {e}", path.display()))),
        };
        let url = format!("{}/{artifact_dir}/{name}", artifacts_url.trim_end_matches('/'));
        let mut request = self.agent.put(&url);
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        self.answer("mlflow-artifacts", request.send(file)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_flattened_as_lightning_does() {
        let mut params = Vec::new();
        let hparams = serde_json::json!({"lr": 0.5, "net": {"width": 32, "act": "relu"}, "bias": true, "x": null,
            "long": "a".repeat(300)});
        flatten_params(String::new(), &hparams, &mut params);
        let params: BTreeMap<_, _> = params.into_iter().collect();
        assert_eq!(params["lr"], "0.5");
        assert_eq!(params["net/width"], "32");
        assert_eq!(params["net/act"], "relu");
        assert_eq!(params["bias"], "True");
        assert_eq!(params["x"], "None");
        assert_eq!(params["long"].len(), 250);
    }

    #[test]
    fn values_json_cannot_hold_are_sent_as_protobuf_spells_them() {
        let batch = [0.25, 1e-7, 3.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(|value| Metric {
            key: "a\"b".into(),
            value,
            timestamp: 7,
            step: 2,
        });
        let body: JsonValue = serde_json::from_str(&log_batch("r", &batch)).unwrap();
        let values: Vec<JsonValue> = body["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].clone())
            .collect();
        assert_eq!(
            JsonValue::Array(values),
            serde_json::json!([0.25, 1e-7, 3.0, "NaN", "Infinity", "-Infinity"])
        );
        assert_eq!(body["run_id"], "r");
        assert_eq!(body["metrics"][0]["key"], "a\"b");
        assert_eq!(body["metrics"][0]["step"], 2);
        assert_eq!(metric_key("val/loss(ema)@1"), "val/lossema1");
    }

    #[test]
    fn artifact_uris_of_the_server_become_its_urls() {
        let client = Client::new("http://127.0.0.1:5000/").unwrap();
        assert_eq!(
            client.artifacts_url("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts")
        );
        assert_eq!(
            client
                .artifacts_url("mlflow-artifacts://other:80/1/abc/artifacts")
                .as_deref(),
            Some("http://other:80/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts")
        );
        assert_eq!(client.artifacts_url("s3://bucket/1"), None);
        assert!(Client::new("file:./mlruns").is_err());
    }

    /// The `Authorization` header a request of `client` carries, read by a one-request server
    /// that answers `{}`.
    fn authorization_sent(env: &[(&str, &str)]) -> Option<String> {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut header = None;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    header = Some(value.trim().to_string());
                }
            }
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                .unwrap();
            header
        });
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let client = Client::with_env(&format!("http://127.0.0.1:{port}"), |name| env.get(name).cloned()).unwrap();
        assert!(client.call_get("experiments/search", &[]).is_ok());
        server.join().unwrap()
    }

    #[test]
    fn credentials_from_the_environment_become_the_authorization_header() {
        assert_eq!(authorization_sent(&[]), None);
        assert_eq!(
            authorization_sent(&[("MLFLOW_TRACKING_TOKEN", "s3cret")]).as_deref(),
            Some("Bearer s3cret")
        );
        // MLflow's client: basic authentication, `user:password` in base64.
        assert_eq!(
            authorization_sent(&[("MLFLOW_TRACKING_USERNAME", "ann"), ("MLFLOW_TRACKING_PASSWORD", "pw")]).as_deref(),
            Some("Basic YW5uOnB3")
        );
        // As MLflow's client: basic wins over the token, and needs both the user and the
        // password; an empty variable is unset.
        let both = [
            ("MLFLOW_TRACKING_TOKEN", "s3cret"),
            ("MLFLOW_TRACKING_USERNAME", "ann"),
            ("MLFLOW_TRACKING_PASSWORD", "pw"),
        ];
        assert_eq!(authorization_sent(&both).as_deref(), Some("Basic YW5uOnB3"));
        let no_password = [
            ("MLFLOW_TRACKING_TOKEN", "s3cret"),
            ("MLFLOW_TRACKING_USERNAME", "ann"),
            ("MLFLOW_TRACKING_PASSWORD", ""),
        ];
        assert_eq!(authorization_sent(&no_password).as_deref(), Some("Bearer s3cret"));
        assert_eq!(authorization_sent(&[("MLFLOW_TRACKING_USERNAME", "ann")]), None);
    }
}
