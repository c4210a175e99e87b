//! The control channel: an abstract Unix socket on which the manager answers the control
//! commands (`status`, `stop`, `reload`) from its poll loop, and the rules by which each side
//! trusts the other.
//!
//! **Its name cannot be taken first.** It is `@daemon-control/<pid>/<128 random bits>`, chosen
//! by the manager when it starts (another name if that one is taken): nobody can bind it ahead
//! of the manager, so the manager always gets a channel, or fails its start with the reason.
//!
//! **A client trusts no name.** It finds the candidates that carry the pid from the pid file
//! (in `/proc/net/unix`; only the sockets that pid holds, when it may read the pid's
//! descriptors), connects without waiting (a listener whose backlog a squatter filled cannot
//! hold it), and talks only to one whose listening process is that pid and whose
//! user is root or the daemon's own (`SO_PEERCRED` of the server side, which the kernel records
//! when the manager calls listen(2) and nobody can forge), and whose answer names the same pid
//! and the same program. A socket that a squatter bound with the same prefix fails the first
//! check; a pid file that names someone else's process finds no channel at all. Nothing is
//! signalled: the commands themselves go down the verified channel.
//!
//! **The manager trusts only its user.** A peer that is neither root nor the manager's user
//! gets a refusal and is dropped at once. A peer that is allowed still cannot stall the
//! manager: every read and write is non-blocking, a request must arrive whole within
//! [`DEADLINE_MS`], and at most [`MAX_CLIENTS`] are served at a time (a new one pushes out the
//! one that has waited longest).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde_json::{json, Value as Json};

const PREFIX: &str = "daemon-control";

/// How long a client has to send its request and read the answer.
pub(crate) const DEADLINE_MS: u64 = 5_000;

/// How long a client may wait for an answer that takes time (`dump` of a worker: its stacks, then
/// the helper's symbols).
pub(crate) const LATER_MS: u64 = 15_000;

/// Clients served at once; more wait in the listener's backlog.
pub(crate) const MAX_CLIENTS: usize = 16;

/// The longest request line.
const MAX_REQUEST: usize = 4096;

/// What a control command asks of the manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Status,
    Stop { graceful: bool },
    Reload,
    /// A hot upgrade; with `hold`, the old manager stays (backed out) once the new one serves.
    Upgrade { hold: bool },
    /// Retire every worker, keep the sockets, stay (as WINCH).
    Backout,
    /// The stacks of a worker (by slot or pid), or with neither, the manager's own state.
    Dump { slot: Option<u32>, pid: Option<i32> },
}

impl Request {
    fn to_json(self) -> Json {
        match self {
            Request::Status => json!({ "command": "status" }),
            Request::Stop { graceful } => json!({ "command": "stop", "graceful": graceful }),
            Request::Reload => json!({ "command": "reload" }),
            Request::Upgrade { hold } => json!({ "command": "upgrade", "hold": hold }),
            Request::Backout => json!({ "command": "backout" }),
            Request::Dump { slot, pid } => json!({ "command": "dump", "slot": slot, "pid": pid }),
        }
    }

    fn parse(line: &[u8]) -> Result<Request, String> {
        let v: Json = serde_json::from_slice(line).map_err(|e| format!("not a request: {e}"))?;
        match v.get("command").and_then(Json::as_str) {
            Some("status") => Ok(Request::Status),
            Some("stop") => Ok(Request::Stop { graceful: v.get("graceful").and_then(Json::as_bool).unwrap_or(false) }),
            Some("reload") => Ok(Request::Reload),
            Some("upgrade") => Ok(Request::Upgrade { hold: v.get("hold").and_then(Json::as_bool).unwrap_or(false) }),
            Some("backout") => Ok(Request::Backout),
            Some("dump") => {
                let slot = match v.get("slot") {
                    None | Some(Json::Null) => None,
                    Some(n) => Some(n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or("dump: slot is not a slot number")?),
                };
                let pid = match v.get("pid") {
                    None | Some(Json::Null) => None,
                    Some(n) => Some(n.as_i64().and_then(|n| i32::try_from(n).ok()).filter(|&p| p > 0).ok_or("dump: pid is not a process id")?),
                };
                if slot.is_some() && pid.is_some() {
                    return Err("dump: a slot or a pid, not both".into());
                }
                Ok(Request::Dump { slot, pid })
            }
            _ => Err("unknown command: the commands are status, stop, reload, upgrade, backout and dump".into()),
        }
    }
}

fn address(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// The manager's end.
pub(crate) struct Channel {
    listener: UnixListener,
    name: String,
    clients: Vec<Client>,
    /// The next client's number (for answers given later).
    next_id: u64,
}

/// One connected client, as the manager serves it.
struct Client {
    stream: UnixStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    sent: usize,
    deadline_ms: u64,
    /// Its request has been read (or refused): only the answer is left to send.
    answered: bool,
    /// Its request is being answered later, under its number (`Channel::answer_later`).
    waiting: Option<u64>,
    id: u64,
}

/// Whether a peer with this uid may use the channel of a manager running as `own`.
fn allowed(uid: u32, own: u32) -> bool {
    uid == 0 || uid == own
}

impl Channel {
    /// Binds the manager's channel under a name nobody can have taken first.
    pub(crate) fn open(manager: u32) -> io::Result<Channel> {
        let mut last = None;
        for _ in 0..8 {
            let name = format!("{PREFIX}/{manager}/{}", crate::sys::random_hex(16)?);
            match UnixListener::bind_addr(&address(&name)?) {
                Ok(listener) => {
                    listener.set_nonblocking(true)?;
                    return Ok(Channel { listener, name, clients: Vec::new(), next_id: 0 });
                }
                // 128 random bits taken: somebody is trying; try others.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name")))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The descriptors to wait on, with what to wait for.
    pub(crate) fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut fds = vec![(self.listener.as_fd(), false)];
        for c in &self.clients {
            fds.push((c.stream.as_fd(), c.answered));
        }
        fds
    }

    /// The earliest time a client runs out of time.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.clients.iter().map(|c| c.deadline_ms).min()
    }

    /// Accepts, reads and writes whatever can be done without waiting; each complete request is
    /// answered by `handle`. Clients that are done, or out of time, are dropped.
    pub(crate) fn serve(&mut self, now_ms: u64, mut handle: impl FnMut(Request, u64) -> Option<Json>) {
        for c in &mut self.clients {
            c.read_and_answer(now_ms, &mut handle);
        }
        self.accept(now_ms, &mut handle);
        self.clients.retain_mut(|c| !c.flush() && c.deadline_ms > now_ms);
    }

    /// Answers the client whose request was taken under `id` (if it is still there).
    pub(crate) fn answer_later(&mut self, id: u64, reply: Json) {
        for c in self.clients.iter_mut().filter(|c| c.waiting == Some(id)) {
            c.waiting = None;
            c.answer(reply.clone());
            c.flush();
        }
    }

    fn accept(&mut self, now_ms: u64, handle: &mut impl FnMut(Request, u64) -> Option<Json>) {
        let own = nix::unistd::geteuid().as_raw();
        // A bounded number per wake-up: a flood of connections cannot hold the loop.
        for _ in 0..64 {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            let peer = getsockopt(&stream, PeerCredentials).map(|c| c.uid()).ok();
            let mut client = Client {
                stream,
                inbox: Vec::new(),
                outbox: Vec::new(),
                sent: 0,
                deadline_ms: now_ms.saturating_add(DEADLINE_MS),
                answered: false,
                waiting: None,
                id: self.next_id,
            };
            self.next_id += 1;
            if client.stream.set_nonblocking(true).is_err() {
                continue;
            }
            if !peer.is_some_and(|uid| allowed(uid, own)) {
                // One small write into an empty socket buffer, then gone: a refused peer holds
                // no place.
                client.answer(json!({ "error": "permission denied: only the daemon's user (or root) may use its control channel" }));
                client.flush();
                continue;
            }
            // Its request is usually there already: answered now, it needs no place at all.
            client.read_and_answer(now_ms, handle);
            if client.answered && client.flush() {
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                // The one that has waited longest for its own request goes: clients that hold
                // their connections without a word cannot keep a new one out. One waiting for an
                // answer given later goes only if every place holds one.
                let oldest = self.clients.iter().position(|c| !c.answered && c.waiting.is_none()).unwrap_or(0);
                self.clients.remove(oldest);
            }
            self.clients.push(client);
        }
    }
}

impl Client {
    fn read_and_answer(&mut self, now_ms: u64, handle: &mut impl FnMut(Request, u64) -> Option<Json>) {
        if self.answered || self.waiting.is_some() {
            return;
        }
        match self.read_request() {
            Ok(None) => {}
            Ok(Some(Ok(request))) => {
                let id = self.id;
                match handle(request, id) {
                    Some(reply) => self.answer(reply),
                    None => {
                        self.waiting = Some(id);
                        self.deadline_ms = now_ms.saturating_add(LATER_MS);
                    }
                }
            }
            Ok(Some(Err(why))) => self.answer(json!({ "error": why })),
            // Gone before it asked: nothing to answer, done.
            Err(_) => self.answered = true,
        }
    }

    /// `Ok(None)`: the request is not whole yet.
    fn read_request(&mut self) -> io::Result<Option<Result<Request, String>>> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = self.inbox.iter().position(|&b| b == b'\n') {
                return Ok(Some(Request::parse(&self.inbox[..end])));
            }
            if self.inbox.len() > MAX_REQUEST {
                return Ok(Some(Err("request too long".into())));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn answer(&mut self, reply: Json) {
        self.outbox = format!("{reply}\n").into_bytes();
        self.answered = true;
    }

    /// Writes what the socket takes now. Returns whether the client is done with.
    fn flush(&mut self) -> bool {
        if !self.answered {
            return false;
        }
        while self.sent < self.outbox.len() {
            match self.stream.write(&self.outbox[self.sent..]) {
                Ok(0) => return true,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
        true
    }
}

/// Whom the client expects at the other end.
pub(crate) struct Expect<'a> {
    /// The pid the pid file names.
    pub pid: i32,
    /// Users the manager may run as: root, the daemon's configured user, the caller.
    pub uids: Vec<u32>,
    /// The program's package name, which the manager's answers carry.
    pub package: &'a str,
}

/// Why no verified manager answered.
#[derive(Debug)]
pub(crate) struct Unverified(pub String);

/// Asks the manager `expect` describes, over a channel verified as its own. Returns its answer.
pub(crate) fn ask(expect: &Expect<'_>, request: Request) -> Result<Json, Unverified> {
    let candidates = find(expect.pid).map_err(|e| Unverified(format!("cannot read /proc/net/unix: {e}")))?;
    if candidates.is_empty() {
        return Err(Unverified(format!("pid {} has no control channel", expect.pid)));
    }
    let mut why = Vec::new();
    for name in candidates {
        // A verified manager whose connection broke (it was busy, and pushed this client out)
        // is asked again, a few times.
        for attempt in 0..3 {
            match ask_one(&name, expect, request) {
                Ok(answer) => return Ok(answer),
                Err(Failure::Transient(e)) if attempt < 2 => {
                    why.push(e);
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                }
                Err(Failure::Transient(e) | Failure::Final(e)) => {
                    why.push(e);
                    break;
                }
            }
        }
    }
    why.dedup();
    Err(Unverified(why.join("; ")))
}

enum Failure {
    /// Not the manager, or it refused: try no more on this channel.
    Final(String),
    /// The manager, verified, but the exchange broke.
    Transient(String),
}

/// Connects without waiting: a listener whose backlog someone filled would block a plain
/// connect for as long as they like.
fn connect(name: &str) -> io::Result<UnixStream> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    let addr = UnixAddr::new_abstract(name.as_bytes())?;
    nix::sys::socket::connect(fd.as_raw_fd(), &addr).map_err(|e| match e {
        nix::errno::Errno::EAGAIN => io::Error::new(io::ErrorKind::WouldBlock, "its backlog is full"),
        e => io::Error::from(e),
    })?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn ask_one(name: &str, expect: &Expect<'_>, request: Request) -> Result<Json, Failure> {
    let mut stream = connect(name).map_err(|e| Failure::Final(format!("cannot connect to a channel named after it: {e}")))?;
    let peer = getsockopt(&stream, PeerCredentials)
        .map_err(|e| Failure::Final(format!("cannot read the channel's credentials: {e}")))?;
    if peer.pid() != expect.pid {
        return Err(Failure::Final(format!(
            "a channel named after pid {} belongs to pid {} (somebody else's socket; ignored)",
            expect.pid,
            peer.pid()
        )));
    }
    if !expect.uids.contains(&peer.uid()) {
        let users: Vec<String> = expect.uids.iter().map(u32::to_string).collect();
        return Err(Failure::Final(format!(
            "pid {} runs as uid {}, which is neither root nor the daemon's user (uids {}): set `user` as the daemon was started with",
            expect.pid,
            peer.uid(),
            users.join(", ")
        )));
    }
    let wait = if matches!(request, Request::Dump { .. }) { LATER_MS } else { DEADLINE_MS };
    let timeout = Some(Duration::from_millis(wait));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| Failure::Transient(e.to_string()))?;
    // A manager that refuses us answers at once and closes, maybe before the request is sent:
    // its refusal is still there to read.
    let sent = stream.write_all(format!("{}\n", request.to_json()).as_bytes());
    // One line: once it is read, a reset that follows it (the manager closed a refused
    // connection with our request unread) does not lose it.
    let mut text = String::new();
    let read = io::BufRead::read_line(&mut io::BufReader::new(&mut stream), &mut text);
    if text.is_empty() {
        return Err(Failure::Transient(match (sent, read) {
            (Err(e), _) => format!("the manager's channel broke before the request was sent: {e}"),
            (_, Err(e)) => format!("no answer on the manager's channel: {e}"),
            _ => "the manager's channel closed without an answer".to_string(),
        }));
    }
    let answer: Json = serde_json::from_str(text.trim()).map_err(|e| Failure::Final(format!("an unreadable answer: {e}")))?;
    if let Some(err) = answer.get("error").and_then(Json::as_str) {
        return Err(Failure::Final(format!("the manager refused: {err}")));
    }
    let pid = answer.get("pid").and_then(Json::as_i64);
    let package = answer.get("package").and_then(Json::as_str);
    if pid != Some(i64::from(expect.pid)) || package != Some(expect.package) {
        return Err(Failure::Final(format!(
            "pid {} is the manager of {}, not of {}",
            expect.pid,
            package.unwrap_or("an unknown program"),
            expect.package
        )));
    }
    Ok(answer)
}

/// The abstract names of listening stream sockets that carry `pid`'s prefix, and, when this
/// process may look at `pid`'s descriptors, only those `pid` holds.
fn find(pid: i32) -> io::Result<Vec<String>> {
    let table = std::fs::read_to_string("/proc/net/unix")?;
    let mut found = candidates(&table, pid);
    if let Some(held) = sockets_of(pid) {
        found.retain(|(_, inode)| held.contains(inode));
    }
    Ok(found.into_iter().map(|(name, _)| name).collect())
}

/// The inodes of the sockets `pid` holds, if its descriptors can be read (root, or its user).
fn sockets_of(pid: i32) -> Option<std::collections::HashSet<u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|target| {
                let t = target.to_str()?;
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect(),
    )
}

fn candidates(table: &str, pid: i32) -> Vec<(String, u64)> {
    let prefix = format!("@{PREFIX}/{pid}/");
    // Num RefCount Protocol Flags Type St Inode Path; __SO_ACCEPTCON (a listener) is 0x10000.
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3).and_then(|f| u32::from_str_radix(f, 16).ok()).is_some_and(|f| f & 0x1_0000 != 0);
            let stream = fields.get(4) == Some(&"0001");
            let inode = fields.get(6)?.parse::<u64>().ok()?;
            let path = fields.get(7)?;
            // A name that holds a newline (abstract names may) cannot be ours: ours are ASCII.
            (listening && stream && fields.len() == 8 && path.starts_with(&prefix)).then(|| (path[1..].to_string(), inode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_request_names_one_worker_at_most() {
        assert_eq!(Request::parse(br#"{"command":"dump"}"#), Ok(Request::Dump { slot: None, pid: None }));
        assert_eq!(Request::parse(br#"{"command":"dump","slot":3}"#), Ok(Request::Dump { slot: Some(3), pid: None }));
        for bad in [r#"{"command":"dump","slot":1,"pid":2}"#, r#"{"command":"dump","slot":-1}"#, r#"{"command":"dump","pid":0}"#, r#"{"command":"dump","slot":"0"}"#] {
            assert!(Request::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_taken_name_does_not_keep_the_manager_from_its_channel() {
        let pid = std::process::id();
        // What a squatter can bind: the old predictable name, and names with our prefix.
        let _old = UnixListener::bind_addr(&address(&format!("daemon-status/{pid}")).unwrap()).unwrap();
        let _fake = UnixListener::bind_addr(&address(&format!("{PREFIX}/{pid}/0000")).unwrap()).unwrap();
        let a = Channel::open(pid).expect("a channel");
        let b = Channel::open(pid).expect("another");
        assert_ne!(a.name(), b.name(), "names are not predictable");
        assert!(a.name().starts_with(&format!("{PREFIX}/{pid}/")) && a.name().len() > 40, "{}", a.name());
    }

    #[test]
    fn a_full_backlog_does_not_hold_the_client() {
        use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        use std::os::fd::AsRawFd;
        let name = format!("{PREFIX}/test-backlog/{}", std::process::id());
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        // Fill the backlog, as a squatter would, and never accept.
        let mut held = Vec::new();
        let started = std::time::Instant::now();
        loop {
            match connect(&name) {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
            assert!(held.len() < 100, "the backlog never filled");
        }
        assert!(started.elapsed() < Duration::from_secs(5), "connect waited on a full backlog");
    }

    #[test]
    fn candidates_are_listening_stream_sockets_with_the_pids_prefix() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 11 @daemon-control/42/ab\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 12 @daemon-control/421/cd\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 13 @daemon-control/42/connected\n\
            0000000000000000: 00000002 00000000 00010000 0002 01 14 @daemon-control/42/datagram\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 15 /run/daemon-control/42/file\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 16\n";
        assert_eq!(candidates(table, 42), [("daemon-control/42/ab".to_string(), 11)]);
    }

    #[test]
    fn requests_round_trip_and_nonsense_is_refused() {
        for r in [
            Request::Status,
            Request::Reload,
            Request::Stop { graceful: true },
            Request::Stop { graceful: false },
            Request::Upgrade { hold: true },
            Request::Upgrade { hold: false },
            Request::Backout,
        ] {
            assert_eq!(Request::parse(r.to_json().to_string().as_bytes()), Ok(r));
        }
        assert!(Request::parse(b"{\"command\":\"format-disk\"}").is_err());
        assert!(Request::parse(b"GET / HTTP/1.1").is_err());
    }
}
