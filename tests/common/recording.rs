//! A logger that records every call it receives, for tests of what loggers are sent.

use burn_lightning::prelude::*;
use burn_lightning::{JsonValue, Logger, LoggerDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a logger was told, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Hparams(JsonValue),
    Metrics(usize, BTreeMap<String, f64>),
    Save,
    Finalize(String),
}

/// A logger that records every call, writing into its own `LoggerDir`.
pub struct Recording {
    dir: LoggerDir,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recording {
    pub fn new(save_dir: &Path) -> (Self, Arc<Mutex<Vec<Call>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let logger = Self {
            dir: LoggerDir::new(save_dir).name("recorded"),
            calls: calls.clone(),
        };
        (logger, calls)
    }
}

impl Logger for Recording {
    fn name(&self) -> &str {
        "recorded"
    }
    fn log_dir(&mut self) -> Result<PathBuf, Error> {
        self.dir.resolve()
    }
    fn log_hyperparams(&mut self, hparams: &JsonValue) -> Result<(), Error> {
        self.calls.lock().unwrap().push(Call::Hparams(hparams.clone()));
        Ok(())
    }
    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        self.calls.lock().unwrap().push(Call::Metrics(step, metrics.clone()));
        Ok(())
    }
    fn save(&mut self) -> Result<(), Error> {
        self.calls.lock().unwrap().push(Call::Save);
        Ok(())
    }
    fn finalize(&mut self, status: &str) -> Result<(), Error> {
        self.calls.lock().unwrap().push(Call::Finalize(status.to_string()));
        Ok(())
    }
}

/// The metrics calls among `calls`: step and values.
pub fn metric_calls(calls: &[Call]) -> Vec<(usize, BTreeMap<String, f64>)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Metrics(step, m) => Some((*step, m.clone())),
            _ => None,
        })
        .collect()
}
