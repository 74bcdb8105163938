//! The run directory (`<default_root_dir>/lightning_logs/version_N`) and atomic file writes.

use crate::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Creates the next free `version_N` under `<root>/lightning_logs`, as Lightning's loggers do.
pub fn next_version_dir(root: &Path) -> Result<PathBuf, Error> {
    let logs = root.join("lightning_logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io("create the log directory", &logs, e))?;
    let entries = std::fs::read_dir(&logs).map_err(|e| Error::io("read the log directory", &logs, e))?;
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
/// file or the new one: write a temporary file beside it, flush it to disk, rename it over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_parts(path, &[bytes])
}

/// [`write_atomic`] for a file made of several parts, written one after the other.
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a temporary file in", dir, e))?;
    for part in parts {
        tmp.write_all(part)
            .map_err(|e| Error::io("write", tmp.path().to_path_buf(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("flush", tmp.path().to_path_buf(), e))?;
    tmp.persist(path).map_err(|e| Error::io("replace", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
