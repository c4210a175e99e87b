//! What the kernel says of one socket, through `NETLINK_SOCK_DIAG` (sock_diag(7)), as `ss` asks:
//! a request names the socket by its addresses and the kernel looks it up in its hash tables,
//! so the cost of an answer does not grow with the sockets the machine holds (reading
//! `/proc/net/tcp` does: 0.3 s with 170k sockets).

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

/// TCP states (include/net/tcp_states.h) that are not a live connection's.
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

/// An address as the kernel files it: an IPv4 client of a dual-stack socket (`::ffff:a.b.c.d`)
/// has an IPv4 socket.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The uid that owns the TCP socket on this machine whose local address is `local` and whose
/// peer is `remote`; `None` when the kernel knows no such socket (the other end is not on this
/// machine, or it has closed).
pub(crate) fn tcp_owner(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u32>> {
    let (local, remote) = (unmapped(local), unmapped(remote));
    let family = match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => AF_INET6,
        _ => return Ok(None),
    };
    let mut header = NetlinkHeader::default();
    // One socket, not a dump: the kernel answers with it or with an error.
    header.flags = NLM_F_REQUEST;
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id: SocketId {
            source_port: local.port(),
            destination_port: remote.port(),
            source_address: local.ip(),
            destination_address: remote.ip(),
            interface_id: 0,
            // "No cookie": look the socket up by its addresses.
            cookie: [0xff; 8],
        },
    });
    match ask(header, request)? {
        // The kernel's lookup falls back to a listening socket on the same port (a wildcard one
        // matches any address): only the connected socket with exactly these addresses is the
        // client's. A socket its process has closed (TIME_WAIT, or an orphan in FIN_WAIT) has
        // no owner any more: the kernel says uid 0 and inode 0 for it, and nobody can read
        // an answer through it.
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
            let id = &r.header.socket_id;
            let exact = unmapped(SocketAddr::new(id.source_address, id.source_port)) == local
                && unmapped(SocketAddr::new(id.destination_address, id.destination_port)) == remote;
            let connected = !matches!(r.header.state, TCP_LISTEN | TCP_TIME_WAIT | TCP_CLOSE);
            let held = r.header.inode != 0;
            Ok((exact && connected && held).then_some(r.header.uid))
        }
        NetlinkPayload::Error(e) if e.code.is_some_and(|c| c.get() == -libc::ENOENT) => Ok(None),
        NetlinkPayload::Error(e) => Err(e.to_io()),
        other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag answered {other:?}"))),
    }
}

/// Sends one request and returns the kernel's answer.
fn ask(header: NetlinkHeader, request: SockDiagMessage) -> io::Result<NetlinkPayload<SockDiagMessage>> {
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut out = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut out);

    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)?;
    use std::os::fd::AsRawFd;
    send(fd.as_raw_fd(), &out, MsgFlags::empty())?;
    // The kernel answers a sock_diag request while it handles the send: the answer is queued
    // already, and a receive that would wait is an answer that will not come.
    let mut buf = vec![0u8; 8192];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)?;
    let answer = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag answered something unreadable: {e}")))?;
    Ok(answer.payload)
}

/// A listening Unix socket's accept queue, by its inode: the connections waiting, and the
/// queue's length (`UNIX_DIAG_RQLEN`, which for a listener is exactly that).
pub(crate) fn unix_accept_queue(inode: u32) -> io::Result<(u32, u32)> {
    use netlink_packet_sock_diag::unix::{nlas::Nla, ShowFlags, StateFlags as UnixStates, UnixRequest};
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let request = SockDiagMessage::UnixRequest(UnixRequest { state_flags: UnixStates::all(), inode, show_flags: ShowFlags::RQLEN, cookie: [0xff; 8] });
    match ask(header, request)? {
        NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(r)) => r
            .nlas
            .iter()
            .find_map(|n| match n {
                Nla::ReceiveQueueLength(waiting, limit) => Some((*waiting, *limit)),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "sock_diag gave no queue length")),
        NetlinkPayload::Error(e) => Err(e.to_io()),
        other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag answered {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_owner_of_a_local_socket_is_found_by_its_addresses() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        let me = nix::unistd::geteuid().as_raw();
        // The client's socket: its local address is the server's peer.
        let local = server.local_addr().expect("addr");
        assert_eq!(tcp_owner(peer, local).expect("sock_diag"), Some(me));
        assert_eq!(tcp_owner(local, peer).expect("sock_diag"), Some(me), "the server's side too");
        drop(client);
        // Closed by its process (an orphan in FIN_WAIT, whose uid the kernel gives as 0): its
        // owner is nobody's, not root's.
        assert_eq!(tcp_owner(peer, local).expect("sock_diag"), None, "a closed client");
        let nobody = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(tcp_owner(nobody, local).expect("sock_diag"), None);
    }

    #[test]
    fn a_unix_listeners_queue_is_read_by_its_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("daemon-diag-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("q.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let inode = {
            let fd = std::os::fd::AsFd::as_fd(&listener);
            nix::sys::stat::fstat(fd).expect("fstat").st_ino as u32
        };
        let before = unix_accept_queue(inode).expect("sock_diag");
        let clients: Vec<_> = (0..3).map(|_| std::os::unix::net::UnixStream::connect(&path).expect("connect")).collect();
        let after = unix_accept_queue(inode).expect("sock_diag");
        assert_eq!((before.0, after.0), (0, 3), "three wait");
        assert!(after.1 >= 3, "the queue's length: {after:?}");
        drop(clients);
        let _ = std::fs::metadata(&path).map(|m| m.ino());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_listening_socket_on_the_same_port_is_not_the_client() {
        // The kernel's exact lookup falls back to a listener on the client's port: a client from
        // elsewhere that picks that port as its own must not borrow the listener's owner.
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let far_client = SocketAddr::from(([10, 99, 0, 2], port));
        let here = SocketAddr::from(([127, 0, 0, 1], 9));
        assert_eq!(tcp_owner(far_client, here).expect("sock_diag"), None);
    }

    #[test]
    fn a_client_of_a_dual_stack_socket_is_found_as_the_ipv4_socket_it_is() {
        let listener = TcpListener::bind("[::]:0").expect("a dual-stack listener on [::]");
        let port = listener.local_addr().expect("addr").port();
        let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        assert!(matches!(peer, SocketAddr::V6(_)), "mapped: {peer}");
        let local = server.local_addr().expect("addr");
        assert_eq!(tcp_owner(peer, local).expect("sock_diag"), Some(nix::unistd::geteuid().as_raw()));
    }
}
