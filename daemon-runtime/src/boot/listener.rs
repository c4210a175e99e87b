//! Listening sockets: bound by the manager before any fork and shared by every worker, so a
//! worker that exits strands no connection in a private queue. They are non-blocking (workers
//! wait for them with epoll) and close-on-exec. TCP (`IP:PORT`, `HOST:PORT`) or Unix
//! (`unix:/path`, `unix:@name`: `boot::unix_socket`).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::unix_socket::{self, Access, SocketFile};
use crate::net::Local;

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrStorage,
};

/// The metrics listener's accept queue: a scrape at a time, and a few waiting.
const METRICS_BACKLOG: u32 = 1024;
/// `TCP_DEFER_ACCEPT` on the metrics listener: a scraper or a probe sends its request at once.
const METRICS_DEFER_SECS: u32 = 2;

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: OwnedFd,
    pub(crate) addr: Local,
    /// Handed to the daemon by socket activation (directly, or through an upgrade): the
    /// service manager's, which `listen` does not replace.
    pub(crate) activated: bool,
    /// The socket file of a Unix socket this daemon bound (or took over in an upgrade): removed
    /// when the daemon stops for good. None for TCP, abstract names and the service manager's.
    pub(crate) file: Option<SocketFile>,
    /// Handed over in an upgrade: what the old manager's socket file is (device, inode).
    pub(crate) handed_file: Option<(u64, u64)>,
    /// Handed over in an upgrade as the metrics' socket: never taken for a `listen` address
    /// (with port 0 on both, they were taken for each other, and the workers served HTTP on
    /// the metrics port).
    pub(crate) metrics: bool,
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// How the listeners are tuned (`backlog`, `rcvbuf`, `sndbuf`, `tcp_defer_accept`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    pub backlog: u32,
    pub rcvbuf: Option<u64>,
    pub sndbuf: Option<u64>,
    /// Seconds.
    pub defer_accept: Option<u32>,
}

impl Options {
    pub(crate) fn of(config: &daemon_config::Config) -> Options {
        Options {
            backlog: config.backlog,
            rcvbuf: config.rcvbuf,
            sndbuf: config.sndbuf,
            defer_accept: config.tcp_defer_accept.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        }
    }

    /// Sets the buffers, and on a TCP socket the deferred accept; the setting that failed.
    fn tune(&self, fd: BorrowedFd<'_>, tcp: bool) -> Result<(), (&'static str, io::Error)> {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(n) = self.rcvbuf {
            setsockopt(&fd, sockopt::RcvBuf, &size(n)).map_err(|e| ("rcvbuf", e.into()))?;
        }
        if let Some(n) = self.sndbuf {
            setsockopt(&fd, sockopt::SndBuf, &size(n)).map_err(|e| ("sndbuf", e.into()))?;
        }
        if let (Some(secs), true) = (self.defer_accept, tcp) {
            crate::sys::defer_accept(fd, secs).map_err(|e| ("tcp_defer_accept", e))?;
        }
        Ok(())
    }

    /// Tunes the socket, then listens (or sizes the queue of one that listens already).
    fn apply(&self, fd: BorrowedFd<'_>, tcp: bool) -> Result<(), (&'static str, io::Error)> {
        self.tune(fd, tcp)?;
        crate::sys::listen_queue(fd, self.backlog).map_err(|e| ("backlog", e))
    }
}

/// Why an address could not be bound, with the fix.
#[derive(Debug)]
pub struct BindError {
    pub addr: String,
    pub error: io::Error,
    /// The setting the address came from, for the hint (`listen`, `metrics_listen`).
    pub setting: &'static str,
}

impl BindError {
    /// The same error, about another setting's address.
    pub(crate) fn of(self, setting: &'static str) -> BindError {
        BindError { setting, ..self }
    }
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (key, flag) = (self.setting, self.setting.replace('_', "-"));
        if self.addr.starts_with(daemon_config::UNIX_PREFIX) {
            // Every refusal of a Unix socket says what to do in its own words.
            return write!(f, "cannot listen on {}: {}", self.addr, self.error);
        }
        let hint = match self.error.kind() {
            io::ErrorKind::AddrInUse => format!("another process holds this address: stop it, or listen elsewhere with --{flag} (or {key})"),
            io::ErrorKind::PermissionDenied => "ports below 1024 need root (or CAP_NET_BIND_SERVICE): use a higher port".to_string(),
            io::ErrorKind::AddrNotAvailable => "no interface of this machine has that IP address: use one it has, or 0.0.0.0".to_string(),
            _ => format!("check the address given with `{key}` or --{flag}"),
        };
        write!(f, "cannot listen on {}: {}; {hint}", self.addr, self.error)
    }
}

impl std::error::Error for BindError {}

/// The daemon's listeners, from the configured addresses and the sockets it was handed
/// (`boot::inherit`). Sockets from systemd are the configuration: `listen` is not used. Sockets
/// from the manager this one upgrades serve the addresses they match (an address with port 0
/// matches a socket on the same IP, as the old manager's was bound from it); an address none
/// matches is bound, and a socket no address wants any more is closed.
/// `options` tune each socket bound here or taken over from the old manager (`listen(2)` again
/// on a listening socket resizes its queue); socket activation's are the service manager's to
/// tune (systemd's `Backlog=`).
/// `access`: who may connect to the Unix socket files bound here.
pub(crate) fn listen(addrs: &[String], inherited: Vec<Listener>, source: Option<Source>, options: &Options, access: Access) -> Result<Vec<Listener>, BindError> {
    let activated = source == Some(Source::Activation) || inherited.iter().any(|l| l.activated);
    if activated && !inherited.is_empty() {
        let (kept, other): (Vec<Listener>, Vec<Listener>) = inherited.into_iter().partition(|l| l.activated || source == Some(Source::Activation));
        for l in &kept {
            tracing::info!(addr = %l.addr, from = "socket activation", "listening");
        }
        for l in other {
            tracing::warn!(addr = %l.addr, "a socket handed over beside the activated ones is not used: closed");
        }
        if !addrs.is_empty() {
            tracing::info!(listen = %addrs.join(","), "listening on the sockets passed by socket activation; `listen` is not used");
        }
        return Ok(kept);
    }
    let mut left = inherited;
    let mut out = Vec::new();
    for text in addrs {
        let wanted = match Local::unix(text) {
            Some(unix) => vec![unix],
            None => resolve(text)?.into_iter().map(Local::Tcp).collect(),
        };
        for addr in wanted {
            match take_matching(&mut left, &addr) {
                Some(mut l) => {
                    // The old manager's file is this one's to remove now (only if the upgrade
                    // goes through: a new manager rolled back removes nothing), if the path
                    // still names that very file.
                    if let Local::Path(path) = &l.addr {
                        l.file = l.handed_file.and_then(|(dev, ino)| SocketFile::taken_over(path, dev, ino));
                        if l.file.is_none() {
                            tracing::warn!(addr = %l.addr, "the path no longer names the socket file the old manager bound (moved or replaced): this manager will not remove it");
                        }
                    }
                    options.apply(l.socket.as_fd(), !l.addr.is_unix()).map_err(|(setting, error)| BindError { addr: text.clone(), error, setting })?;
                    tracing::info!(addr = %l.addr, from = "the old manager", "listening");
                    out.push(l);
                }
                None => {
                    let l = match addr {
                        Local::Tcp(addr) => bind_one(addr, text, options)?,
                        unix => bind_unix(unix, text, options, access)?,
                    };
                    tracing::info!(addr = %l.addr, "listening");
                    out.push(l);
                }
            }
        }
    }
    for l in left {
        tracing::warn!(addr = %l.addr, "a socket handed over is not in `listen` any more: closed");
    }
    Ok(out)
}

/// The metrics' listener (`IP:PORT`: the rule book takes no host name there).
pub(crate) fn bind_metrics(text: &str) -> Result<TcpListener, BindError> {
    let addr = text.parse().map_err(|_| BindError { addr: text.to_string(), error: io::Error::new(io::ErrorKind::InvalidInput, "not an IP:PORT address"), setting: "metrics_listen" })?;
    // A connection that says nothing waits in the kernel, not in the manager's loop (a flood of
    // silent connections from another user once filled a queue of 64, and scrapes waited for the
    // client's retry).
    let options = Options { backlog: METRICS_BACKLOG, defer_accept: Some(METRICS_DEFER_SECS), ..Options::default() };
    let l = bind_one(addr, text, &options).map_err(|e| e.of("metrics_listen"))?;
    tracing::info!(addr = %l.addr, "metrics: GET /metrics answered here");
    Ok(TcpListener::from(l.socket))
}

/// The metrics' listener an upgrading manager handed over, if one serves `text`.
pub(crate) fn take_metrics(inherited: &mut Vec<Listener>, text: &str) -> Option<TcpListener> {
    let l = take_of(inherited, &Local::Tcp(text.parse().ok()?), true)?;
    tracing::info!(addr = %l.addr, from = "the old manager", "metrics: GET /metrics answered here");
    Some(TcpListener::from(l.socket))
}

/// Binds the Unix socket `addr` (`text` in `listen`) and listens.
fn bind_unix(addr: Local, text: &str, options: &Options, access: Access) -> Result<Listener, BindError> {
    let backlog = options.backlog;
    let err = |error: io::Error| BindError { addr: text.to_string(), error, setting: "listen" };
    let (socket, file) = match &addr {
        Local::Path(path) => unix_socket::bind_path(path, access, backlog).map(|(fd, file)| (fd, Some(file))),
        Local::Abstract(name) => unix_socket::bind_abstract(name).and_then(|fd| crate::sys::listen_queue(fd.as_fd(), backlog).map(|()| (fd, None))),
        Local::Tcp(_) => return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "not a Unix socket"))),
    }
    .map_err(err)?;
    let listener = Listener { socket, addr, activated: false, file, handed_file: None, metrics: false };
    if let Err((setting, error)) = options.tune(listener.socket.as_fd(), false) {
        forget_bound(std::slice::from_ref(&listener));
        return Err(BindError { addr: text.to_string(), error, setting });
    }
    Ok(listener)
}

/// Removes the socket files a start that fails had bound (not those it took over: they are
/// still the old manager's).
pub(crate) fn forget_bound(listeners: &[Listener]) {
    for file in listeners.iter().filter_map(|l| l.file.as_ref()).filter(|f| f.bound_here) {
        file.remove();
    }
}

/// The addresses `text` names: an `IP:PORT`, or every address a `HOST:PORT`'s host name has
/// now (the system's resolver: /etc/hosts, then DNS), each once.
pub(crate) fn resolve(text: &str) -> Result<Vec<SocketAddr>, BindError> {
    if let Ok(addr) = text.parse() {
        return Ok(vec![addr]);
    }
    let err = |error: io::Error| BindError { addr: text.to_string(), error, setting: "listen" };
    let found = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| err(io::Error::new(io::ErrorKind::NotFound, format!("its host name cannot be resolved ({e})"))))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in found {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(err(io::Error::new(io::ErrorKind::NotFound, "its host name has no address")));
    }
    Ok(addrs)
}

/// The kernel's cap on every accept queue (`net.core.somaxconn`), if it can be read.
pub(crate) fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?.trim().parse().ok()
}

/// Binds `addr` (one of the addresses `text` names) and listens.
fn bind_one(addr: SocketAddr, text: &str, options: &Options) -> Result<Listener, BindError> {
    let shown = if text.parse::<SocketAddr>().is_ok() { text.to_string() } else { format!("{text} ({addr})") };
    let err = |error: io::Error| BindError { addr: shown.clone(), error, setting: "listen" };
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
        .map_err(|e| err(e.into()))?;
    // Lets a restarted daemon bind while old connections linger in TIME_WAIT.
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| err(e.into()))?;
    // `[::]:P` takes IPv4 clients too (as `::ffff:a.b.c.d`), whatever net.ipv6.bindv6only says,
    // as nginx's `listen [::]:P` does not and gunicorn's does: one address for both families.
    // `[::1]:P` and the other IPv6 addresses are IPv6 only by nature.
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(|e| err(e.into()))?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| err(e.into()))?;
    options.apply(fd.as_fd(), true).map_err(|(setting, error)| BindError { setting, ..err(error) })?;
    let addr = Local::of(&fd).ok_or_else(|| err(io::Error::other("the bound socket has no address")))?;
    Ok(Listener { socket: fd, addr, activated: false, file: None, handed_file: None, metrics: false })
}

/// Where inherited sockets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// systemd (or `systemd-socket-activate`, or any supervisor speaking its protocol).
    Activation,
    /// The manager this one upgrades.
    Upgrade,
}

/// Takes from `inherited` the socket that serves `wanted` (the same address; port 0 matches the
/// same IP, as the socket was bound from it; a Unix socket, the same path or name), if one does.
/// The metrics' socket is never one of them.
pub(crate) fn take_matching(inherited: &mut Vec<Listener>, wanted: &Local) -> Option<Listener> {
    take_of(inherited, wanted, false)
}

/// [`take_matching`] among the metrics' sockets (`metrics`) or among the others.
fn take_of(inherited: &mut Vec<Listener>, wanted: &Local, metrics: bool) -> Option<Listener> {
    let i = inherited.iter().position(|l| l.metrics == metrics && match (&l.addr, wanted) {
        (Local::Tcp(have), Local::Tcp(want)) => have.ip() == want.ip() && (want.port() == 0 || want.port() == have.port()),
        // The daemon binds a socket file by its name in its directory, which is what the
        // socket says its address is. (Whether the path still names its file decides only
        // whether this manager may remove the file: `listen`.)
        (Local::Path(have), Local::Path(want)) if have.is_relative() => want.file_name() == Some(have.as_os_str()),
        (have, want) => have == want,
    })?;
    let mut l = inherited.remove(i);
    if matches!(&l.addr, Local::Path(p) if p.is_relative()) {
        l.addr = wanted.clone();
    }
    Some(l)
}
