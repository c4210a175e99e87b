//! The pid file: the manager's pid, written atomically (a complete file appears at once, by
//! link(2) or rename(2); never through a symlink), locked with flock(2) for as long as the manager
//! runs, and removed at exit. The lock, not the pid, says whether a daemon runs: a pid file whose
//! lock nobody holds was left by a manager that died, and is replaced. Anyone who can read the
//! file can lock it too, so the lock counts only when its holder (`/proc/locks`) is the process
//! the file names; a file locked by a stranger is stale as well. An existing file is opened
//! without following a symlink, without blocking (a FIFO in its place would hang the open), and
//! only if it is a regular file.
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
    /// Where the file is now: its configured name, or `PATH.oldbin` during an upgrade.
    path: PathBuf,
    /// Its configured name.
    home: PathBuf,
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

/// Opens an existing pid file to read it, never through a symlink, never blocking on a FIFO
/// someone put in its place, and only if it is a regular file.
fn open_existing(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file: remove it, or choose another path", path.display()),
        ));
    }
    Ok(file)
}

fn pid_in(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    (&*file).take(64).read_to_string(&mut text).ok()?;
    text.trim().parse::<i32>().ok().filter(|p| *p > 0)
}

/// Reads the pid a pid file names, if it names one.
pub(crate) fn read_pid(path: &Path) -> io::Result<Option<i32>> {
    Ok(pid_in(&mut open_existing(path)?))
}

/// Who holds a pid file's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody: its manager is gone.
    Free { named: Option<i32> },
    /// The process the file names (or a process this one cannot see, which is then taken to be
    /// it): a manager runs.
    Manager(i32),
    /// Somebody else: anyone who may read the file may also lock it, so a lock held by another
    /// process than the one the file names proves nothing.
    Stranger { named: Option<i32>, holder: i32 },
}

/// Who holds the lock on the file at `path`.
pub(crate) fn holder(path: &Path) -> io::Result<Holder> {
    let mut file = open_existing(path)?;
    let named = pid_in(&mut file);
    // Our lock, if we get it, goes when `file` closes at the end of this function.
    if try_lock_exclusive(&file)? {
        return Ok(Holder::Free { named });
    }
    Ok(judge_holder(named, lock_holder(&file)))
}

fn judge_holder(named: Option<i32>, holder: Option<i32>) -> Holder {
    match (named, holder) {
        (Some(named), Some(h)) if h == named => Holder::Manager(named),
        (named, Some(holder)) => Holder::Stranger { named, holder },
        // /proc/locks said nothing we can use: the file is all there is to go by.
        (Some(named), None) => Holder::Manager(named),
        (None, None) => Holder::Stranger { named: None, holder: 0 },
    }
}

/// The pid of the process holding the flock on `file`, from /proc/locks (`1: FLOCK ADVISORY
/// WRITE 4120 08:01:1234567 0 EOF`). None when it cannot be told.
fn lock_holder(file: &File) -> Option<i32> {
    let m = file.metadata().ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(m.dev()),
        nix::sys::stat::minor(m.dev()),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiter's line starts with "->"; only the holder's line counts.
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&id.as_str()) {
            return None;
        }
        fields.get(4)?.parse::<i32>().ok().filter(|&p| p > 0)
    })
}

/// A new file beside the pid file, to write whole before it is linked as the pid file: under a
/// name nobody can take first (a random part, and `O_EXCL`), since whoever may write in the
/// directory could plant a predictable one.
/// Its name goes when this is dropped (after the link or rename that publishes it, there is
/// nothing left to remove).
fn new_temp(dir: &Path, name: &str) -> Result<(Temp, File), PidFileError> {
    let mut last = None;
    for _ in 0..8 {
        let random = crate::sys::random_hex(8).map_err(|error| PidFileError::Io { path: dir.to_path_buf(), error })?;
        let temp = dir.join(format!(".{name}.{}.{random}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&temp) {
            Ok(file) => return Ok((Temp(temp), file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((temp, e)),
            Err(error) => return Err(PidFileError::Io { path: temp, error }),
        }
    }
    let (path, error) = last.unwrap_or_else(|| (dir.to_path_buf(), io::Error::from(io::ErrorKind::AlreadyExists)));
    Err(PidFileError::Io { path, error })
}

struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl PidFile {
    /// Writes this process's pid to `path` and locks it, or says who holds it. `handed_by` is
    /// the manager this one upgrades, whose lock on `path` is no reason to refuse (it keeps its
    /// lock under its own name, `PATH.oldbin`). `owner`: the user the manager is about to become
    /// (`user`), who gets the file if the directory is that user's: an upgrade links it as
    /// `PATH.oldbin`, and with `fs.protected_hardlinks` (Debian's default) only a file's owner
    /// may link it. In a directory that is not the user's (root's `/run`), the file stays root's:
    /// the user could not make the link there anyway, and a pid file root's tools trust
    /// (start-stop-daemon) must not be the user's to rewrite.
    pub(crate) fn acquire(path: &Path, handed_by: Option<i32>, owner: Option<u32>) -> Result<PidFile, PidFileError> {
        let io_err = |error: io::Error| PidFileError::Io { path: path.to_path_buf(), error };
        let pid = std::process::id();
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // A few rounds at most: each lost round means another starter changed the file meanwhile.
        for _ in 0..8 {
            let (temp, mut file) = new_temp(dir, &name)?;
            let dir_owner = std::fs::metadata(dir).map(|m| m.uid()).ok();
            if let Some(uid) = owner.filter(|&u| u != nix::unistd::geteuid().as_raw() && dir_owner == Some(u)) {
                nix::unistd::fchown(&file, Some(nix::unistd::Uid::from_raw(uid)), None).map_err(|e| io_err(e.into()))?;
            }
            file.write_all(format!("{pid}\n").as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            try_lock_exclusive(&file).map_err(io_err)?;
            let lock = file;
            let ours = inode(&lock.metadata().map_err(io_err)?);

            match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // No pid file: publish ours whole, unless another starter just did.
                    match std::fs::hard_link(&temp.0, path) {
                        Ok(()) => {
                            return Ok(PidFile { path: path.to_path_buf(), home: path.to_path_buf(), lock, inode: ours });
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => {
                            return Err(io_err(e));
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(PidFileError::Symlink(path.to_path_buf()));
                }
                Err(e) => {
                    return Err(io_err(e));
                }
                Ok(old) => {
                    let mut old = old;
                    if !old.metadata().map_err(io_err)?.file_type().is_file() {
                        return Err(io_err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "not a regular file: remove it, or choose another path",
                        )));
                    }
                    let named = pid_in(&mut old);
                    let why = match try_lock_exclusive(&old) {
                        Ok(true) => "its manager is gone",
                        Ok(false) => match judge_holder(named, lock_holder(&old)) {
                            Holder::Stranger { .. } => {
                                "its lock is held by a process that is not the manager it names"
                            }
                            Holder::Manager(p) if Some(p) == handed_by => "the manager this one upgrades hands it over",
                            _ => {
                                return Err(PidFileError::Running { path: path.to_path_buf(), pid: named });
                            }
                        },
                        Err(e) => {
                            return Err(io_err(e));
                        }
                    };
                    // Make sure the old file is still the one at `path`.
                    let current = std::fs::symlink_metadata(path).map(|m| inode(&m)).ok();
                    if current != Some(inode(&old.metadata().map_err(io_err)?)) {
                        continue;
                    }
                    std::fs::rename(&temp.0, path).map_err(io_err)?;
                    // An upgrade's handover is the normal course of things; a stale file is not.
                    let shown = named.map_or_else(|| "none".to_string(), |p| p.to_string());
                    if handed_by.is_some() && named == handed_by {
                        tracing::info!(path = %path.display(), pid = %shown, "took over the pid file: {why}");
                    } else {
                        tracing::warn!(path = %path.display(), stale_pid = %shown, "replaced a stale pid file: {why}");
                    }
                    drop(old);
                    return Ok(PidFile { path: path.to_path_buf(), home: path.to_path_buf(), lock, inode: ours });
                }
            }
        }
        Err(io_err(io::Error::other("the pid file kept changing while we tried to take it")))
    }

    /// Where the file is now.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its configured name, which an upgrade moves it away from for a while.
    pub(crate) fn home(&self) -> &Path {
        &self.home
    }

    fn is_ours_at(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).map(|m| inode(&m)).ok() == Some(self.inode)
    }

    /// Before a rename: the file where we left it must still be ours.
    fn still_ours(&self) -> io::Result<()> {
        if self.is_ours_at(&self.path) {
            return Ok(());
        }
        Err(io::Error::other(format!("{} is no longer this manager's pid file", self.path.display())))
    }

    /// During an upgrade: the pid file gets a second name, `to` (`PATH.oldbin`), which becomes
    /// this manager's; `PATH` is never missing, and the new manager replaces it when it starts.
    /// The lock is on the file, so it stays. A stale file at `to` (no manager holds it) is
    /// replaced; anything else there is an error.
    pub(crate) fn link_aside(&mut self, to: &Path) -> io::Result<()> {
        self.still_ours()?;
        if let Ok(m) = std::fs::symlink_metadata(to) {
            let stale = m.file_type().is_file() && !matches!(holder(to), Ok(Holder::Manager(_)));
            if !stale && !m.file_type().is_symlink() {
                return Err(io::Error::other(format!("{} exists, and is not a stale pid file: remove it", to.display())));
            }
            std::fs::remove_file(to)?;
        }
        std::fs::hard_link(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// After a rollback, or a held upgrade's new manager gone: the pid file's name is its
    /// configured one (`PATH`) again, replacing what the new manager left there; the `.oldbin`
    /// name goes.
    pub(crate) fn take_back(&mut self) -> io::Result<()> {
        if self.path == self.home {
            return Ok(());
        }
        self.still_ours()?;
        if self.is_ours_at(&self.home) {
            // Both names are ours still (the new manager never took `PATH`): drop the second.
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, &self.home)?;
        }
        self.path = self.home.clone();
        Ok(())
    }

    /// Removes the pid file, if it is still ours.
    pub(crate) fn remove(self) {
        if self.is_ours_at(&self.path) {
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
        let pf = PidFile::acquire(&path, None, None).unwrap();
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        assert_eq!(holder(&path).unwrap(), Holder::Manager(std::process::id() as i32));
        match PidFile::acquire(&path, None, None) {
            Err(PidFileError::Running { pid, .. }) => assert_eq!(pid, Some(std::process::id() as i32)),
            other => panic!("{other:?}"),
        }
        pf.remove();
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no temporary file left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_lock_held_by_a_stranger_proves_nothing() {
        assert_eq!(judge_holder(Some(7), Some(7)), Holder::Manager(7));
        assert_eq!(judge_holder(Some(7), Some(9)), Holder::Stranger { named: Some(7), holder: 9 });
        assert_eq!(judge_holder(Some(7), None), Holder::Manager(7));
        let d = dir("stranger");
        let path = d.join("x.pid");
        std::fs::write(&path, "999999\n").unwrap();
        // This process holds the lock of a file that names another pid.
        let held = File::open(&path).unwrap();
        assert!(try_lock_exclusive(&held).unwrap());
        assert_eq!(holder(&path).unwrap(), Holder::Stranger { named: Some(999999), holder: std::process::id() as i32 });
        let pf = PidFile::acquire(&path, None, None).expect("a file locked by a stranger is stale");
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        pf.remove();
        // A FIFO in its place is refused, at once.
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(read_pid(&path).unwrap_err().to_string().contains("not a regular file"));
        assert!(holder(&path).is_err());
        assert!(PidFile::acquire(&path, None, None).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stale_file_is_replaced_and_a_symlink_refused() {
        let d = dir("stale");
        let path = d.join("x.pid");
        std::fs::write(&path, "999999\n").unwrap();
        let pf = PidFile::acquire(&path, None, None).unwrap();
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        pf.remove();
        let target = d.join("elsewhere");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(PidFile::acquire(&path, None, None), Err(PidFileError::Symlink(_))));
        assert!(!target.exists(), "nothing written through the link");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_pid_file_is_the_users_only_in_the_users_directory() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test gives a file to another user: run the tests as root");
        }
        let base = std::env::temp_dir().join(format!("daemon-pidfile-owner-{}", std::process::id()));
        let (theirs, roots) = (base.join("theirs"), base.join("roots"));
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::create_dir_all(&roots).unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let a = PidFile::acquire(&theirs.join("a.pid"), None, Some(65534)).unwrap();
        assert_eq!(std::fs::metadata(theirs.join("a.pid")).unwrap().uid(), 65534, "in the user's directory, the user's");
        let b = PidFile::acquire(&roots.join("b.pid"), None, Some(65534)).unwrap();
        assert_eq!(std::fs::metadata(roots.join("b.pid")).unwrap().uid(), 0, "in root's directory, root's");
        a.remove();
        b.remove();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
