//! [`OnExceptionCheckpoint`]: a checkpoint when a run fails or is interrupted.

use crate::hooks::{Callback, CallbackRole, LightningModule};
use crate::{Error, HookContext};
use std::path::{Path, PathBuf};

/// Saves a checkpoint when a run fails or is interrupted (Lightning's `OnExceptionCheckpoint`):
/// in `on_exception`, to `<dirpath>/<filename>.ckpt` (default `on_exception.ckpt`), with the
/// weights and optimizer state of that moment. With SIGINT or SIGTERM the run stops at a batch
/// boundary first, so the checkpoint holds a consistent state.
///
/// It is a checkpointing callback, as in Lightning: with it, the trainer adds no default
/// [`ModelCheckpoint`](crate::ModelCheckpoint); add one too to also checkpoint during training.
#[derive(Clone, Debug)]
pub struct OnExceptionCheckpoint {
    dirpath: PathBuf,
    filename: String,
}

impl OnExceptionCheckpoint {
    /// Saves `<dirpath>/on_exception.ckpt`.
    pub fn new(dirpath: impl Into<PathBuf>) -> Self {
        Self {
            dirpath: dirpath.into(),
            filename: "on_exception".to_string(),
        }
    }

    /// The file name, without `.ckpt`.
    pub fn filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = filename.into();
        self
    }

    /// Where the checkpoint goes.
    pub fn path(&self) -> PathBuf {
        self.dirpath.join(format!("{}.ckpt", self.filename))
    }

    /// The directory it saves into.
    pub fn dir(&self) -> &Path {
        &self.dirpath
    }
}

impl<M: LightningModule> Callback<M> for OnExceptionCheckpoint {
    fn role(&self) -> CallbackRole {
        CallbackRole::Checkpoint
    }

    fn on_exception(&mut self, _module: &mut M, _error: &Error, cx: &mut HookContext<'_>) {
        cx.save_checkpoint(self.path());
    }
}
