//! Loggers: where logged values go besides `callback_metrics` (Lightning's `Logger`). The
//! trainer sends each logger the hyperparameters once per run, step values every
//! `log_every_n_steps` optimizer steps, epoch values when a loop's epoch ends, and flushes and
//! closes them when the run ends, also on error and panic. [`report`] writes `report.html`, the
//! run's charts, from what the loggers received. A configuration's `logger:` builds loggers from
//! the [`registry`], which new logger kinds register into.
//!
//! Uses `core`, `checkpoint` (atomic writes and run directories) and the model summary of
//! `callbacks`; the loops use it.

use crate::{Error, JsonValue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod csv;
#[cfg(feature = "mlflow")]
pub mod mlflow;
pub mod registry;
pub mod report;
pub mod tensorboard;
pub use csv::CsvLogger;
#[cfg(feature = "mlflow")]
pub use mlflow::MlflowLogger;
pub use tensorboard::TensorBoardLogger;

/// The logger a trainer writes with when none is given: TensorBoard, in the run directory (as
/// Lightning's default `TensorBoardLogger` when `tensorboard` is installed).
pub(crate) fn default_logger(run_dir: &Path) -> TensorBoardLogger {
    TensorBoardLogger::in_dir(LoggerDir::existing(run_dir))
}

/// What every logger does (Lightning's `lightning.pytorch.loggers.Logger`).
///
/// Values arrive as numbers: the trainer reads the tensors behind them once per logging step,
/// and only on steps where something is written.
pub trait Logger: Send {
    /// The logger's name: its folder under the save directory (`lightning_logs` by default).
    fn name(&self) -> &str;

    /// The run's directory (`<save_dir>/<name>/version_N`), created the first time it is asked
    /// for. The first logger's is the run directory (`trainer.log_dir()`, checkpoints).
    fn log_dir(&mut self) -> Result<PathBuf, Error>;

    /// Where this logger's run directories live (`<save_dir>/<name>`, holding `version_N`),
    /// without creating anything: where `ckpt_path = "last"` looks for the checkpoints of
    /// earlier runs. `None` (the default) for a logger without that layout.
    fn root_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Records the module's hyperparameters (what `#[hparam]` fields hold).
    fn log_hyperparams(&mut self, hparams: &JsonValue) -> Result<(), Error>;

    /// Records `metrics` at `step` (Lightning's `log_metrics(metrics, step)`).
    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), Error>;

    /// Writes what is buffered to disk. Called after every `log_metrics`: a logger that sends
    /// over the network only queues here.
    fn save(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// A training epoch ended (after its values were logged): a logger that sends in the
    /// background gives it a chance to catch up, within a bounded wait.
    fn epoch_end(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// A checkpoint was asked for at `path` (Lightning's `after_save_checkpoint`). It is written
    /// in the background: the file may not exist yet (it appears whole, by an atomic rename).
    fn after_save_checkpoint(&mut self, path: &Path) -> Result<(), Error> {
        let _ = path;
        Ok(())
    }

    /// The run ended (`status`: `"success"`, `"failed"` (an error or a panic) or `"interrupted"`
    /// (a signal)): flushes and closes.
    fn finalize(&mut self, status: &str) -> Result<(), Error> {
        let _ = status;
        self.save()
    }
}

/// Which version directory a logger writes to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Version {
    /// The next free `version_N` (created atomically: two runs starting at once get two).
    #[default]
    Next,
    /// `version_N`.
    Number(usize),
    /// A directory named as given.
    Named(String),
}

/// `<save_dir>/<name>/<version>`, resolved once: Lightning's logger layout, shared by the
/// built-in loggers.
#[derive(Clone, Debug)]
pub struct LoggerDir {
    save_dir: PathBuf,
    name: String,
    version: Version,
    resolved: Option<PathBuf>,
}

impl LoggerDir {
    /// `<save_dir>/lightning_logs/version_N`, the next free N.
    pub fn new(save_dir: impl Into<PathBuf>) -> Self {
        Self {
            save_dir: save_dir.into(),
            name: "lightning_logs".into(),
            version: Version::Next,
            resolved: None,
        }
    }

    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// A directory that already exists (the trainer's run directory), used as it is; the
    /// logger's name is its parent's (`lightning_logs`).
    pub fn existing(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let name = dir
            .parent()
            .and_then(Path::file_name)
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        Self {
            save_dir: dir.clone(),
            name,
            version: Version::Next,
            resolved: Some(dir),
        }
    }

    /// `<save_dir>/<name>`: where the versions live (for an [`existing`](Self::existing)
    /// directory, its parent).
    pub fn root(&self) -> PathBuf {
        match (&self.resolved, &self.version) {
            (Some(dir), _) if *dir == self.save_dir => dir.parent().map_or_else(|| dir.clone(), Path::to_path_buf),
            _ => self.save_dir.join(&self.name),
        }
    }

    pub fn save_dir(&self) -> &Path {
        &self.save_dir
    }

    pub fn logger_name(&self) -> &str {
        &self.name
    }

    /// The directory, created on the first call.
    pub fn resolve(&mut self) -> Result<PathBuf, Error> {
        if let Some(dir) = &self.resolved {
            return Ok(dir.clone());
        }
        let root = self.save_dir.join(&self.name);
        let dir = match &self.version {
            Version::Next => crate::checkpoint::run_dir::next_version_dir_in(&root)?,
            Version::Number(n) => root.join(format!("version_{n}")),
            Version::Named(name) => root.join(name),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create the log directory", &dir, e))?;
        self.resolved = Some(dir.clone());
        Ok(dir)
    }
}
