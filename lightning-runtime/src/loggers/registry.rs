//! The loggers a configuration can name: the trainer's `logger` flag (`--trainer.logger csv`,
//! `logger: [tensorboard, {class_path: CSVLogger, init_args: {name: exp}}]` in YAML) builds them
//! from here.
//!
//! # Registering a logger kind
//!
//! Write a [`LoggerKind`] for it (its names, its options, and a function that builds it from
//! its options and the trainer's `default_root_dir`), and add it to [`LOGGER_KINDS`], under its
//! cargo feature when it has one:
//!
//! ```ignore
//! #[cfg(feature = "mlflow")]
//! const MLFLOW: LoggerKind = LoggerKind {
//!     names: &["MLFlowLogger", "mlflow"],
//!     options: &["experiment_name", "run_name", "tracking_uri", "save_dir"],
//!     build: |spec, root| {
//!         let options: MlflowOptions = read_options(spec)?;
//!         Ok(Box::new(MlflowLogger::new(options.tracking_uri.unwrap_or(..))...))
//!     },
//! };
//!
//! pub const LOGGER_KINDS: &[LoggerKind] = &[
//!     TENSORBOARD,
//!     CSV,
//!     #[cfg(feature = "mlflow")]
//!     MLFLOW,
//! ];
//! ```
//!
//! Its options are read with serde from `init_args` (a struct with `#[serde(deny_unknown_fields)]`
//! makes a misspelt option an error naming it); `save_dir` defaults to `default_root_dir`.

use super::{CsvLogger, Logger, TensorBoardLogger, Version};
use crate::Error;
use crate::core::component::{ComponentSpec, read_options};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A kind of logger a configuration can name.
#[derive(Clone, Copy)]
pub struct LoggerKind {
    /// The names it is chosen by: Lightning's class name first (`CSVLogger`), then aliases
    /// (`csv`). Compared ignoring case, `_`, `-` and a module path.
    pub names: &'static [&'static str],
    /// Its options (`init_args`), for messages.
    pub options: &'static [&'static str],
    /// Builds it from its spec's options and the trainer's `default_root_dir`; an error is a
    /// message that names the option at fault.
    pub build: BuildLogger,
}

/// How a [`LoggerKind`] builds its logger from a spec and the trainer's `default_root_dir`.
pub type BuildLogger = fn(&ComponentSpec, &Path) -> Result<Box<dyn Logger>, String>;

/// Every logger kind a configuration can name.
pub const LOGGER_KINDS: &[LoggerKind] = &[
    TENSORBOARD,
    CSV,
    #[cfg(feature = "mlflow")]
    MLFLOW,
];

const TENSORBOARD: LoggerKind = LoggerKind {
    names: &["TensorBoardLogger", "tensorboard", "tb"],
    options: &["save_dir", "name", "version", "default_hp_metric"],
    build: |spec, root| {
        let options: TensorBoardOptions = read_options(spec)?;
        let logger = TensorBoardLogger::new(options.save_dir.unwrap_or_else(|| root.to_path_buf()))
            .name(options.name)
            .version(version(options.version)?)
            .default_hp_metric(options.default_hp_metric);
        Ok(Box::new(logger))
    },
};

const CSV: LoggerKind = LoggerKind {
    names: &["CSVLogger", "csv"],
    options: &["save_dir", "name", "version", "flush_logs_every_n_steps"],
    build: |spec, root| {
        let options: CsvOptions = read_options(spec)?;
        let logger = CsvLogger::new(options.save_dir.unwrap_or_else(|| root.to_path_buf()))
            .name(options.name)
            .version(version(options.version)?)
            .flush_logs_every_n_steps(options.flush_logs_every_n_steps);
        Ok(Box::new(logger))
    },
};

/// Lightning's `MLFlowLogger` options (`synchronous` aside: sending is always in the
/// background), and the queue's bound and deadlines.
#[cfg(feature = "mlflow")]
const MLFLOW: LoggerKind = LoggerKind {
    names: &["MLFlowLogger", "mlflow"],
    options: &[
        "experiment_name",
        "run_name",
        "tracking_uri",
        "tags",
        "save_dir",
        "log_model",
        "prefix",
        "artifact_location",
        "run_id",
        "max_queued",
        "flush_timeout",
    ],
    build: |spec, root| {
        use super::mlflow::{LogModel, MlflowLogger};
        let options: MlflowOptions = read_options(spec)?;
        let mut logger = MlflowLogger::new().save_dir(options.save_dir.unwrap_or_else(|| root.join("mlruns")));
        if let Some(name) = options.experiment_name {
            logger = logger.experiment_name(name);
        }
        if let Some(name) = options.run_name {
            logger = logger.run_name(name);
        }
        if let Some(uri) = options.tracking_uri {
            logger = logger.tracking_uri(uri);
        }
        for (key, value) in options.tags.unwrap_or_default() {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            logger = logger.tag(key, value);
        }
        if let Some(run_id) = options.run_id {
            logger = logger.run_id(run_id);
        }
        if let Some(location) = options.artifact_location {
            logger = logger.artifact_location(location);
        }
        let log_model = match options.log_model {
            serde_json::Value::Bool(false) | serde_json::Value::Null => LogModel::No,
            serde_json::Value::Bool(true) => LogModel::AtEnd,
            serde_json::Value::String(s) if s == "all" => LogModel::All,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => LogModel::AtEnd,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => LogModel::No,
            other => return Err(format!("`log_model` must be true, false or \"all\", found {other}")),
        };
        logger = logger.log_model(log_model).prefix(options.prefix);
        if let Some(n) = options.max_queued {
            logger = logger.max_queued(n);
        }
        if let Some(seconds) = options.flush_timeout {
            if !(seconds.is_finite() && seconds >= 0.0) {
                return Err(format!("`flush_timeout` must be seconds, at least 0, found {seconds}"));
            }
            logger = logger.flush_timeout(std::time::Duration::from_secs_f64(seconds));
        }
        Ok(Box::new(logger))
    },
};

#[cfg(feature = "mlflow")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlflowOptions {
    experiment_name: Option<String>,
    run_name: Option<String>,
    tracking_uri: Option<String>,
    tags: Option<serde_json::Map<String, serde_json::Value>>,
    save_dir: Option<PathBuf>,
    #[serde(default)]
    log_model: serde_json::Value,
    #[serde(default)]
    prefix: String,
    artifact_location: Option<String>,
    run_id: Option<String>,
    max_queued: Option<usize>,
    flush_timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorBoardOptions {
    save_dir: Option<PathBuf>,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default = "yes")]
    default_hp_metric: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvOptions {
    save_dir: Option<PathBuf>,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default = "hundred")]
    flush_logs_every_n_steps: usize,
}

fn default_name() -> String {
    "lightning_logs".into()
}

fn yes() -> bool {
    true
}

fn hundred() -> usize {
    100
}

/// Lightning's `version`: null (the next free `version_N`), a number (`version_3`) or a name.
fn version(value: Option<serde_json::Value>) -> Result<Version, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(Version::Next),
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => {
            Ok(Version::Number(n.as_u64().unwrap_or(0) as usize))
        }
        Some(serde_json::Value::String(name)) => Ok(Version::Named(name)),
        Some(other) => Err(format!("`version` must be a number, a name or null, found {other}")),
    }
}

/// The kind `spec` names.
pub fn kind_of(spec: &ComponentSpec) -> Option<&'static LoggerKind> {
    LOGGER_KINDS.iter().find(|kind| spec.is_one_of(kind.names))
}

/// Builds the logger `spec` names, its `save_dir` defaulting to `default_root_dir`. An unknown
/// name is an error listing the kinds there are.
pub fn build(spec: &ComponentSpec, default_root_dir: &Path) -> Result<Box<dyn Logger>, Error> {
    let Some(kind) = kind_of(spec) else {
        let known: Vec<String> = LOGGER_KINDS
            .iter()
            .map(|kind| format!("`{}` ({})", kind.names[0], kind.names[1..].join(", ")))
            .collect();
        return Err(Error::config(
            "logger",
            format!(
                "unknown logger `{}`; the loggers are {}, or `true` / `false`",
                spec.class_path,
                known.join(", ")
            ),
        ));
    };
    (kind.build)(spec, default_root_dir).map_err(|message| {
        Error::config(
            "logger",
            format!(
                "{message} (the options of `{}` are {})",
                kind.names[0],
                kind.options.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggers_are_built_by_name_with_their_options() {
        let root = tempfile::tempdir().unwrap();
        let mut csv = build(&ComponentSpec::new("CSVLogger").arg("name", "exp"), root.path()).unwrap();
        assert_eq!(csv.name(), "exp");
        assert!(csv.log_dir().unwrap().starts_with(root.path().join("exp")));
        let tb = build(&ComponentSpec::new("tensorboard"), root.path()).unwrap();
        assert_eq!(tb.name(), "lightning_logs");
        let unknown = build(&ComponentSpec::new("wandb"), root.path())
            .err()
            .unwrap()
            .to_string();
        assert!(unknown.contains("`CSVLogger` (csv)"), "{unknown}");
        let typo = build(&ComponentSpec::new("csv").arg("nmae", "x"), root.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            typo.contains("nmae") && typo.contains("flush_logs_every_n_steps"),
            "{typo}"
        );
    }
}
