//! The run directory (`<default_root_dir>/lightning_logs/version_N`) and durable file writes.
//!
//! A write goes to a temporary file beside its target, named `.<file name>.tmp-<random>` (so that
//! one a killed run leaves behind never ends in `.ckpt` and is never taken for a checkpoint),
//! is flushed to disk, renamed over the target, and then the directory itself is flushed, so that
//! the rename survives a power loss too. [`clean_stale_temp_files`] removes leftovers.

use crate::Error;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// What comes between a temporary file's target name and its random part.
const TEMP_MARKER: &str = ".tmp-";

/// Creates the next free `version_N` under `<root>/lightning_logs`, as Lightning's loggers do.
pub fn next_version_dir(root: &Path) -> Result<PathBuf, Error> {
    next_version_dir_in(&root.join("lightning_logs"))
}

/// Creates the next free `version_N` in `logs` (created if missing).
pub fn next_version_dir_in(logs: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(logs).map_err(|e| Error::io("create the log directory", logs, e))?;
    let entries = std::fs::read_dir(logs).map_err(|e| Error::io("read the log directory", logs, e))?;
    let next = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("version_")?.parse::<usize>().ok())
        .max()
        .map_or(0, |v| v + 1);
    // Another process may take the same number between the scan and here; `create_dir` fails
    // then, and we try the next one.
    for version in next.. {
        let dir = logs.join(format!("version_{version}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create the run directory", &dir, e)),
        }
    }
    unreachable!("version numbers are unbounded")
}

/// Writes `bytes` to `path` so that a crash or kill at any moment leaves either the previous
/// file or the new one: write a temporary file beside it, flush it to disk, rename it over, flush
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_parts(path, &[bytes])
}

/// [`write_atomic`] for a file made of several parts, written one after the other.
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<(), Error> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
    // Dropped on an error, the temporary file is removed.
    let (mut tmp, _in_progress) = tracked_temp_file_for(path)?;
    for part in parts {
        tmp.write_all(part).map_err(|e| Error::io("write", path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io("flush", path, e))?;
    tmp.persist(path).map_err(|e| Error::io("replace", path, e.error))?;
    sync_dir(dir)
}

/// The temporary files being written in this process: what a forced exit (a second Ctrl-C)
/// removes, so that it leaves none behind.
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary file's entry in [`IN_PROGRESS`], removed with it.
struct InProgress(PathBuf);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut registry = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = registry.iter().position(|p| *p == self.0) {
            registry.swap_remove(i);
        }
    }
}

/// [`temp_file_for`], listed in [`IN_PROGRESS`] while it lives. It is created under the list's
/// lock, so that none starts once [`abandon_writes_in_progress`] holds it.
fn tracked_temp_file_for(path: &Path) -> Result<(tempfile::NamedTempFile, InProgress), Error> {
    let mut registry = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
    let tmp = temp_file_for(path)?;
    registry.push(tmp.path().to_path_buf());
    let entry = InProgress(tmp.path().to_path_buf());
    drop(registry);
    Ok((tmp, entry))
}

/// Removes the temporary files of the writes in progress and keeps any other from starting (the
/// list stays locked): for a process about to exit without finishing them. Returns how many it
/// removed.
pub(crate) fn abandon_writes_in_progress() -> usize {
    let mut registry = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
    let removed = remove_listed(&mut registry);
    // Held until the process exits: a write that would start now waits for the exit instead.
    std::mem::forget(registry);
    removed
}

fn remove_listed(paths: &mut Vec<PathBuf>) -> usize {
    paths
        .drain(..)
        .filter(|path| std::fs::remove_file(path).is_ok())
        .count()
}

/// Removes the file at `path` and flushes its directory, so that the removal survives a crash.
/// A file that is already gone is not an error.
pub fn remove_durable(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(parent_dir(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Makes `link` a symbolic link to `target` atomically: the link is made under a temporary
/// name beside `link` and renamed over it, so `link` is always the old file or the new link.
/// A target in the same directory is linked by its file name (the directory can move). Where
/// links cannot be made (Windows without the privilege), `link` becomes a copy of `target`.
pub fn link_atomic(target: &Path, link: &Path) -> Result<(), Error> {
    let dir = parent_dir(link);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
    let relative = match (target.parent(), target.file_name()) {
        (Some(target_dir), Some(name)) if target_dir == link.parent().unwrap_or(Path::new("")) => Path::new(name),
        _ => target,
    };
    let name = link.file_name().unwrap_or(OsStr::new("file")).to_string_lossy();
    let prefix = format!(".{name}{TEMP_MARKER}");
    let made = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix("")
        .make_in(dir, |path| symlink(relative, path));
    match made {
        Ok(tmp) => tmp.persist(link).map_err(|e| Error::io("replace", link, e.error))?,
        Err(_) => {
            let bytes = std::fs::read(target).map_err(|e| Error::io("read", target, e))?;
            return write_atomic(link, &bytes);
        }
    }
    sync_dir(dir)
}

#[cfg(unix)]
fn symlink(target: &Path, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(windows)]
fn symlink(target: &Path, path: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, path)
}

#[cfg(not(any(unix, windows)))]
fn symlink(_target: &Path, _path: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Removes the temporary files an interrupted write left in `dir` (not in its subdirectories)
/// and returns how many. A missing `dir` has none.
pub fn clean_stale_temp_files(dir: &Path) -> Result<usize, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read the directory", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read the directory", dir, e))?;
        // Temporary links (`link_atomic`) too.
        let is_file = entry.file_type().is_ok_and(|t| t.is_file() || t.is_symlink());
        if !is_file || !is_temp_file_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            // Another process cleaned it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the stale temporary file", path, e)),
        }
    }
    Ok(removed)
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A new temporary file beside `path`, named `.<file name>.tmp-<random>`.
fn temp_file_for(path: &Path) -> Result<tempfile::NamedTempFile, Error> {
    let dir = parent_dir(path);
    let name = path.file_name().unwrap_or(OsStr::new("file")).to_string_lossy();
    let prefix = format!(".{name}{TEMP_MARKER}");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix("");
    // An ordinary file's permissions under the user's umask (rw-r--r-- with umask 022), not
    // the owner-only ones tempfile picks for secrets: checkpoints and logs are shared.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))
}

/// Whether `name` is one [`temp_file_for`] gives: `.`, a non-empty file name, `.tmp-`, then an
/// alphanumeric random part.
fn is_temp_file_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some((head, random)) = name.rsplit_once(TEMP_MARKER) else {
        return false;
    };
    head.len() > 1 && head.starts_with('.') && !random.is_empty() && random.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Flushes `dir`'s entries (a rename or removal in it) to disk. Where a directory cannot be
/// opened as a file (Windows), or the file system cannot flush one, there is nothing to do.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(test)]
    tests::record_sync(dir);
    let Ok(handle) = std::fs::File::open(dir) else {
        return Ok(());
    };
    match handle.sync_all() {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::io("flush the directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// What a second Ctrl-C removes: the temporary file of a write in progress, and no other file.
    #[test]
    fn abandoning_removes_the_temporary_files_of_writes_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, entry) = tracked_temp_file_for(&dir.path().join("on_exception.ckpt")).unwrap();
        std::fs::write(dir.path().join("done.ckpt"), b"kept").unwrap();
        let path = tmp.path().to_path_buf();
        assert!(path.exists());
        // The list as `abandon_writes_in_progress` sees it, without keeping it locked (other
        // tests write files).
        let mut listed: Vec<PathBuf> = IN_PROGRESS
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(dir.path()))
            .cloned()
            .collect();
        assert_eq!(listed, vec![path.clone()]);
        assert_eq!(remove_listed(&mut listed), 1);
        assert!(!path.exists());
        assert!(dir.path().join("done.ckpt").exists());
        drop(entry);
        assert!(
            !IN_PROGRESS.lock().unwrap().contains(&path),
            "a finished write leaves the list"
        );
    }

    thread_local! {
        /// The directories `sync_dir` flushed on this thread (each test runs on its own).
        static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record_sync(dir: &Path) {
        SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    }

    fn take_synced() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    #[test]
    fn written_files_get_ordinary_permissions_under_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ckpt");
        write_atomic(&path, b"weights").unwrap();
        // A probe created the ordinary way shows what the umask lets through.
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let expected = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected, "{mode:o} vs {expected:o}");
    }

    #[test]
    fn versions_count_up_from_existing_ones() {
        let root = tempfile::tempdir().unwrap();
        assert!(
            next_version_dir(root.path())
                .unwrap()
                .ends_with("lightning_logs/version_0")
        );
        std::fs::create_dir(root.path().join("lightning_logs/version_7")).unwrap();
        assert!(
            next_version_dir(root.path())
                .unwrap()
                .ends_with("lightning_logs/version_8")
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_flushes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        take_synced();
        write_atomic(&dir.path().join("a.ckpt"), b"one").unwrap();
        assert_eq!(take_synced(), vec![dir.path().to_path_buf()]);
    }

    #[test]
    fn durable_removal_removes_flushes_and_accepts_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ckpt");
        write_atomic(&path, b"one").unwrap();
        take_synced();
        remove_durable(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(take_synced(), vec![dir.path().to_path_buf()]);
        remove_durable(&path).unwrap();
    }

    #[test]
    fn durable_removal_names_the_path_it_cannot_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not_a_file.ckpt");
        std::fs::create_dir(&path).unwrap();
        let message = remove_durable(&path).unwrap_err().to_string();
        assert!(message.contains("not_a_file.ckpt"), "{message}");
    }

    #[test]
    fn temporary_files_are_hidden_and_never_end_in_the_target_extension() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = temp_file_for(&dir.path().join("epoch=1.ckpt")).unwrap();
        let name = tmp.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(".epoch=1.ckpt.tmp-"), "{name}");
        assert!(!name.ends_with(".ckpt"), "{name}");
        assert!(is_temp_file_name(OsStr::new(&name)), "{name}");
    }

    #[test]
    fn a_link_replaces_the_file_atomically_and_points_at_its_neighbour_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second, link) = (
            dir.path().join("a.ckpt"),
            dir.path().join("b.ckpt"),
            dir.path().join("last.ckpt"),
        );
        std::fs::write(&first, b"first").unwrap();
        std::fs::write(&second, b"second").unwrap();
        std::fs::write(&link, b"an old copy").unwrap();
        link_atomic(&first, &link).unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), b"first");
        link_atomic(&second, &link).unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), b"second");
        #[cfg(unix)]
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("b.ckpt"));
        assert_eq!(
            names(dir.path()),
            ["a.ckpt", "b.ckpt", "last.ckpt"],
            "no temporary left"
        );
        assert!(take_synced().contains(&dir.path().to_path_buf()));
    }

    #[test]
    fn stale_temporary_files_are_removed_and_real_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        // What a run killed mid-write leaves: a temporary file that was never renamed.
        let (_, left) = temp_file_for(&dir.path().join("last.ckpt")).unwrap().keep().unwrap();
        let (_, left_too) = temp_file_for(&dir.path().join("hparams.yaml")).unwrap().keep().unwrap();
        assert!(left.exists() && left_too.exists());
        for keep in [
            "last.ckpt",
            "epoch=0-step=10.ckpt",
            ".hidden",
            "notes.tmp-1",
            ".tmp-abc",
            "a.ckpt.tmp-x",
        ] {
            std::fs::write(dir.path().join(keep), b"keep").unwrap();
        }
        // Not a file, so not ours.
        std::fs::create_dir(dir.path().join(".sub.tmp-abc123")).unwrap();
        assert_eq!(clean_stale_temp_files(dir.path()).unwrap(), 2);
        assert_eq!(
            names(dir.path()),
            [
                ".hidden",
                ".sub.tmp-abc123",
                ".tmp-abc",
                "a.ckpt.tmp-x",
                "epoch=0-step=10.ckpt",
                "last.ckpt",
                "notes.tmp-1"
            ]
        );
        assert_eq!(clean_stale_temp_files(dir.path()).unwrap(), 0);
        assert_eq!(clean_stale_temp_files(&dir.path().join("missing")).unwrap(), 0);
    }
}
