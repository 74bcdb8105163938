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
use crate::callbacks::{ModelCheckpoint, OnExceptionCheckpoint};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Which checkpoint to resume from or evaluate (Lightning's `ckpt_path`): a file,
/// [`Last`](Self::Last) (`"last"`) or [`Best`](Self::Best) (`"best"`).
///
/// `"last"` and `"best"` given as strings mean these, as in Lightning; any other string is a
/// path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CkptPath {
    /// A checkpoint file.
    Path(PathBuf),
    /// The newest checkpoint of the run, found as a preemptible job needs it: the newest
    /// `last*.ckpt` in each `ModelCheckpoint`'s and `OnExceptionCheckpoint`'s `dirpath` (and
    /// the latter's own file); for a `ModelCheckpoint` without a `dirpath`, in the run
    /// directories under the logger's root (`version_N/checkpoints`, newest `N` first, skipping
    /// those that hold no checkpoint, as a run killed before its first save leaves), or
    /// `<default_root_dir>/checkpoints` without a logger. Where there is no `last*.ckpt`, the
    /// newest checkpoint there. SLURM's newest `<default_root_dir>/hpc_ckpt_<N>.ckpt` is a
    /// candidate too (Lightning's `"last"` ignores it). With none at all, `fit` warns and trains from scratch (the same
    /// command can be run again and again); `validate`, `test` and `predict` fail.
    Last,
    /// The first `ModelCheckpoint`'s `best_model_path`: the best by its monitored metric, or,
    /// without a monitor, the newest it saved (as Lightning).
    Best,
    /// The newest SLURM auto-requeue checkpoint, `<default_root_dir>/hpc_ckpt_<N>.ckpt` with the
    /// highest `N` (Lightning's `"hpc"`; see [`crate::strategies::slurm`]); an error when there
    /// is none. `"last"` considers it too, and a fit without `ckpt_path` in a SLURM job resumes
    /// from it, as in Lightning.
    Hpc,
}

impl From<&str> for CkptPath {
    fn from(path: &str) -> Self {
        match path {
            "last" => CkptPath::Last,
            "best" => CkptPath::Best,
            "hpc" => CkptPath::Hpc,
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

/// Where a trainer's checkpoints can be: what `"last"` and `"best"` are resolved against.
pub(crate) struct Places<'a> {
    pub model_checkpoints: Vec<&'a ModelCheckpoint>,
    pub on_exception: Vec<&'a OnExceptionCheckpoint>,
    /// The run directory of this trainer's earlier fits, if any.
    pub log_dir: Option<&'a Path>,
    /// Where the run directories `version_N` live (`<save_dir>/<name>` of the first logger);
    /// `None` without a logger.
    pub versions_root: Option<PathBuf>,
    pub default_root_dir: &'a Path,
}

impl CkptPath {
    /// The file this names, or `None` for [`Last`](Self::Last) when there is no checkpoint
    /// anywhere it looks; an error naming what is missing otherwise.
    pub(crate) fn resolve(&self, places: &Places<'_>) -> Result<Option<PathBuf>, Error> {
        let path = match self {
            CkptPath::Path(path) => path.clone(),
            CkptPath::Best => {
                let Some(first) = places.model_checkpoints.first() else {
                    return Err(Error::config(
                        "ckpt_path",
                        "`best` needs a `ModelCheckpoint` among the trainer's callbacks; add one, or give a path",
                    ));
                };
                if places.model_checkpoints.len() > 1 {
                    tracing::warn!(target: "burn_lightning",
                        "`ckpt_path=\"best\"` with several `ModelCheckpoint`s: the best of the first one is used");
                }
                first.best_model_path().map(Path::to_path_buf).ok_or_else(|| {
                    Error::config(
                        "ckpt_path",
                        "`best`: the `ModelCheckpoint` has saved no checkpoint yet (it learns its best one during \
                         `fit`); give a path",
                    )
                })?
            }
            CkptPath::Hpc => crate::strategies::slurm::hpc_resume_path(places.default_root_dir).ok_or_else(|| {
                Error::config(
                    "ckpt_path",
                    format!(
                        "`hpc`: no HPC checkpoint (`hpc_ckpt_<N>.ckpt`, saved on SLURM's SIGUSR1) in `{}`; give a path",
                        places.default_root_dir.display()
                    ),
                )
            })?,
            CkptPath::Last => match newest_last(places) {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        if !path.is_file() {
            return Err(Error::config(
                "ckpt_path",
                format!("`{}` does not exist or is not a file", path.display()),
            ));
        }
        Ok(Some(path))
    }
}

/// The rule of [`CkptPath::Last`]: the newest of the candidates, by modification time.
fn newest_last(places: &Places<'_>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    // What this trainer saved in this process.
    candidates.extend(
        places
            .model_checkpoints
            .iter()
            .filter_map(|c| c.last_model_path().map(Path::to_path_buf)),
    );
    let mut explicit_dirs: Vec<PathBuf> = places
        .model_checkpoints
        .iter()
        .filter_map(|c| c.explicit_dirpath().map(Path::to_path_buf))
        .collect();
    for callback in &places.on_exception {
        candidates.push(callback.path());
        explicit_dirs.push(callback.dir().to_path_buf());
    }
    for dir in &explicit_dirs {
        candidates.extend(checkpoints_in(dir).into_iter().filter(|path| is_last(path)));
    }
    let implicit = places.model_checkpoints.iter().any(|c| c.explicit_dirpath().is_none())
        || (places.model_checkpoints.is_empty() && places.on_exception.is_empty());
    if implicit {
        // The newest run directory that holds a checkpoint: a run killed before its first save
        // leaves an empty one, which must not hide the runs before it.
        let found = run_checkpoint_dirs(places).into_iter().find_map(|dir| {
            let files = checkpoints_in(&dir);
            let lasts: Vec<PathBuf> = files.iter().filter(|path| is_last(path)).cloned().collect();
            match (lasts.is_empty(), newest(files)) {
                (_, None) => None,
                (false, _) => Some(lasts),
                (true, Some(newest)) => Some(vec![newest]),
            }
        });
        candidates.extend(found.into_iter().flatten());
    }
    if candidates.iter().all(|path| !path.is_file()) {
        // No `last*.ckpt` in the explicit directories: their newest checkpoint.
        candidates.extend(explicit_dirs.iter().flat_map(|dir| checkpoints_in(dir)));
    }
    // SLURM's auto-requeue checkpoint (Lightning's `"last"` does not look at it; a requeued
    // job that runs the same `"last"` command resumes from it when it is the newest).
    candidates.extend(crate::strategies::slurm::hpc_resume_path(places.default_root_dir));
    newest(candidates)
}

/// The `checkpoints` directories of the run directories, newest first: this trainer's own run
/// directory, then every `version_N` under the logger's root by decreasing `N`; without a
/// logger, `<default_root_dir>/checkpoints`.
fn run_checkpoint_dirs(places: &Places<'_>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = places.log_dir.map(|dir| dir.join("checkpoints")).into_iter().collect();
    match &places.versions_root {
        Some(root) => {
            let mut versions: Vec<(usize, PathBuf)> = std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let number = entry.file_name().to_str()?.strip_prefix("version_")?.parse().ok()?;
                    Some((number, entry.path().join("checkpoints")))
                })
                .collect();
            versions.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
            dirs.extend(versions.into_iter().map(|(_, dir)| dir));
        }
        None => dirs.push(places.default_root_dir.join("checkpoints")),
    }
    dirs
}

/// The checkpoint files in `dir` (`*.ckpt`; temporary files of unfinished writes are not).
fn checkpoints_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ckpt") && path.is_file())
        .collect()
}

/// Lightning's `last*.ckpt` (`last.ckpt`, `last-v1.ckpt`, a `last` named by `CHECKPOINT_NAME_LAST`).
fn is_last(path: &Path) -> bool {
    path.file_stem()
        .is_some_and(|stem| stem.to_string_lossy().starts_with("last"))
}

/// The most recently modified of `paths` that exist (`last*` winning ties).
fn newest(paths: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    paths
        .into_iter()
        .filter_map(|path| {
            let modified = path.metadata().and_then(|m| m.modified()).ok()?;
            Some(((modified, is_last(&path)), path))
        })
        .max_by(|a: &((SystemTime, bool), PathBuf), b| a.0.cmp(&b.0))
        .map(|(_, path)| path)
}
