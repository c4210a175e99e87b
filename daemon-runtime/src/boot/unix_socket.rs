//! Unix sockets `listen` names: `unix:/run/app/app.sock` (a file) and `unix:@name` (the
//! abstract namespace, no file). The file is the daemon's only while it is the daemon's:
//!
//! - its directory is reached from `/` one component at a time, never through a symbolic link,
//!   and every directory on the way must be one no other user could rename or replace (owned by
//!   root or the daemon's user; written by no one else, or sticky); the last one may not be
//!   written by other users at all, sticky or not, since they could take the name while the
//!   daemon is down. Everything after is done relative to that directory's descriptor, so a
//!   path that names something else by then changes nothing;
//! - starts that take the same path at once take turns (a lock on the directory), so one cannot
//!   remove the socket the other just bound;
//! - the socket is made with no permissions for others and given its mode, owner and group only
//!   once it is known to be the socket just bound;
//! - a file left by a crashed run is removed only when it is a socket of the daemon's own and
//!   nothing answers on it;
//! - the file is removed when the daemon stops for good, and when a start fails after binding
//!   it, if the directory still holds that very file.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::socket::{bind, connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{fstat, fstatat, umask, FileStat, Mode};
use nix::unistd::{fchdir, unlinkat, Gid, Uid, UnlinkatFlags};

/// Who may connect to a socket file (`socket_mode`, `socket_user`, `socket_group`; by default
/// the daemon's user and group, 0660), and whom its directory may belong to: root and the
/// daemon's own user and group (`user`, `group`, or the starting ones), never the accounts it
/// merely lets connect.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access {
    pub mode: u32,
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
    pub daemon_uid: Option<Uid>,
    pub daemon_gid: Option<Gid>,
}

impl Access {
    fn trusts_user(&self, uid: u32) -> bool {
        uid == 0 || uid == nix::unistd::geteuid().as_raw() || self.daemon_uid.is_some_and(|u| u.as_raw() == uid)
    }

    fn trusts_group(&self, gid: u32) -> bool {
        gid == nix::unistd::getegid().as_raw() || self.daemon_gid.is_some_and(|g| g.as_raw() == gid)
    }
}

/// A socket file this daemon made (or took over in an upgrade), by its directory's descriptor,
/// its name there, and what it is, so that only that file is ever removed.
#[derive(Debug)]
pub(crate) struct SocketFile {
    dir: OwnedFd,
    name: PathBuf,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Bound by this process (not taken over): a start that fails removes it.
    pub(crate) bound_here: bool,
}

impl SocketFile {
    /// The socket file at `path`, if it is the one `dev` and `ino` name (the old manager's, in
    /// an upgrade).
    pub(crate) fn taken_over(path: &Path, dev: u64, ino: u64) -> Option<SocketFile> {
        let (dir, name) = open_parent(path, None).ok()?;
        let st = fstatat(&dir, name.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        (is_socket(&st) && st.st_dev as u64 == dev && st.st_ino as u64 == ino).then(|| SocketFile { dir, name, path: path.to_path_buf(), dev, ino, bound_here: false })
    }

    /// What the file is, for the manager an upgrade hands it to: `DEV.INO`.
    pub(crate) fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Removes the file, if its directory still holds it: a daemon that stops for good leaves no
    /// socket file behind (a later start would find it stale and remove it anyway).
    pub(crate) fn remove(&self) {
        let same = fstatat(&self.dir, self.name.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| is_socket(&st) && st.st_dev as u64 == self.dev && st.st_ino as u64 == self.ino);
        if !same {
            return;
        }
        let shown = crate::net::Local::Path(self.path.clone());
        match unlinkat(&self.dir, self.name.as_path(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => tracing::info!(path = %shown, "removed the socket file"),
            Err(e) => tracing::warn!(path = %shown, error = %e, "cannot remove the socket file (the daemon's user may not write in its directory); the next start removes it as stale"),
        }
    }
}

fn is_socket(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

/// Why a Unix socket cannot be listened on: the error, with what to do in its text.
fn refuse(kind: io::ErrorKind, why: String) -> io::Error {
    io::Error::new(kind, why)
}

/// A new, unbound Unix stream socket, non-blocking and close-on-exec as every listener is.
fn unix_socket() -> io::Result<OwnedFd> {
    Ok(socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?)
}

/// Binds the abstract name `name` (no file: it lasts as long as a socket holds it, so a name in
/// use is a live one).
pub(crate) fn bind_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    let fd = unix_socket()?;
    let addr = UnixAddr::new_abstract(name)?;
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(fd),
        Err(Errno::EADDRINUSE) => Err(refuse(io::ErrorKind::AddrInUse, "another socket holds this abstract name".to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `path` is in, from `/`, one component at a time and never through a
/// link; with `access`, checks that no other user could rename or replace any directory on the
/// way, nor put a file in the last one. Returns the directory and the socket's name in it.
fn open_parent(path: &Path, access: Option<Access>) -> io::Result<(OwnedFd, PathBuf)> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => parts.push(p),
            _ => return Err(refuse(io::ErrorKind::InvalidInput, "its path holds `.` or `..`: write it plainly".to_string())),
        }
    }
    let Some(name) = parts.pop() else {
        return Err(refuse(io::ErrorKind::InvalidInput, "its path names no file".to_string()));
    };
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = nix::fcntl::open("/", flags, Mode::empty())?;
    let mut walked = PathBuf::from("/");
    let last = parts.len();
    for (i, part) in std::iter::once(None).chain(parts.into_iter().map(Some)).enumerate() {
        if let Some(part) = part {
            walked.push(part);
            dir = openat(&dir, part, flags, Mode::empty()).map_err(|e| match e {
                Errno::ENOENT => refuse(io::ErrorKind::NotFound, format!("its directory {} does not exist: create it, owned by the daemon's user (systemd: RuntimeDirectory=)", walked.display())),
                Errno::ELOOP | Errno::ENOTDIR => refuse(io::ErrorKind::InvalidInput, format!("{} is a symbolic link or not a directory: name the directory itself (a link could be pointed elsewhere)", walked.display())),
                e => refuse(io::Error::from(e).kind(), format!("{}: {e}", walked.display())),
            })?;
        }
        let Some(access) = access else { continue };
        let st = fstat(&dir)?;
        let mode = st.st_mode & 0o7777;
        let sticky = mode & libc::S_ISVTX != 0;
        let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && !access.trusts_group(st.st_gid));
        let is_last = i == last;
        if !access.trusts_user(st.st_uid) || (others_write && (is_last || !sticky)) {
            return Err(refuse(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the directory {} may be changed by other users (owner uid {}, group {}, mode {mode:o}), who could put their own socket in the daemon's place: listen in a directory only root and the daemon's user and group may write, on a path of such directories, such as /run/NAME (systemd: RuntimeDirectory=)",
                    walked.display(),
                    st.st_uid,
                    st.st_gid
                ),
            ));
        }
    }
    Ok((dir, PathBuf::from(name)))
}

/// Runs `f` with the process's working directory at `dir` (for the calls that take a socket's
/// address, which holds a path: a name relative to the directory reached safely). The manager
/// has one thread while it binds.
fn in_directory<T>(dir: &OwnedFd, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let back = nix::fcntl::open(".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    fchdir(dir)?;
    let result = f();
    fchdir(&back)?;
    result
}

/// Binds the socket file `path`, after checking the way to it and clearing a stale file, gives
/// it `access`, and listens (before the next start may look: a bound socket that does not
/// listen yet refuses connections, as a stale one does).
pub(crate) fn bind_path(path: &Path, access: Access, backlog: u32) -> io::Result<(OwnedFd, SocketFile)> {
    let (dir, name) = open_parent(path, Some(access))?;
    // Starts of the daemon that take this path at once take turns. (A directory the daemon
    // cannot read is not locked: root's are.)
    let _turn = File::open(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok().and_then(|d| Flock::lock(d, FlockArg::LockExclusive).ok());
    let fd = unix_socket()?;
    let addr = UnixAddr::new(name.as_path())?;
    in_directory(&dir, || match bind_private(&fd, &addr) {
        Err(Errno::EADDRINUSE) => {
            clear_stale(&dir, &name, access)?;
            bind_private(&fd, &addr).map_err(|e| match e {
                Errno::EADDRINUSE => refuse(io::ErrorKind::AddrInUse, "another process made this file while the daemon took the path: not used".to_string()),
                e => e.into(),
            })
        }
        other => other.map_err(io::Error::from),
    })?;
    let file = give_access(dir, name, path, access)?;
    if let Err(e) = crate::sys::listen_queue(fd.as_fd(), backlog) {
        file.remove();
        return Err(e);
    }
    Ok((fd, file))
}

/// bind(2) with nothing for the group or others: until the file has its owner and mode (set
/// next, on the file just made), nobody else may connect.
fn bind_private(fd: &OwnedFd, addr: &UnixAddr) -> nix::Result<()> {
    // The manager has one thread while it binds: nothing else creates files meanwhile.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = bind(fd.as_raw_fd(), addr);
    umask(old);
    bound
}

/// The name is taken (the working directory is its directory): removes the file if it is a
/// socket of the daemon's own that nothing answers on (left by a run that crashed); refuses
/// otherwise, naming what holds it.
fn clear_stale(dir: &OwnedFd, name: &Path, access: Access) -> io::Result<()> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if !is_socket(&st) {
        return Err(refuse(io::ErrorKind::AlreadyExists, "the path exists and is not a socket: it is not removed; remove it yourself or listen elsewhere".to_string()));
    }
    let me = nix::unistd::geteuid().as_raw();
    let ours = st.st_uid == me || access.uid.is_some_and(|u| u.as_raw() == st.st_uid) || access.daemon_uid.is_some_and(|u| u.as_raw() == st.st_uid);
    if !ours {
        return Err(refuse(
            io::ErrorKind::AlreadyExists,
            format!("a socket of another user (uid {}) has this path: it is not removed; remove it yourself or listen elsewhere", st.st_uid),
        ));
    }
    let probe = unix_socket()?;
    match connect(probe.as_raw_fd(), &UnixAddr::new(name)?) {
        // Something accepts on it (EAGAIN: its queue is full, so it is alive too).
        Ok(()) | Err(Errno::EAGAIN) => {
            let who = getsockopt(&probe, sockopt::PeerCredentials).map(|c| format!(" (pid {})", c.pid())).unwrap_or_default();
            Err(refuse(io::ErrorKind::AddrInUse, format!("a process answers on this socket{who}: stop it, or listen elsewhere")))
        }
        Err(Errno::ECONNREFUSED) => {
            // Nothing listens: a file a crashed run left. Removed only if it is still the file
            // just looked at.
            let again = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if again.st_dev == st.st_dev && again.st_ino == st.st_ino {
                unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
                tracing::warn!(name = %name.display(), "removed a stale socket file nothing answered on (left by a run that did not stop cleanly)");
            }
            Ok(())
        }
        Err(e) => Err(refuse(io::ErrorKind::AddrInUse, format!("the path is taken, and whether anything answers on it cannot be told ({e}): remove it yourself or listen elsewhere"))),
    }
}

/// Gives the file just bound its owner, group and mode: opened in its directory without
/// following a link, and changed only if it is a socket this process made, so a file swapped in
/// meanwhile is never touched.
fn give_access(dir: OwnedFd, name: PathBuf, path: &Path, access: Access) -> io::Result<SocketFile> {
    let file = openat(&dir, name.as_path(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    let st = fstat(&file)?;
    let mine = SocketFile { dir, name, path: path.to_path_buf(), dev: st.st_dev as u64, ino: st.st_ino as u64, bound_here: true };
    if !is_socket(&st) || st.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(refuse(io::ErrorKind::PermissionDenied, "the file was replaced while the daemon bound it: not used".to_string()));
    }
    let given = || -> io::Result<()> {
        let uid = access.uid.filter(|u| u.as_raw() != st.st_uid);
        let gid = access.gid.filter(|g| g.as_raw() != st.st_gid);
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchownat(file.as_fd(), "", uid, gid, AtFlags::AT_EMPTY_PATH).map_err(|e| {
                let to = |id: Option<u32>| id.map_or_else(|| "unchanged".to_string(), |n| n.to_string());
                refuse(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "cannot give the socket to user {} and group {} ({e}): only root may give a file to another user, or to a group it is not in; start as root, or change socket_user and socket_group",
                        to(uid.map(Uid::as_raw)),
                        to(gid.map(Gid::as_raw))
                    ),
                )
            })?;
        }
        // chmod(2) through the descriptor's /proc link reaches the file opened, whatever the
        // name holds by now.
        std::fs::set_permissions(format!("/proc/self/fd/{}", file.as_raw_fd()), std::os::unix::fs::PermissionsExt::from_mode(access.mode))
    };
    if let Err(e) = given() {
        mine.remove();
        return Err(e);
    }
    Ok(mine)
}

/// How an upgrade names a socket whose file it hands over: `file.DEV.INO` (what the file is,
/// for the new manager to take only that file over).
pub(crate) fn hand_over_name(file: &SocketFile) -> String {
    let (dev, ino) = file.identity();
    format!("file.{dev}.{ino}")
}

/// The file identity a hand-over name carries.
pub(crate) fn identity_in(name: &str) -> Option<(u64, u64)> {
    let mut parts = name.strip_prefix("file.")?.split('.');
    let (dev, ino) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some((dev, ino))
}
