//! The pid file: the manager's pid, written atomically (a complete file appears at once, by
//! link(2) or rename(2); never through a symlink), locked with flock(2) for as long as the manager
//! runs, and removed at exit. The lock, not the pid, says whether a daemon runs: a pid file whose
//! lock nobody holds was left by a manager that died, and is replaced.
//!
//! flock locks belong to the open file description, which fork shares: a worker closes its copy
//! at once (the manager keeps it in the set of descriptors that are its alone), so the lock dies
//! with the manager, not with its last worker.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sys::try_lock_exclusive;

/// A pid file this process holds.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    /// Locked; closing it (at exit, in the manager) releases the lock.
    lock: File,
    inode: (u64, u64),
}

/// Why the pid file could not be taken.
#[derive(Debug)]
pub(crate) enum PidFileError {
    /// Another manager holds it.
    Running { path: PathBuf, pid: Option<i32> },
    Symlink(PathBuf),
    Io { path: PathBuf, error: io::Error },
}

impl std::fmt::Display for PidFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PidFileError::Running { path, pid: Some(pid) } => write!(
                f,
                "already running: the manager with pid {pid} holds {}; stop it first, or use another pid file",
                path.display()
            ),
            PidFileError::Running { path, pid: None } => write!(
                f,
                "already running: another process holds {}; stop it first, or use another pid file",
                path.display()
            ),
            PidFileError::Symlink(path) => write!(
                f,
                "{} is a symbolic link; a pid file is never written through one: remove the link or choose another path",
                path.display()
            ),
            PidFileError::Io { path, error } => {
                write!(f, "cannot write the pid file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for PidFileError {}

fn inode(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Reads the pid a pid file names, if it names one.
pub(crate) fn read_pid(path: &Path) -> io::Result<Option<i32>> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text.trim().parse::<i32>().ok().filter(|p| *p > 0))
}

/// Whether some process holds the pid file's lock (that is, a manager runs).
pub(crate) fn is_locked(path: &Path) -> io::Result<bool> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)?;
    // Our lock, if we get it, goes when `file` closes at the end of this function.
    Ok(!try_lock_exclusive(&file)?)
}

impl PidFile {
    /// Writes this process's pid to `path` and locks it, or says who holds it.
    pub(crate) fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |error: io::Error| PidFileError::Io { path: path.to_path_buf(), error };
        let pid = std::process::id();
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{name}.{pid}.tmp"));
        // A few rounds at most: each lost round means another starter changed the file meanwhile.
        for _ in 0..8 {
            let _ = std::fs::remove_file(&temp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)
                .map_err(io_err)?;
            file.write_all(format!("{pid}\n").as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            try_lock_exclusive(&file).map_err(io_err)?;
            let lock = file;
            let ours = inode(&lock.metadata().map_err(io_err)?);

            match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // No pid file: publish ours whole, unless another starter just did.
                    match std::fs::hard_link(&temp, path) {
                        Ok(()) => {
                            let _ = std::fs::remove_file(&temp);
                            return Ok(PidFile { path: path.to_path_buf(), lock, inode: ours });
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => {
                            let _ = std::fs::remove_file(&temp);
                            return Err(io_err(e));
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(PidFileError::Symlink(path.to_path_buf()));
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(io_err(e));
                }
                Ok(old) => {
                    match try_lock_exclusive(&old) {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = std::fs::remove_file(&temp);
                            let pid = read_pid(path).ok().flatten();
                            return Err(PidFileError::Running { path: path.to_path_buf(), pid });
                        }
                        Err(e) => {
                            let _ = std::fs::remove_file(&temp);
                            return Err(io_err(e));
                        }
                    }
                    // We hold the old file's lock; make sure it is still the one at `path`.
                    let current = std::fs::symlink_metadata(path).map(|m| inode(&m)).ok();
                    if current != Some(inode(&old.metadata().map_err(io_err)?)) {
                        continue;
                    }
                    let stale = read_pid(path).ok().flatten();
                    std::fs::rename(&temp, path).map_err(io_err)?;
                    tracing::warn!(
                        path = %path.display(),
                        stale_pid = ?stale,
                        "replaced a stale pid file: its manager is gone"
                    );
                    drop(old);
                    return Ok(PidFile { path: path.to_path_buf(), lock, inode: ours });
                }
            }
        }
        let _ = std::fs::remove_file(&temp);
        Err(io_err(io::Error::other("the pid file kept changing while we tried to take it")))
    }

    /// Removes the pid file, if it is still ours.
    pub(crate) fn remove(self) {
        let still_ours = std::fs::symlink_metadata(&self.path).map(|m| inode(&m)).ok() == Some(self.inode);
        if still_ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the pid file");
            }
        }
        drop(self.lock);
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("daemon-pidfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn written_whole_locked_and_removed() {
        let d = dir("whole");
        let path = d.join("x.pid");
        let pf = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        assert!(is_locked(&path).unwrap());
        match PidFile::acquire(&path) {
            Err(PidFileError::Running { pid, .. }) => assert_eq!(pid, Some(std::process::id() as i32)),
            other => panic!("{other:?}"),
        }
        pf.remove();
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no temporary file left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stale_file_is_replaced_and_a_symlink_refused() {
        let d = dir("stale");
        let path = d.join("x.pid");
        std::fs::write(&path, "999999\n").unwrap();
        let pf = PidFile::acquire(&path).unwrap();
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        pf.remove();
        let target = d.join("elsewhere");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(PidFile::acquire(&path), Err(PidFileError::Symlink(_))));
        assert!(!target.exists(), "nothing written through the link");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
