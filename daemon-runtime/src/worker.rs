//! A worker: what runs in the child after fork. It closes what is the manager's, sets its own
//! signals and its parent-death signal, runs the on_child hooks, then serves connections from the
//! inherited listeners until it is told to stop or has served its quota, and ends with `_exit`.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use daemon_config::Config;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{accept4, SockFlag};
use nix::unistd::Pid;
use tracing::{debug, error, info, info_span, warn};

use crate::child::Child;
use crate::connection::Connection;
use crate::hooks::{BoxFuture, Handler, Hooks};
use crate::listener::Listener;
use crate::logfile::LogFile;
use crate::scoreboard::{State, WorkerSlot};
use crate::signals;
use crate::stop::Stop;
use crate::sys::{alarm, exit_now, own_fd};

/// What a worker takes from the manager at fork.
pub(crate) struct Setup<'a> {
    pub slot: WorkerSlot,
    pub generation: u32,
    pub manager_pid: Pid,
    pub listeners: &'a [Listener],
    pub hooks: &'a Hooks,
    pub config: &'a Config,
}

/// Runs a worker to its end.
pub(crate) fn run(setup: Setup<'_>) -> ! {
    let slot = Arc::new(setup.slot);
    slot.set_state(State::Forked);
    let quit = match signals::worker_signalfd() {
        Ok(fd) => fd,
        Err(e) => {
            slot.give_up(&format!("cannot set up the worker's signals: {e}"));
            exit_now(1)
        }
    };
    // The manager's death asks us to stop gracefully. Set it, then check that the manager did not
    // die before it was set.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT);
    if nix::unistd::getppid() != setup.manager_pid {
        exit_now(0);
    }
    let pid = std::process::id();
    let span = info_span!(parent: None, "worker", slot = slot.index(), pid);
    let _entered = span.enter();
    slot.set_state(State::Starting);
    let child = Child {
        slot: slot.index(),
        pid,
        generation: setup.generation,
        manager_pid: setup.manager_pid.as_raw() as u32,
    };
    for hook in &setup.hooks.on_child {
        if let Err(panic) = catch_unwind(|| (hook.run)(&child)) {
            let why = format!(
                "the on_child hook {}::{} panicked: {}",
                hook.module,
                hook.name,
                panic_message(panic.as_ref())
            );
            exit_now(give_up(&slot, why));
        }
    }
    let quota = quota(setup.config.requests, pid);
    let serving = Serving {
        slot: Arc::clone(&slot),
        listeners: setup.listeners,
        quit,
        log_file: setup.config.log_file.as_deref().map(|p| LogFile::at(std::path::Path::new(p))),
        quota,
        clients: setup.config.clients,
        graceful_secs: graceful_secs(setup.config),
    };
    let code = match setup.hooks.on_accept.handler {
        Handler::Sync(handler) => serving.blocking(handler),
        Handler::Async(handler) => serving.asynchronous(handler),
    };
    for hook in &setup.hooks.on_shutdown {
        if catch_unwind(|| (hook.run)(&child)).is_err() {
            error!(hook = %format!("{}::{}", hook.module, hook.name), "on_shutdown hook panicked");
        }
    }
    debug!(code, "worker exits");
    exit_now(code)
}

/// Logs why this worker cannot go on and leaves it on the scoreboard for the manager. Returns
/// the exit status.
fn give_up(slot: &WorkerSlot, why: String) -> i32 {
    error!("{why}");
    slot.give_up(&why);
    1
}

/// The text a panic carried, if it was a string.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

/// Connections this worker serves before it is recycled: `requests`, less up to a fifth at
/// random, so a pool started at once does not restart at once.
fn quota(requests: u64, pid: u32) -> Option<u64> {
    if requests == 0 {
        return None;
    }
    let seed = u64::from(pid) ^ crate::sys::monotonic_ms().rotate_left(17);
    let mut rng = fastrand::Rng::with_seed(seed);
    Some(requests - rng.u64(0..=requests / 5))
}

fn graceful_secs(config: &Config) -> u32 {
    let ms = config.graceful_timeout.as_millis();
    // alarm(2) counts whole seconds; round up, and leave 0 for "no grace" as one second so the
    // manager's KILL, not the alarm, decides.
    u32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
}

/// What the acceptor saw.
enum Wake {
    Quit,
    Room,
    Ready(usize),
}

const SIGNALS: u64 = u64::MAX;

/// How long a worker over its fair share of connections waits before it looks again.
const HOLD_BACK_MS: u16 = 2;
const ROOM: u64 = u64::MAX - 1;

/// Waits for a connection on the shared listeners. Each listener is registered with
/// EPOLLEXCLUSIVE, so a new connection wakes one waiting worker, not all of them; a worker with
/// no room does not wait on the listeners at all, so it is never the one woken.
struct Acceptor<'a> {
    open: Epoll,
    full: Option<Epoll>,
    listeners: &'a [Listener],
    signals: &'a SignalFd,
    log_file: Option<LogFile>,
}

impl<'a> Acceptor<'a> {
    fn new(
        listeners: &'a [Listener],
        quit: &'a SignalFd,
        room: Option<&EventFd>,
        log_file: Option<LogFile>,
    ) -> nix::Result<Acceptor<'a>> {
        let open = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        for (i, l) in listeners.iter().enumerate() {
            open.add(l.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, i as u64))?;
        }
        open.add(quit.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
        let full = match room {
            None => None,
            Some(room) => {
                open.add(room.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, ROOM))?;
                let full = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
                full.add(quit.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
                full.add(room.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, ROOM))?;
                Some(full)
            }
        };
        Ok(Acceptor { open, full, listeners, signals: quit, log_file })
    }

    /// Sends this worker to the back of the line for listener `i`. The kernel wakes the first
    /// exclusive waiter in a socket's wait queue, and an epoll's entry keeps the place it got when
    /// it was added, so without this the first worker forked would take nearly every connection
    /// whenever it waits; re-adding the entry puts it at the tail, so waiting workers take turns.
    fn rotate(&self, i: usize) {
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

    /// Waits for a connection (with room) or for room (without). `recheck` bounds the wait
    /// without room, for a worker that only holds back its share and must look again soon.
    fn wait(&self, has_room: bool, recheck: Option<u16>) -> io::Result<Wake> {
        let epoll = match (&self.full, has_room) {
            (Some(full), false) => full,
            _ => &self.open,
        };
        let timeout = match recheck {
            Some(ms) if !has_room => EpollTimeout::from(ms),
            _ => EpollTimeout::NONE,
        };
        let mut events = [EpollEvent::empty(); 4];
        loop {
            match epoll.wait(&mut events, timeout) {
                Ok(0) => return Ok(Wake::Room),
                Ok(n) => {
                    // Quit first: a stopping worker takes nothing more.
                    let ready = &events[..n];
                    if ready.iter().any(|e| e.data() == SIGNALS) && self.quit_requested() {
                        return Ok(Wake::Quit);
                    }
                    if ready.iter().any(|e| e.data() == ROOM) {
                        return Ok(Wake::Room);
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

/// Accepts one connection, or None if another worker took it first.
fn accept(listener: BorrowedFd<'_>, nonblocking: bool) -> io::Result<Option<TcpStream>> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    loop {
        match accept4(listener.as_raw_fd(), flags) {
            Ok(fd) => return Ok(Some(TcpStream::from(own_fd(fd)))),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            // The client gave up before we accepted: not our problem, nor a reason to stop.
            Err(Errno::ECONNABORTED) | Err(Errno::EPROTO) => return Ok(None),
            Err(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                warn!(error = %e, "accept failed for lack of resources");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

struct Serving<'a> {
    slot: Arc<WorkerSlot>,
    listeners: &'a [Listener],
    quit: SignalFd,
    log_file: Option<LogFile>,
    quota: Option<u64>,
    clients: u32,
    graceful_secs: u32,
}

impl Serving<'_> {
    /// Begins a graceful stop: take nothing more, and end after graceful_timeout whatever happens.
    fn stopping(&self, why: &str) {
        self.slot.exiting();
        alarm(self.graceful_secs);
        info!(why, in_flight = self.slot.active(), "worker stopping gracefully");
    }

    /// The classic model: one connection at a time, the handler blocks.
    fn blocking(&self, handler: fn(TcpStream) -> io::Result<()>) -> i32 {
        let acceptor = match Acceptor::new(self.listeners, &self.quit, None, self.log_file.clone()) {
            Ok(a) => a,
            Err(e) => return give_up(&self.slot, format!("cannot wait on the listeners: {e}")),
        };
        self.slot.ready();
        let mut served = 0u64;
        loop {
            let i = match acceptor.wait(true, None) {
                Ok(Wake::Quit) => {
                    self.stopping("QUIT");
                    return 0;
                }
                Ok(Wake::Room) => continue,
                Ok(Wake::Ready(i)) => i,
                Err(e) => {
                    error!(error = %e, "waiting for connections failed");
                    return 1;
                }
            };
            let Some(listener) = self.listeners.get(i) else { continue };
            let stream = match accept(listener.as_fd(), false) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    error!(error = %e, "accept failed");
                    return 1;
                }
            };
            acceptor.rotate(i);
            self.slot.begin_connection();
            match catch_unwind(AssertUnwindSafe(|| handler(stream))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "connection ended with an error"),
                Err(_) => error!("the on_accept handler panicked; the connection is dropped"),
            }
            served += 1;
            if self.quota.is_some_and(|q| served >= q) {
                self.stopping("served its quota of requests");
                self.slot.end_connection();
                return 0;
            }
            self.slot.end_connection();
            // A QUIT that came during the request is read on the next wait, before any accept.
        }
    }

    /// The async model: an acceptor thread waits on the listeners (so this worker is woken only
    /// when it has room) and hands connections to this thread's current-thread runtime, which
    /// serves up to `clients` of them at once.
    fn asynchronous(&self, handler: fn(Connection) -> BoxFuture) -> i32 {
        let room = match EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return give_up(&self.slot, format!("cannot create the worker's eventfd: {e}")),
        };
        let acceptor = match Acceptor::new(self.listeners, &self.quit, Some(&room), self.log_file.clone()) {
            Ok(a) => a,
            Err(e) => return give_up(&self.slot, format!("cannot wait on the listeners: {e}")),
        };
        // Handlers may hold `!Send` state (an `Rc`, a `RefCell`), so they run as local tasks, on a
        // local runtime: a `LocalSet` on a current-thread runtime would schedule each task twice
        // (about 1.5% of a worker's CPU at 180k requests/s).
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build_local(tokio::runtime::LocalOptions::default())
        {
            Ok(rt) => rt,
            Err(e) => return give_up(&self.slot, format!("cannot build the worker's tokio runtime: {e}")),
        };
        let stop = Stop::new();
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<TcpStream>();
        let span = tracing::Span::current();

        // Ready before the acceptor runs: a connection it takes at once must find the worker
        // counted, so taking it counts the worker busy.
        self.slot.ready();
        std::thread::scope(|scope| {
            let accepting = std::thread::Builder::new()
                .name("acceptor".into())
                .stack_size(128 * 1024)
                .spawn_scoped(scope, || {
                    let _entered = span.enter();
                    self.accept_loop(&acceptor, &room, &conn_tx);
                    // Connections already accepted are served; the runtime sees the channel close.
                    stop.raise();
                    drop(conn_tx);
                });
            if let Err(e) = accepting {
                self.slot.exiting();
                return give_up(&self.slot, format!("cannot start the acceptor thread: {e}"));
            }
            runtime.block_on(async {
                let drained = Rc::new(tokio::sync::Notify::new());
                while let Some(stream) = conn_rx.recv().await {
                    // Frees the connection's place however the task ends, a panic included.
                    let done = Finished {
                        slot: Arc::clone(&self.slot),
                        room: Arc::clone(&room),
                        clients: self.clients,
                        drained: Rc::clone(&drained),
                        in_handler: false,
                    };
                    let peer = match stream.peer_addr() {
                        Ok(p) => p,
                        Err(_) => continue, // the client is already gone
                    };
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(error = %e, "cannot register a connection");
                            continue;
                        }
                    };
                    let conn = Connection::new(stream, peer, Arc::clone(&stop));
                    tokio::task::spawn_local(async move {
                        let mut done = done;
                        done.in_handler = true;
                        if let Err(e) = handler(conn).await {
                            debug!(error = %e, "connection ended with an error");
                        }
                        done.in_handler = false;
                    });
                }
                // The acceptor is done and every connection it took has been received: serve them
                // to their end. The last one's guard notifies; notify_one leaves a permit if this
                // is not waiting yet, and a stale permit only means one more check.
                while self.slot.active() > 0 {
                    drained.notified().await;
                }
            });
            0
        })
    }

    fn accept_loop(&self, acceptor: &Acceptor, room: &EventFd, conns: &tokio::sync::mpsc::UnboundedSender<TcpStream>) {
        let mut served = 0u64;
        loop {
            let full = self.slot.active() >= self.clients;
            // Holding back a fair share is brief: look again within a millisecond or two.
            let holding_back = !full && self.slot.over_share();
            let recheck = holding_back.then_some(HOLD_BACK_MS);
            let i = match acceptor.wait(!full && !holding_back, recheck) {
                Ok(Wake::Quit) => return self.stopping("QUIT"),
                Ok(Wake::Room) => {
                    let _ = room.read();
                    continue;
                }
                Ok(Wake::Ready(i)) => i,
                Err(e) => {
                    error!(error = %e, "waiting for connections failed");
                    return self.stopping("the acceptor failed");
                }
            };
            let Some(listener) = self.listeners.get(i) else { continue };
            // One connection per wake-up (nginx's `multi_accept off`): a burst is shared by the
            // workers that are woken for it, instead of going to whichever drains the queue first.
            // More queued connections keep the listener ready, so the next wait returns at once.
            let stream = match accept(listener.as_fd(), true) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    error!(error = %e, "accept failed");
                    return self.stopping("accept failed");
                }
            };
            acceptor.rotate(i);
            self.slot.begin_connection();
            if conns.send(stream).is_err() {
                return;
            }
            served += 1;
            if self.quota.is_some_and(|q| served >= q) {
                return self.stopping("served its quota of requests");
            }
        }
    }
}

/// One accepted connection's place in the worker: freed when this is dropped, which is when its
/// task ends, whether the handler returned or panicked (tokio catches the panic, then drops the
/// task), or when the connection could not even be handed to a handler.
struct Finished {
    slot: Arc<WorkerSlot>,
    room: Arc<EventFd>,
    clients: u32,
    /// Notified when the worker's last connection is done.
    drained: Rc<tokio::sync::Notify>,
    /// Set while the handler runs: dropped then, the task is being dropped after a panic.
    in_handler: bool,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if self.in_handler {
            error!("the on_accept handler panicked; the connection is dropped");
        }
        // If the worker was full, wake the acceptor: there is room again.
        let was_full = self.slot.active() >= self.clients;
        self.slot.end_connection();
        if was_full {
            let _ = self.room.write(1);
        }
        if self.slot.active() == 0 {
            self.drained.notify_one();
        }
    }
}
