//! Errors the trainer returns. Each message says what to change.

use std::path::PathBuf;

/// Everything a run can fail with. Bad configuration and bad input are errors, never panics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trainer flag has a value it cannot run with.
    #[error("invalid `{flag}`: {message}")]
    Config { flag: &'static str, message: String },

    /// The stage needs a dataloader nobody provides.
    #[error(
        "no `{hook}` for `{stage}`: return one from your DataModule's `{hook}`, implement the `{hook}` hook on the module, or pass it with `Loaders`"
    )]
    MissingDataloader { stage: crate::Stage, hook: &'static str },

    /// A dataloader yields nothing.
    #[error(
        "the `{loader}` dataloader is empty: its dataset has no items; check the data path and any split or filter"
    )]
    EmptyDataloader { loader: &'static str },

    /// SIGINT, SIGTERM or SIGHUP stopped the run at a batch boundary, after `on_exception` and the
    /// pending checkpoints.
    #[error(
        "interrupted by {signal_name}: the run stopped at a batch boundary after `on_exception`, its checkpoints and loggers"
    )]
    Interrupted { signal: i32, signal_name: String },

    /// A dataloader failed to produce a batch.
    #[error("the `{loader}` dataloader failed: {message}")]
    Dataloader { loader: &'static str, message: String },

    /// A hook used the trainer wrongly (for example a bad `log` call).
    #[error("in `{hook}`: {message}")]
    Hook { hook: &'static str, message: String },

    /// Reading or writing a file failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A checkpoint or hyperparameter file could not be written or read.
    #[error("{0}")]
    Checkpoint(String),

    /// Data that could not be read (for example a malformed file).
    #[error("{0}")]
    Data(String),

    /// An error from user code (a DataModule, a callback, a hook returning `Err`).
    #[error(transparent)]
    User(Box<dyn std::error::Error + Send + Sync + 'static>),

    /// Something panicked during the run (what `on_exception` receives before the panic goes on).
    #[error("the run panicked: {message}")]
    Panic { message: String },

    /// A metric object (`crate::metrics`) was given input it cannot take, or its state could not
    /// be merged, read or restored.
    #[error("{metric}: {message}")]
    Metric { metric: String, message: String },

    /// A logger could not reach where it logs to (an experiment tracker's server), or the
    /// server refused what it was sent.
    #[error("the {logger} logger: {message}")]
    Logger { logger: &'static str, message: String },
}

impl Error {
    /// Wraps any error from user code.
    pub fn user(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Error::User(error.into())
    }

    /// The error `on_exception` receives for a panic with this payload.
    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Error::Panic { message }
    }

    pub(crate) fn config(flag: &'static str, message: impl Into<String>) -> Self {
        Error::Config {
            flag,
            message: message.into(),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// A `fit` that failed, with the module as it was when it failed: a typo found at epoch 50 does
/// not throw away 50 epochs of training. `?` turns it into its [`Error`].
pub struct FitError<M> {
    /// The module, with the weights of the last optimizer step.
    pub model: M,
    pub error: Error,
}

impl<M> FitError<M> {
    /// The error, without the module.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<M> std::fmt::Debug for FitError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<M> std::fmt::Display for FitError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<M> std::error::Error for FitError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<M> From<FitError<M>> for Error {
    fn from(e: FitError<M>) -> Self {
        e.error
    }
}
