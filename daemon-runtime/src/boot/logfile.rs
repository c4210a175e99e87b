//! The log file: the manager opens it (as root, before dropping privileges) and puts it on
//! standard output and standard error, which its workers inherit, so every line of either goes
//! there. USR1 and HUP reopen it: after `mv log log.1`, the manager and then each worker open
//! `log` anew, and lines written meanwhile land in `log.1`; none is lost (logrotate's `create`
//! mode).
//!
//! The file is opened as root, in a directory its daemon's user may write (to reopen it after a
//! rotation), so what is at the path is not trusted: never followed through a symlink, never a
//! FIFO (the open would hang, or the daemon write into a pipe someone reads), only a regular file
//! with no other hard link, owned by root, the daemon's user or this process's.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

#[derive(Clone, Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    /// The daemon's user, who may own the file besides root.
    user: Option<u32>,
}

impl LogFile {
    /// Opens the file (creating it 0640) and sends standard output and error to it.
    pub(crate) fn open(path: &Path, user: Option<u32>) -> io::Result<LogFile> {
        let log = LogFile { path: path.to_path_buf(), user };
        log.reopen()?;
        Ok(log)
    }

    /// Opens the path again and moves standard output and error to the new file.
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let file = self.open_checked()?;
        nix::unistd::dup2_stdout(&file)?;
        nix::unistd::dup2_stderr(&file)?;
        Ok(())
    }

    fn open_checked(&self) -> io::Result<File> {
        let refuse = |why: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: remove it, or choose another path"));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => refuse("it is a symbolic link, which a log file is never written through".into()),
                Some(libc::ENXIO) => refuse("it is a FIFO, not a file".into()),
                _ => e,
            })?;
        let m = file.metadata()?;
        if !m.file_type().is_file() {
            return Err(refuse("it is not a regular file".into()));
        }
        if m.nlink() > 1 {
            return Err(refuse(format!("it has {} hard links, and a log file is written through one name only", m.nlink())));
        }
        let me = nix::unistd::geteuid().as_raw();
        if m.uid() != 0 && m.uid() != me && Some(m.uid()) != self.user {
            return Err(refuse(format!("it belongs to uid {}, neither root nor the daemon's user", m.uid())));
        }
        // The daemon's user must be able to open it again: its workers after a rotation, a new
        // manager after an upgrade (nginx chowns its reopened logs to its workers' user too).
        if let Some(user) = self.user.filter(|&u| me == 0 && m.uid() == 0 && u != 0) {
            nix::unistd::fchown(&file, Some(nix::unistd::Uid::from_raw(user)), None)?;
        }
        // Regular files ignore O_NONBLOCK; it was there for the open alone.
        let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
        fcntl(&file, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
        Ok(file)
    }

    /// The log file at `path`, already open on standard output and error (in a worker).
    pub(crate) fn at(path: &Path, user: Option<u32>) -> LogFile {
        LogFile { path: path.to_path_buf(), user }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_a_fifo_or_a_hard_link_is_never_written() {
        let dir = std::env::temp_dir().join(format!("daemon-logfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "untouched\n").unwrap();
        let check = |name: &str| LogFile { path: dir.join(name), user: None }.open_checked().map(drop);
        std::os::unix::fs::symlink(&victim, dir.join("link.log")).unwrap();
        assert!(check("link.log").unwrap_err().to_string().contains("symbolic link"));
        nix::unistd::mkfifo(&dir.join("fifo.log"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(check("fifo.log").unwrap_err().to_string().contains("FIFO"));
        std::fs::hard_link(&victim, dir.join("hard.log")).unwrap();
        assert!(check("hard.log").unwrap_err().to_string().contains("hard links"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
        check("fresh.log").expect("a new file is fine");
        check("fresh.log").expect("and so is the same file again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
