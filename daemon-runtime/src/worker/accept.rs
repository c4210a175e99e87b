//! Waiting for connections on the shared listeners, and taking one.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{accept4, SockFlag};
use tracing::{error, warn};

use crate::boot::listener::Listener;
use crate::boot::logfile::LogFile;
use crate::net::Stream;
use crate::signals;
use crate::sys::own_fd;

/// What the acceptor saw.
pub(super) enum Wake {
    Quit,
    Room,
    /// A turn to accept was given back (a standby's wait).
    Join,
    Ready(usize),
    /// The wait's timeout passed.
    Timeout,
}

const SIGNALS: u64 = u64::MAX;

/// How long a worker over its fair share of connections waits before it looks again.
pub(super) const HOLD_BACK_MS: u64 = 2;
const ROOM: u64 = u64::MAX - 1;
const JOIN: u64 = u64::MAX - 2;

/// What a wait listens for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum On {
    /// Connections (a worker with a turn to accept), signals and room.
    Listeners,
    /// A turn given back (a warm standby), signals and room.
    Turn,
    /// Signals and room only (a full worker, or one out of descriptors).
    Nothing,
}

/// Waits for a connection on the shared listeners. Each listener is registered with
/// EPOLLEXCLUSIVE, so a new connection wakes one waiting worker, not all of them; a worker with
/// no room does not wait on the listeners at all, so it is never the one woken.
pub(super) struct Acceptor<'a> {
    open: Epoll,
    full: Epoll,
    /// A standby's: the join eventfd (EPOLLEXCLUSIVE, so one given-back turn wakes one standby).
    standby: Option<Epoll>,
    listeners: &'a [Listener],
    signals: &'a SignalFd,
    log_file: Option<LogFile>,
}

impl<'a> Acceptor<'a> {
    pub(super) fn new(
        listeners: &'a [Listener],
        quit: &'a SignalFd,
        room: Option<&EventFd>,
        join: Option<&EventFd>,
        log_file: Option<LogFile>,
    ) -> nix::Result<Acceptor<'a>> {
        let open = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        for (i, l) in listeners.iter().enumerate() {
            open.add(l.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, i as u64))?;
        }
        open.add(quit.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
        // Without the listeners: for a worker with no room, or none to take (out of descriptors).
        let full = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        full.add(quit.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
        let standby = match join {
            Some(join) => {
                let set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
                set.add(quit.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
                set.add(join.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, JOIN))?;
                Some(set)
            }
            None => None,
        };
        if let Some(room) = room {
            open.add(room.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, ROOM))?;
            full.add(room.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, ROOM))?;
            if let Some(set) = &standby {
                set.add(room.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, ROOM))?;
            }
        }
        Ok(Acceptor { open, full, standby, listeners, signals: quit, log_file })
    }

    /// Sends this worker to the back of the line for listener `i`. The kernel wakes the first
    /// exclusive waiter in a socket's wait queue, and an epoll's entry keeps the place it got when
    /// it was added, so without this the first worker forked would take nearly every connection
    /// whenever it waits; re-adding the entry puts it at the tail, so waiting workers take turns.
    pub(super) fn rotate(&self, i: usize) {
        let Some(listener) = self.listeners.get(i) else { return };
        let event = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, i as u64);
        if self.open.delete(listener.as_fd()).is_ok() {
            if let Err(e) = self.open.add(listener.as_fd(), event) {
                error!(error = %e, "cannot wait on a listener again; this worker stops accepting from it");
            }
        }
    }

    /// Handles the signals read from the worker's signalfd: USR1 reopens the log file here;
    /// returns whether QUIT came.
    fn quit_requested(&self) -> bool {
        let mut quit = false;
        for sig in signals::drain(self.signals) {
            match sig {
                Signal::SIGQUIT => quit = true,
                Signal::SIGUSR1 => {
                    if let Some(log) = &self.log_file {
                        if let Err(e) = log.reopen() {
                            error!(error = %e, "cannot reopen the log file; still writing to the old one");
                        }
                    }
                }
                _ => {}
            }
        }
        quit
    }

    /// Waits for what `on` says, a signal, or room, at most `timeout_ms`.
    pub(super) fn wait(&self, on: On, timeout_ms: Option<u64>) -> io::Result<Wake> {
        let epoll = match (on, &self.standby) {
            (On::Listeners, _) => &self.open,
            (On::Turn, Some(standby)) => standby,
            (On::Turn, None) | (On::Nothing, _) => &self.full,
        };
        let timeout = match timeout_ms {
            Some(ms) => EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX),
            None => EpollTimeout::NONE,
        };
        let mut events = [EpollEvent::empty(); 4];
        loop {
            match epoll.wait(&mut events, timeout) {
                Ok(0) => return Ok(Wake::Timeout),
                Ok(n) => {
                    // Quit first: a stopping worker takes nothing more.
                    let ready = &events[..n];
                    if ready.iter().any(|e| e.data() == SIGNALS) && self.quit_requested() {
                        return Ok(Wake::Quit);
                    }
                    if ready.iter().any(|e| e.data() == ROOM) {
                        return Ok(Wake::Room);
                    }
                    if ready.iter().any(|e| e.data() == JOIN) {
                        return Ok(Wake::Join);
                    }
                    if let Some(e) = ready.iter().find(|e| e.data() != SIGNALS) {
                        return Ok(Wake::Ready(e.data() as usize));
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// How long a worker that could not accept for lack of resources leaves the listeners alone.
const STARVED_MS: u64 = 250;
/// At most one line about it in this long.
const STARVED_LOG_MS: u64 = 10_000;
static STARVED_UNTIL: AtomicU64 = AtomicU64::new(0);
static LAST_STARVED_LOG: AtomicU64 = AtomicU64::new(0);

/// If the last accept failed for lack of resources: how long before trying again.
pub(super) fn starved_for(now_ms: u64) -> Option<u64> {
    let until = STARVED_UNTIL.load(Ordering::Relaxed);
    (until > now_ms).then(|| until - now_ms)
}

/// TCP_NODELAY on every accepted connection (`tcp_nodelay`): set by the manager before its
/// first fork, so every worker (and the post-forking manager) has it.
static NODELAY: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_nodelay(on: bool) {
    NODELAY.store(on, Ordering::Relaxed);
}

/// Accepts one connection, or None if another worker took it first.
pub(super) fn accept(listener: &Listener, nonblocking: bool) -> io::Result<Option<Stream>> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    loop {
        match accept4(listener.as_fd().as_raw_fd(), flags) {
            Ok(fd) => {
                let stream = Stream::from_accepted(own_fd(fd), listener.addr.is_unix());
                if let (Some(tcp), true) = (stream.tcp(), NODELAY.load(Ordering::Relaxed)) {
                    // A connection the client reset already fails here and at its first read.
                    let _ = tcp.set_nodelay(true);
                }
                return Ok(Some(stream));
            }
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            // The client gave up before we accepted: not our problem, nor a reason to stop.
            Err(Errno::ECONNABORTED) | Err(Errno::EPROTO) => return Ok(None),
            Err(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                // The connection stays in the queue and the listener ready: waiting on it again
                // at once would spin. Leave it to the other workers for a while, and say so once
                // in a while, not at every try.
                let now = crate::sys::coarse_ms();
                STARVED_UNTIL.store(now + STARVED_MS, Ordering::Relaxed);
                if now >= LAST_STARVED_LOG.load(Ordering::Relaxed) + STARVED_LOG_MS {
                    LAST_STARVED_LOG.store(now, Ordering::Relaxed);
                    warn!(error = %e, pause_ms = STARVED_MS, "accept failed for lack of resources (descriptors, memory): not accepting for a moment; raise the limit (ulimit -n) or lower `clients`");
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One connection from a listener, or None if there is none waiting (for the post-forking
/// manager, which must never block).
pub(crate) fn accept_one(listener: &Listener) -> io::Result<Option<Stream>> {
    accept(listener, false)
}
