//! Checkpoints on disk: the file format and loading ([`format`](mod@format)), the background writer, restoring
//! a fit from a checkpoint, PyTorch Lightning's `.ckpt` files, checkpoint file names, and the run
//! directories with their atomic, durable writes.
//!
//! Uses `core`, `optim` and `hooks` (restoring runs the `on_load_checkpoint` hooks); the loops,
//! callbacks and loggers use it. Which file `ckpt_path = "last"` or `"best"` names is the
//! trainer's business (`trainer::ckpt_path`), not this folder's.

pub mod filename;
pub mod format;
pub mod lightning;
pub(crate) mod restore;
pub mod run_dir;
pub(crate) mod writer;

pub use crate::core::checkpoint_data::Checkpoint;
pub use format::{KeyReport, LoadFromCheckpoint, LoadOptions, Loaded};
pub use lightning::LightningCheckpoint;
