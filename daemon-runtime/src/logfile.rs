//! The log file: the manager opens it (as root, before dropping privileges) and puts it on
//! standard output and standard error, which its workers inherit, so every line of either goes
//! there. USR1 and HUP reopen it: after `mv log log.1`, the manager and then each worker open
//! `log` anew, and lines written meanwhile land in `log.1`; none is lost (logrotate's `create`
//! mode).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
}

impl LogFile {
    /// Opens the file (creating it 0640) and sends standard output and error to it.
    pub(crate) fn open(path: &Path) -> io::Result<LogFile> {
        let log = LogFile { path: path.to_path_buf() };
        log.reopen()?;
        Ok(log)
    }

    /// Opens the path again and moves standard output and error to the new file.
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)?;
        nix::unistd::dup2_stdout(&file)?;
        nix::unistd::dup2_stderr(&file)?;
        Ok(())
    }

    /// The log file at `path`, already open on standard output and error (in a worker).
    pub(crate) fn at(path: &Path) -> LogFile {
        LogFile { path: path.to_path_buf() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
