//! Locks on what a run writes or reads while another might change it: a model folder (`dfl
//! train`), a faceset (`dfl extract` and `dfl sort` write it, `train` and `merge` read it), the
//! merge output. They are OS file locks (`flock`), held by an open file: they end with the
//! process however it ends, so a crash or `kill -9` never leaves a stale lock behind.
//!
//! The lock file also says who holds it (`<pid> <command line>` per holder), so a second run
//! can name the first in its error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Lock {
    /// The locked file; `None` for a reader's lock on a folder that does not exist (nothing to
    /// protect: the stage then finds nothing to read).
    _file: Option<File>,
    path: PathBuf,
}

impl Lock {
    /// Returns the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Errors of taking a lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{what} is in use by {holder} (lock {}); wait for it to finish or stop it, then run again",
        .path.display()
    )]
    Busy {
        /// What is locked, in words ("model m", "the src faceset").
        what: String,
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot lock {}: {source}; check the folder's permissions", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Takes the lock at `path` for this process alone (creating the file and its folder).
///
/// # Errors
/// `Busy` naming the holder when any other process holds it, shared or exclusive; `Io`.
pub fn exclusive(path: &Path, what: &str) -> Result<Lock, LockError> {
    let mut file = open(path, false)?.expect("invariant: a writer's folder is created");
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(busy(path, what)),
        Err(TryLockError::Error(source)) => {
            return Err(LockError::Io { path: path.to_owned(), source });
        }
    }
    let io = |source| LockError::Io { path: path.to_owned(), source };
    file.set_len(0).map_err(io)?;
    file.write_all(holder_line().as_bytes()).map_err(io)?;
    Ok(Lock { _file: Some(file), path: path.to_owned() })
}

/// Takes the lock at `path` together with other readers (creating the file, not its folder:
/// without the folder there is nothing to read, and nothing to lock).
///
/// # Errors
/// `Busy` naming the holder when another process holds it exclusively; `Io`.
pub fn shared(path: &Path, what: &str) -> Result<Lock, LockError> {
    let Some(mut file) = open(path, true)? else {
        return Ok(Lock { _file: None, path: path.to_owned() });
    };
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(busy(path, what)),
        Err(TryLockError::Error(source)) => {
            return Err(LockError::Io { path: path.to_owned(), source });
        }
    }
    // Readers append; the next writer starts the file over.
    file.write_all(holder_line().as_bytes())
        .map_err(|source| LockError::Io { path: path.to_owned(), source })?;
    Ok(Lock { _file: Some(file), path: path.to_owned() })
}

/// Opens the lock file: a writer (`reader` false) creates its folder, a reader gets `None`
/// when the folder does not exist.
fn open(path: &Path, reader: bool) -> Result<Option<File>, LockError> {
    let io = |source| LockError::Io { path: path.to_owned(), source };
    match path.parent() {
        Some(dir) if !dir.is_dir() && reader => return Ok(None),
        Some(dir) => std::fs::create_dir_all(dir).map_err(io)?,
        None => {}
    }
    let mut options = OpenOptions::new();
    options.read(true).create(true);
    if reader {
        options.append(true)
    } else {
        options.write(true)
    };
    options.open(path).map(Some).map_err(io)
}

/// `<pid> <command line>` of this process.
fn holder_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    format!("{} {}\n", std::process::id(), args.join(" "))
}

/// The error for a lock someone else holds, naming the holders still alive.
fn busy(path: &Path, what: &str) -> LockError {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let alive: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let (pid, command) = line.split_once(' ')?;
            let pid: u32 = pid.parse().ok()?;
            Path::new(&format!("/proc/{pid}")).exists().then(|| format!("pid {pid} ({command})"))
        })
        .collect();
    let holder = if alive.is_empty() { "another dfl process".to_owned() } else { alive.join(", ") };
    LockError::Busy { what: what.to_owned(), path: path.to_owned(), holder }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_excludes_everyone_and_ends_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/x.lock");
        let held = exclusive(&path, "model m").unwrap();
        let err = exclusive(&path, "model m").unwrap_err().to_string();
        assert!(err.contains("model m is in use by pid"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "names the holder: {err}");
        assert!(matches!(shared(&path, "model m"), Err(LockError::Busy { .. })));
        drop(held);
        let again = exclusive(&path, "model m").unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn readers_share_and_keep_writers_out() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("faceset.lock");
        let a = shared(&path, "the src faceset").unwrap();
        let b = shared(&path, "the src faceset").unwrap();
        assert!(matches!(exclusive(&path, "the src faceset"), Err(LockError::Busy { .. })));
        drop((a, b));
        exclusive(&path, "the src faceset").unwrap();
    }

    #[test]
    fn a_reader_of_a_missing_folder_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data_dst/merge.lock");
        let lock = shared(&path, "the merge output").unwrap();
        assert!(!tmp.path().join("data_dst").exists());
        drop(lock);
        let writer = exclusive(&path, "the merge output").unwrap();
        assert!(path.is_file() && std::fs::read_to_string(&path).unwrap().contains(' '));
        drop(writer);
    }
}
