//! Resuming a fit from a checkpoint (Lightning's `trainer.fit(model, ckpt_path=...)`): where the
//! loops were when a checkpoint was saved, and which checkpoint `"last"`/`"best"` name.
//!
//! What a resume restores: the weights (with their parameter ids, so that the optimizer's
//! state, keyed by them, applies), the optimizer's and the scheduler's state, `current_epoch`,
//! `global_step`, the logging step (`batches_that_stepped`), the batch position inside the
//! epoch, every callback's state (by state key), the datamodule's state. What it cannot
//! restore: the device's random generator (burn cannot read it back), so dropout masks after a
//! resume differ from an uninterrupted run's; the trainer's `seed` is applied again instead.

use crate::Error;
use crate::callbacks::ModelCheckpoint;
use std::path::{Path, PathBuf};

/// Which checkpoint to resume from or evaluate (Lightning's `ckpt_path`): a file,
/// [`Last`](Self::Last) (`"last"`) or [`Best`](Self::Best) (`"best"`).
///
/// `"last"` and `"best"` given as strings mean these, as in Lightning; any other string is a
/// path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CkptPath {
    /// A checkpoint file.
    Path(PathBuf),
    /// The newest checkpoint: the trainer's `ModelCheckpoint`'s `last_model_path`, else the
    /// newest `*.ckpt` in the run's `checkpoints` directory (for a trainer that has not run yet:
    /// the newest `<default_root_dir>/lightning_logs/version_N`'s, as after a crash).
    Last,
    /// The trainer's monitored `ModelCheckpoint`'s `best_model_path`.
    Best,
}

impl From<&str> for CkptPath {
    fn from(path: &str) -> Self {
        match path {
            "last" => CkptPath::Last,
            "best" => CkptPath::Best,
            other => CkptPath::Path(PathBuf::from(other)),
        }
    }
}

impl From<PathBuf> for CkptPath {
    fn from(path: PathBuf) -> Self {
        CkptPath::Path(path)
    }
}

impl From<&Path> for CkptPath {
    fn from(path: &Path) -> Self {
        CkptPath::Path(path.to_path_buf())
    }
}

impl From<&PathBuf> for CkptPath {
    fn from(path: &PathBuf) -> Self {
        CkptPath::Path(path.clone())
    }
}

impl CkptPath {
    /// The file this names, from the trainer's checkpoint callbacks and run directory; an error
    /// naming what is missing otherwise.
    pub(crate) fn resolve(
        &self,
        checkpoints: &[&ModelCheckpoint],
        log_dir: Option<&Path>,
        default_root_dir: &Path,
    ) -> Result<PathBuf, Error> {
        let path = match self {
            CkptPath::Path(path) => path.clone(),
            CkptPath::Best => {
                let monitored: Vec<_> = checkpoints.iter().filter(|c| c.monitor_name().is_some()).collect();
                if monitored.is_empty() {
                    return Err(Error::config(
                        "ckpt_path",
                        "`Best` needs a `ModelCheckpoint` with a `monitor` among the trainer's callbacks; add one, or give a path",
                    ));
                }
                monitored
                    .iter()
                    .find_map(|c| c.best_model_path())
                    .map(Path::to_path_buf)
                    .ok_or_else(|| {
                        Error::config(
                            "ckpt_path",
                            "`Best`: the monitored `ModelCheckpoint` has saved no checkpoint yet (it learns its best \
                             one during `fit`); give a path",
                        )
                    })?
            }
            CkptPath::Last => match checkpoints.iter().find_map(|c| c.last_model_path()) {
                Some(path) => path.to_path_buf(),
                None => {
                    let newest_run = log_dir
                        .is_none()
                        .then(|| newest_version_dir(default_root_dir))
                        .flatten();
                    newest_checkpoint(log_dir.or(newest_run.as_deref()))?
                }
            },
        };
        if !path.is_file() {
            return Err(Error::config(
                "ckpt_path",
                format!("`{}` does not exist or is not a file", path.display()),
            ));
        }
        Ok(path)
    }
}

/// The `version_N` with the highest `N` under `<root>/lightning_logs`.
fn newest_version_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root.join("lightning_logs"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let number: usize = name.to_str()?.strip_prefix("version_")?.parse().ok()?;
            Some((number, entry.path()))
        })
        .max_by_key(|(number, _)| *number)
        .map(|(_, path)| path)
}

/// The newest `*.ckpt` (by modification time, `last.ckpt` winning ties) in `<log_dir>/checkpoints`.
fn newest_checkpoint(log_dir: Option<&Path>) -> Result<PathBuf, Error> {
    let missing = |why: String| Error::config("ckpt_path", format!("`Last`: {why}; give a path"));
    let dir = log_dir.map(|dir| dir.join("checkpoints")).ok_or_else(|| {
        missing("the trainer has no run directory and no `ModelCheckpoint` saved a checkpoint".into())
    })?;
    let entries = std::fs::read_dir(&dir).map_err(|e| missing(format!("cannot read `{}`: {e}", dir.display())))?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ckpt"))
        .filter_map(|path| {
            let modified = path.metadata().and_then(|m| m.modified()).ok()?;
            let is_last = path
                .file_stem()
                .is_some_and(|stem| stem.to_string_lossy().starts_with("last"));
            Some(((modified, is_last), path))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, path)| path)
        .ok_or_else(|| missing(format!("`{}` holds no checkpoint", dir.display())))
}
