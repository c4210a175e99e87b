//! Unix sockets `listen` names: `unix:/run/app/app.sock` (a file) and `unix:@name` (the
//! abstract namespace, no file). The file is the daemon's only while it is the daemon's: it is
//! made with no permissions for others and given its mode, owner and group only once it is
//! known to be the socket just bound; a file left by a crashed run is removed only when it is a
//! socket of the daemon's own and nothing answers on it; and when the daemon stops for good it
//! removes the file it made, if the path still names that file.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, AtFlags, OFlag};
use nix::sys::socket::{bind, connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{Gid, Uid};

/// Who may connect to a socket file: its permission bits, owner and group (`socket_mode`,
/// `socket_user`, `socket_group`; by default the daemon's user and group, 0660).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access {
    pub mode: u32,
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
}

/// A socket file this daemon made (or took over from the manager it upgrades), by its path and
/// what it is, so that only that file is ever removed.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The socket file at `path`, as it is now, if it is a socket.
    pub(crate) fn at(path: &Path) -> Option<SocketFile> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        is_socket(&meta).then(|| SocketFile { path: path.to_path_buf(), dev: meta.dev(), ino: meta.ino() })
    }

    /// Removes the file, if the path still names it: a daemon that stops for good leaves no
    /// socket file behind (a later start would find it stale and remove it anyway).
    pub(crate) fn remove(&self) {
        let same = std::fs::symlink_metadata(&self.path).is_ok_and(|m| is_socket(&m) && m.dev() == self.dev && m.ino() == self.ino);
        if !same {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::info!(path = %self.path.display(), "removed the socket file"),
            Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file (the daemon's user may not write in its directory); the next start removes it as stale"),
        }
    }
}

fn is_socket(meta: &std::fs::Metadata) -> bool {
    meta.mode() & libc::S_IFMT == libc::S_IFSOCK
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

/// Binds the socket file `path`, after checking its directory and clearing a stale file, and
/// gives it `access`.
pub(crate) fn bind_path(path: &Path, access: Access) -> io::Result<(OwnedFd, SocketFile)> {
    check_directory(path, access)?;
    let fd = unix_socket()?;
    let addr = UnixAddr::new(path)?;
    match bind_private(&fd, &addr) {
        Err(Errno::EADDRINUSE) => {
            clear_stale(path, access)?;
            bind_private(&fd, &addr).map_err(|e| match e {
                // Someone made it again between the removal and the bind.
                Errno::EADDRINUSE => refuse(io::ErrorKind::AddrInUse, "another process made this file while the daemon took the path: not used".to_string()),
                e => e.into(),
            })?;
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    let file = give_access(path, access)?;
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

/// Refuses a directory other users could replace the socket in: the daemon's clients would
/// connect to theirs. Writable by others (or by a group that is not the daemon's) without the
/// sticky bit, or owned by another user than root and the daemon's.
fn check_directory(path: &Path, access: Access) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("/"));
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => refuse(io::ErrorKind::NotFound, format!("its directory {} does not exist: create it, owned by the daemon's user (systemd: RuntimeDirectory=)", dir.display())),
        _ => refuse(e.kind(), format!("its directory {}: {e}", dir.display())),
    })?;
    if !meta.is_dir() {
        return Err(refuse(io::ErrorKind::InvalidInput, format!("{} is not a directory", dir.display())));
    }
    let me = nix::unistd::geteuid().as_raw();
    let ours = |uid: u32| uid == 0 || uid == me || access.uid.is_some_and(|u| u.as_raw() == uid);
    let group_ours = |gid: u32| gid == nix::unistd::getegid().as_raw() || access.gid.is_some_and(|g| g.as_raw() == gid);
    let sticky = meta.mode() & libc::S_ISVTX != 0;
    let others_write = meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && !group_ours(meta.gid()));
    if !ours(meta.uid()) || (others_write && !sticky) {
        return Err(refuse(
            io::ErrorKind::PermissionDenied,
            format!(
                "its directory {} may be written by other users (owner uid {}, mode {:o}), who could put their own socket in the daemon's place: listen in a directory only root and the daemon's user may write, such as /run/NAME (systemd: RuntimeDirectory=)",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// The path is taken: removes the file if it is a socket of the daemon's own that nothing
/// answers on (left by a run that crashed); refuses otherwise, naming what holds it.
fn clear_stale(path: &Path, access: Access) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !is_socket(&meta) {
        return Err(refuse(io::ErrorKind::AlreadyExists, "the path exists and is not a socket: it is not removed; remove it yourself or listen elsewhere".to_string()));
    }
    let me = nix::unistd::geteuid().as_raw();
    let owner_ours = meta.uid() == me || access.uid.is_some_and(|u| u.as_raw() == meta.uid());
    if !owner_ours {
        return Err(refuse(
            io::ErrorKind::AlreadyExists,
            format!("a socket of another user (uid {}) has this path: it is not removed; remove it yourself or listen elsewhere", meta.uid()),
        ));
    }
    let probe = unix_socket()?;
    match connect(probe.as_raw_fd(), &UnixAddr::new(path)?) {
        // Something accepts on it (EAGAIN: its queue is full, so it is alive too).
        Ok(()) | Err(Errno::EAGAIN) => {
            let who = getsockopt(&probe, sockopt::PeerCredentials).map(|c| format!(" (pid {})", c.pid())).unwrap_or_default();
            Err(refuse(io::ErrorKind::AddrInUse, format!("a process answers on this socket{who}: stop it, or listen elsewhere")))
        }
        Err(Errno::ECONNREFUSED) => {
            // Nothing listens: a file a crashed run left. Removed only if it is still the file
            // just looked at.
            let again = std::fs::symlink_metadata(path)?;
            if again.dev() == meta.dev() && again.ino() == meta.ino() {
                std::fs::remove_file(path)?;
                tracing::warn!(path = %path.display(), "removed a stale socket file nothing answered on (left by a run that did not stop cleanly)");
            }
            Ok(())
        }
        Err(e) => Err(refuse(io::ErrorKind::AddrInUse, format!("the path is taken, and whether anything answers on it cannot be told ({e}): remove it yourself or listen elsewhere"))),
    }
}

/// Gives the file just bound its owner, group and mode: opened without following a link, and
/// changed only if it is a socket this process made, so a file swapped in meanwhile is never
/// touched.
fn give_access(path: &Path, access: Access) -> io::Result<SocketFile> {
    let file = open(path, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    let meta = nix::sys::stat::fstat(&file)?;
    if meta.st_mode & libc::S_IFMT != libc::S_IFSOCK || meta.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(refuse(io::ErrorKind::PermissionDenied, "the file was replaced while the daemon bound it: not used".to_string()));
    }
    let uid = access.uid.filter(|u| u.as_raw() != meta.st_uid);
    let gid = access.gid.filter(|g| g.as_raw() != meta.st_gid);
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchownat(file.as_fd(), "", uid, gid, AtFlags::AT_EMPTY_PATH).map_err(|e| {
            refuse(
                io::ErrorKind::PermissionDenied,
                format!("cannot give the socket its owner {uid:?} and group {gid:?} ({e}): only root may give a file away; start as root, or leave socket_user and socket_group unset"),
            )
        })?;
    }
    // chmod(2) through the descriptor's /proc link reaches the file opened, whatever the path
    // names by now.
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    std::fs::set_permissions(&link, std::os::unix::fs::PermissionsExt::from_mode(access.mode))?;
    Ok(SocketFile { path: path.to_path_buf(), dev: meta.st_dev as u64, ino: meta.st_ino as u64 })
}
