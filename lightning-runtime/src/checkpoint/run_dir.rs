//! The run directory (`<default_root_dir>/lightning_logs/version_N`) and durable file writes.
//!
//! A write goes to a temporary file beside its target, named
//! `.<file name>.tmp-<random>-<pid>-<host>` (so that one a killed run leaves behind never ends in
//! `.ckpt` and is never taken for a checkpoint, and says which process wrote it), is flushed to
//! disk, renamed over the target, and then the directory itself is flushed, so that the rename
//! survives a power loss too. [`clean_stale_temp_files`] removes leftovers whose writer is gone.

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
    let (prefix, suffix) = temp_name_parts(link);
    let made = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(&suffix)
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

/// How long a temporary file whose writer cannot be asked (another host's, or one named before
/// writers were named) must have gone unmodified before it is taken for an orphan: a write in
/// progress modifies its file all along.
pub const UNKNOWN_WRITER_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Who wrote a temporary file, from its name.
#[derive(Debug, PartialEq, Eq)]
enum Writer {
    /// A process of this host: asked whether it still runs.
    ThisHost(u32),
    /// Another host's, or a name without a writer.
    Unknown,
}

/// Why a temporary file is an orphan, or `None` while its writer may still be writing it.
fn orphaned(path: &Path, writer: &Writer) -> Option<String> {
    match writer {
        Writer::ThisHost(pid) if *pid == std::process::id() => None,
        Writer::ThisHost(pid) => (!process_runs(*pid)).then(|| format!("process {pid} on this host no longer runs")),
        Writer::Unknown => {
            let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok()?;
            let age = modified.elapsed().ok()?;
            (age > UNKNOWN_WRITER_AGE).then(|| format!("unmodified for {} hours", age.as_secs() / 3600))
        }
    }
}

/// Whether process `pid` of this host runs (one we may not signal runs too).
#[cfg(unix)]
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Where it cannot be asked, every process may be running.
#[cfg(not(unix))]
fn process_runs(_pid: u32) -> bool {
    true
}

/// This host's name as temporary file names carry it: letters, digits and `-` (anything else
/// becomes `-`), `unknown` where it cannot be read.
pub fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = read_host_name().unwrap_or_default();
        let name: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        if name.is_empty() { "unknown".into() } else { name }
    })
}

#[cfg(unix)]
fn read_host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is NUL-terminated when it fits.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if done != 0 {
        return None;
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

#[cfg(not(unix))]
fn read_host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// Removes the temporary files in `dir` (not in its subdirectories) whose writer is gone: a
/// process of this host that no longer runs, or, for a writer that cannot be asked, a file
/// unmodified for [`UNKNOWN_WRITER_AGE`]. Those of running processes (another run writing
/// into the same directory) are kept. Returns the files removed, each logged with why. A
/// missing `dir` has none.
pub fn clean_stale_temp_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read the directory", dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read the directory", dir, e))?;
        // Temporary links (`link_atomic`) too.
        let is_file = entry.file_type().is_ok_and(|t| t.is_file() || t.is_symlink());
        let Some(writer) = is_file.then(|| temp_file_writer(&entry.file_name())).flatten() else {
            continue;
        };
        let path = entry.path();
        let Some(why) = orphaned(&path, &writer) else {
            continue;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(target: "burn_lightning",
                    "removed `{}`, the temporary file of an interrupted write ({why})", path.display());
                removed.push(path);
            }
            // Another process cleaned it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the stale temporary file", path, e)),
        }
    }
    Ok(removed)
}

/// The directories a run whose checkpoints go to `checkpoint_dir` cleans of orphaned temporary
/// files: that one, and where it is a run directory's (`<root>/version_N/checkpoints`), every
/// `version_*` directory of the same root and its `checkpoints` (a resumed fit writes into a
/// new `version_N`; the one it resumed from holds what the killed run left).
pub fn temp_file_dirs(checkpoint_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![checkpoint_dir.to_path_buf()];
    let run_dir = checkpoint_dir.parent();
    let root = run_dir
        .filter(|dir| {
            dir.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("version_"))
        })
        .and_then(Path::parent);
    let Some(root) = root else {
        return dirs;
    };
    let Ok(entries) = std::fs::read_dir(root) else {
        return dirs;
    };
    let mut versions: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("version_")))
        .map(|e| e.path())
        .collect();
    versions.sort();
    for version in versions {
        let checkpoints = version.join("checkpoints");
        for dir in [version, checkpoints] {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The name's parts around the random one: `.<file name>.tmp-` and `-<pid>-<host>`.
fn temp_name_parts(path: &Path) -> (String, String) {
    let name = path.file_name().unwrap_or(OsStr::new("file")).to_string_lossy();
    (
        format!(".{name}{TEMP_MARKER}"),
        format!("-{}-{}", std::process::id(), host_name()),
    )
}

/// A new temporary file beside `path`, named `.<file name>.tmp-<random>-<pid>-<host>`.
fn temp_file_for(path: &Path) -> Result<tempfile::NamedTempFile, Error> {
    let dir = parent_dir(path);
    let (prefix, suffix) = temp_name_parts(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(&suffix);
    // An ordinary file's permissions under the user's umask (rw-r--r-- with umask 022), not
    // the owner-only ones tempfile picks for secrets: checkpoints and logs are shared.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))
}

/// The writer of a temporary file named as [`temp_file_for`] names them (`.`, a non-empty file
/// name, `.tmp-`, an alphanumeric random part, then `-<pid>-<host>`, absent in the names of
/// versions before writers were named); `None` for any other name.
fn temp_file_writer(name: &OsStr) -> Option<Writer> {
    let name = name.to_str()?;
    let (head, tail) = name.rsplit_once(TEMP_MARKER)?;
    let (random, writer) = tail.split_once('-').unwrap_or((tail, ""));
    let named = head.len() > 1
        && head.starts_with('.')
        && !random.is_empty()
        && random.chars().all(|c| c.is_ascii_alphanumeric());
    if !named {
        return None;
    }
    let Some((pid, host)) = writer.split_once('-') else {
        return writer.is_empty().then_some(Writer::Unknown);
    };
    let pid: u32 = pid.parse().ok()?;
    Some(match host == host_name() {
        true => Writer::ThisHost(pid),
        false => Writer::Unknown,
    })
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
        assert!(
            name.ends_with(&format!("-{}-{}", std::process::id(), host_name())),
            "{name}"
        );
        assert_eq!(
            temp_file_writer(OsStr::new(&name)),
            Some(Writer::ThisHost(std::process::id()))
        );
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

    /// A process id that ran and no longer does.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn stale_temporary_files_are_removed_and_real_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        // What a run killed mid-write leaves: a temporary file that was never renamed.
        let dead = format!("{}-{}", dead_pid(), host_name());
        let left = dir.path().join(format!(".last.ckpt.tmp-abc123-{dead}"));
        let left_too = dir.path().join(format!(".hparams.yaml.tmp-Xy9-{dead}"));
        std::fs::write(&left, b"partial").unwrap();
        std::fs::write(&left_too, b"partial").unwrap();
        // This process's own write in progress, and another host's recent one.
        let (_, ours) = temp_file_for(&dir.path().join("ours.ckpt")).unwrap().keep().unwrap();
        let theirs = format!(".b.ckpt.tmp-abc-{}-elsewhere", dead_pid());
        std::fs::write(dir.path().join(&theirs), b"partial").unwrap();
        let ours = ours.file_name().unwrap().to_str().unwrap().to_owned();
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
        let mut removed = clean_stale_temp_files(dir.path()).unwrap();
        removed.sort();
        assert_eq!(removed, [left_too, left]);
        let mut expected = vec![
            ".hidden".to_string(),
            ".sub.tmp-abc123".into(),
            ".tmp-abc".into(),
            "a.ckpt.tmp-x".into(),
            "epoch=0-step=10.ckpt".into(),
            "last.ckpt".into(),
            "notes.tmp-1".into(),
            ours,
            theirs,
        ];
        expected.sort();
        assert_eq!(names(dir.path()), expected);
        assert!(clean_stale_temp_files(dir.path()).unwrap().is_empty());
        assert!(clean_stale_temp_files(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_temporary_file_of_an_unknown_writer_is_an_orphan_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".last.ckpt.tmp-abc123");
        std::fs::write(&old, b"partial").unwrap();
        assert_eq!(temp_file_writer(old.file_name().unwrap()), Some(Writer::Unknown));
        assert_eq!(orphaned(&old, &Writer::Unknown), None, "recent: it may be written now");
        let file = std::fs::File::options().write(true).open(&old).unwrap();
        file.set_modified(std::time::SystemTime::now() - UNKNOWN_WRITER_AGE * 2)
            .unwrap();
        assert!(orphaned(&old, &Writer::Unknown).is_some());
        assert_eq!(clean_stale_temp_files(dir.path()).unwrap(), [old]);
    }

    #[test]
    fn the_dirs_cleaned_are_every_run_directory_of_the_root() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["version_0/checkpoints", "version_1", "other/checkpoints"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let new = root.path().join("version_2/checkpoints");
        let dirs = temp_file_dirs(&new);
        let expected: Vec<PathBuf> = [
            "version_2/checkpoints",
            "version_0",
            "version_0/checkpoints",
            "version_1",
            "version_1/checkpoints",
        ]
        .iter()
        .map(|d| root.path().join(d))
        .collect();
        assert_eq!(dirs, expected);
        let elsewhere = root.path().join("other/checkpoints");
        assert_eq!(temp_file_dirs(&elsewhere), [elsewhere]);
    }
}
