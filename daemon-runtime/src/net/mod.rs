//! What a connection is, whatever the socket it came through: TCP or a Unix socket. The
//! listeners' addresses, a client's identity (its address, or its process's credentials), and
//! the stream a handler reads and writes.

mod stream;

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage};

pub use stream::{AsyncStream, Stream};

/// An IPv4 or IPv6 socket address as std has it.
fn ip_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
        (Some(a), _) => Some(SocketAddr::V4((*a).into())),
        (_, Some(a)) => Some(SocketAddr::V6((*a).into())),
        _ => None,
    }
}

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Local {
    Tcp(SocketAddr),
    /// A Unix socket with a file: `unix:/run/app/app.sock`.
    Path(PathBuf),
    /// A Unix socket in the abstract namespace (no file): `unix:@name`.
    Abstract(Vec<u8>),
}

impl Local {
    /// The address a listening socket has (`getsockname`), if it is a TCP or Unix one.
    pub(crate) fn of(fd: impl AsFd) -> Option<Local> {
        let fd = fd.as_fd();
        let addr: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok()?;
        match addr.family()? {
            AddressFamily::Inet | AddressFamily::Inet6 => ip_addr(&addr).map(Local::Tcp),
            AddressFamily::Unix => {
                let unix = addr.as_unix_addr()?;
                if let Some(path) = unix.path() {
                    Some(Local::Path(path.to_path_buf()))
                } else {
                    unix.as_abstract().map(|name| Local::Abstract(name.to_vec()))
                }
            }
            _ => None,
        }
    }

    /// The Unix socket `listen` names (`unix:...`, checked by the rule book), if it names one.
    pub(crate) fn unix(text: &str) -> Option<Local> {
        let rest = text.strip_prefix(daemon_config::UNIX_PREFIX)?;
        Some(match rest.strip_prefix('@') {
            Some(name) => Local::Abstract(name.as_bytes().to_vec()),
            None => Local::Path(PathBuf::from(rest)),
        })
    }

    pub(crate) fn is_unix(&self) -> bool {
        !matches!(self, Local::Tcp(_))
    }
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A name's control characters are escaped: a path cannot forge lines of the log.
        let plain = |text: &str| text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect::<String>();
        match self {
            Local::Tcp(a) => write!(f, "{a}"),
            Local::Path(p) => write!(f, "unix:{}", plain(&p.to_string_lossy())),
            Local::Abstract(name) => write!(f, "unix:@{}", plain(&String::from_utf8_lossy(name))),
        }
    }
}

/// Who is at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// A TCP client, by its address.
    Tcp(SocketAddr),
    /// A client of a Unix socket, by its process's credentials as the kernel took them when it
    /// connected (`SO_PEERCRED`): a client cannot claim others than it had then.
    Unix(PeerCred),
}

impl Peer {
    /// The TCP client's address; `None` for a Unix socket's client.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp(a) => Some(*a),
            Peer::Unix(_) => None,
        }
    }

    /// The Unix socket client's credentials; `None` for a TCP client.
    pub fn cred(&self) -> Option<PeerCred> {
        match self {
            Peer::Tcp(_) => None,
            Peer::Unix(c) => Some(*c),
        }
    }

    /// The peer of the connected socket `fd`, from the kernel; `None` if the client is gone.
    pub(crate) fn of(fd: impl AsFd) -> Option<Peer> {
        let fd = fd.as_fd();
        let addr: SockaddrStorage = nix::sys::socket::getpeername(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok()?;
        match addr.family()? {
            AddressFamily::Inet | AddressFamily::Inet6 => ip_addr(&addr).map(Peer::Tcp),
            AddressFamily::Unix => {
                let cred = getsockopt(&fd, sockopt::PeerCredentials).ok()?;
                Some(Peer::Unix(PeerCred { pid: cred.pid(), uid: cred.uid(), gid: cred.gid() }))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix(c) => write!(f, "unix(pid={},uid={},gid={})", c.pid, c.uid, c.gid),
        }
    }
}

/// The credentials of the process that connected to a Unix socket (`SO_PEERCRED`): taken by
/// the kernel at `connect(2)`, so a client cannot claim another's. They are the ids it had
/// then: a process that drops privileges after connecting, or hands the socket to another,
/// still shows them, and a pid may name another process once that one is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}
