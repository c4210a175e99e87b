//! The async model: an acceptor thread waits on the listeners and hands connections to the
//! worker's own single-threaded tokio runtime, which serves up to `clients` of them at once.

use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use tracing::{debug, error, warn};

use super::accept::{accept, Acceptor, On, Wake, HOLD_BACK_MS};
use super::connection::Connection;
use super::track::{ticker, Connections, Tracked, Tracker};
use super::turns::TurnWatch;
use super::{give_up, Serving};
use crate::hooks::BoxFuture;
use crate::net::Stream;
use crate::scoreboard::{Turn, WorkerSlot};

impl Serving<'_> {
    /// The async model: an acceptor thread waits on the listeners (so this worker is woken only
    /// when it has room, or a connection it can let go) and hands connections to this thread's
    /// current-thread runtime, which serves up to `clients` of them at once. The runtime also
    /// runs the worker's ticker (heartbeats, measurements, connection limits).
    pub(super) fn asynchronous(&self, handler: fn(Connection) -> BoxFuture) -> i32 {
        let room = match EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return give_up(&self.slot, format!("cannot create the worker's eventfd: {e}")),
        };
        let acceptor = match Acceptor::new(self.listeners, &self.quit, Some(&room), self.slot.turns_bounded().then(|| self.slot.join_fd()), self.log_file.clone()) {
            Ok(a) => a,
            Err(e) => return give_up(&self.slot, format!("cannot wait on the listeners: {e}")),
        };
        let runtime = match super::local_runtime() {
            Ok(rt) => rt,
            Err(e) => return give_up(&self.slot, e),
        };
        let tracker = Tracker::new();
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<Stream>();
        let span = tracing::Span::current();
        // Started before the worker counts as ready: a thread that cannot be made means the
        // worker never served, and the manager backs off.
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();

        std::thread::scope(|scope| {
            let (room_ref, tracker_ref, acceptor_ref) = (&room, &tracker, &acceptor);
            let accepting = std::thread::Builder::new()
                .name("acceptor".into())
                .stack_size(128 * 1024)
                .spawn_scoped(scope, move || {
                    let (room, tracker, acceptor) = (room_ref, tracker_ref, acceptor_ref);
                    let _entered = span.enter();
                    if go_rx.recv() != Ok(true) {
                        return;
                    }
                    let why = self.accept_loop(acceptor, room, &conn_tx, tracker);
                    crate::sys::close_worker_listeners(self.listeners);
                    // Connections already accepted are served; the runtime sees the channel close.
                    // Raised before the stop is logged: a keep-alive request that comes after the
                    // log line is answered with `Connection: close`.
                    tracker.stop.raise();
                    if let Some(why) = why {
                        self.stopping(why);
                    }
                    drop(conn_tx);
                });
            if let Err(e) = accepting {
                return give_up(&self.slot, format!("cannot start the acceptor thread: {e}"));
            }
            // Ready before the acceptor runs: a connection it takes at once must find the worker
            // counted, so taking it counts the worker busy.
            self.slot.ready();
            let _ = go_tx.send(true);
            runtime.block_on(async {
                let drained = Rc::new(tokio::sync::Notify::new());
                let connections = Rc::new(Connections::default());
                // A standby of a pool with a bound on its turns watches for frozen turn holders.
                let turns = self
                    .slot
                    .turns_bounded()
                    .then(|| Rc::new(TurnWatch::new(self.listeners, Arc::clone(&self.slot), Arc::clone(&room))));
                tokio::task::spawn_local(ticker(
                    Arc::clone(&tracker),
                    Rc::clone(&connections),
                    Arc::clone(&self.slot),
                    self.ticking,
                    turns.clone(),
                ));
                while let Some(stream) = conn_rx.recv().await {
                    if tracker.taken_up() {
                        let _ = room.write(1);
                    }
                    // The acceptor took it while full, to admit it: make its place.
                    if self.slot.active() > self.clients {
                        connections.make_room();
                    }
                    let tracked = Tracked::new(tracker.now());
                    // Frees the connection's place however the task ends, a panic included.
                    let done = Finished {
                        slot: Arc::clone(&self.slot),
                        room: Arc::clone(&room),
                        clients: self.clients,
                        drained: Rc::clone(&drained),
                        tracked: Arc::clone(&tracked),
                        in_handler: false,
                    };
                    let Some(peer) = stream.peer() else {
                        continue; // the client is already gone
                    };
                    let stream = match stream.into_async() {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(error = %e, "cannot register a connection");
                            continue;
                        }
                    };
                    let stop_slot = tracker.stop.slot();
                    let conn = Connection::new(stream, peer, Arc::clone(&tracker), Arc::clone(&tracked), Arc::clone(&stop_slot));
                    let task = tokio::task::spawn_local(super::CONNECTION.scope(Arc::clone(&tracked), async move {
                        let mut done = done;
                        done.in_handler = true;
                        if let Err(e) = handler(conn).await {
                            done.tracked.handler_failed();
                            debug!(error = %e, "connection ended with an error");
                        }
                        done.in_handler = false;
                    }));
                    connections.add(tracked, stop_slot, task.abort_handle(), peer);
                }
                if let Some(watch) = &turns {
                    watch.release();
                }
                // The acceptor is done (the stop is raised) and every connection it took has been
                // received: serve them to their end. Those waiting for their next request may
                // still get it for drain_timeout, then they close. The last one's guard notifies;
                // notify_one leaves a permit if this is not waiting yet, and a stale permit only
                // means one more check.
                tokio::task::spawn_local(close_idle_after(Arc::clone(&tracker), self.drain));
                while self.slot.active() > 0 {
                    drained.notified().await;
                }
            });
            0
        })
    }

    fn accept_loop(
        &self,
        acceptor: &Acceptor,
        room: &EventFd,
        conns: &tokio::sync::mpsc::UnboundedSender<Stream>,
        tracker: &Tracker,
    ) -> Option<&'static str> {
        let mut served = 0u64;
        let mut unclaimed_since = None::<u64>;
        loop {
            // One connection at a time waits for the runtime to take it up: a runtime stuck in a
            // handler that spins or blocks gets one client nobody serves, not every client the
            // acceptor could take until the manager replaces the worker (as it did at first).
            // After STALL_MS, look again only now and then.
            let unclaimed = tracker.unclaimed() && tracker.wait_for_claim();
            let stalled = if unclaimed {
                let now = crate::sys::coarse_ms();
                now.saturating_sub(*unclaimed_since.get_or_insert(now)) >= STALL_MS
            } else {
                unclaimed_since = None;
                false
            };
            // Out of descriptors (or memory) at the last accept: leave the listeners to the others.
            let starved = super::accept::starved_for(crate::sys::coarse_ms());
            let has_room = self.slot.active() < self.clients;
            let full = unclaimed || starved.is_some() || !has_room;
            // A turn to accept while it can take a connection: full, stuck or starved, it gives
            // its turn to a standby (out of the fair share too: otherwise its connections would
            // hold the healthy workers' share down, and a burst would wait in the queue). Room
            // but no turn: a warm standby, which waits for a turn given back.
            let standby = self.slot.settle_turn(has_room && !stalled && starved.is_none(), !full) == Turn::Standby;
            // Full, with a connection to let go, and the pool saturated (no worker has room, and
            // none may be forked): compete for the next client anyway (nginx keeps an idle
            // keep-alive client out of a new one's way too). Not while the pool is only starting
            // or growing: the new workers will take the client. Full otherwise: look again soon.
            let evict = !unclaimed && starved.is_none() && full && tracker.waiting_between() > 0 && self.slot.pool_saturated();
            // Holding back a fair share is brief: look again within a millisecond or two.
            let holding_back = !full && !standby && self.slot.over_share();
            let timeout = if standby {
                None
            } else if holding_back {
                Some(HOLD_BACK_MS)
            } else if unclaimed && !stalled {
                // The runtime wakes us (on `room`) when it takes the connection up.
                Some(STALL_MS)
            } else if let Some(ms) = starved {
                Some(ms)
            } else if full && !evict {
                Some(FULL_RECHECK_MS)
            } else {
                None
            };
            let on = if standby {
                On::Turn
            } else if (!full && !holding_back) || evict {
                On::Listeners
            } else {
                On::Nothing
            };
            let i = match acceptor.wait(on, timeout) {
                Ok(Wake::Quit) => return Some("QUIT"),
                Ok(Wake::Room) => {
                    let _ = room.read();
                    continue;
                }
                Ok(Wake::Join) => {
                    self.slot.drain_join();
                    continue;
                }
                Ok(Wake::Timeout) => continue,
                Ok(Wake::Ready(i)) => i,
                Err(e) => {
                    error!(error = %e, "waiting for connections failed");
                    return Some("the acceptor failed");
                }
            };
            let Some(listener) = self.listeners.get(i) else { continue };
            // One connection per wake-up (nginx's `multi_accept off`): a burst is shared by the
            // workers that are woken for it, instead of going to whichever drains the queue first.
            // More queued connections keep the listener ready, so the next wait returns at once.
            let stream = match accept(listener, true) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    error!(error = %e, "accept failed");
                    return Some("accept failed");
                }
            };
            acceptor.rotate(i);
            self.slot.begin_connection();
            tracker.handed_over();
            if conns.send(stream).is_err() {
                return None;
            }
            served += 1;
            if self.quota.is_some_and(|q| served >= q) {
                return Some("served its quota of requests");
            }
        }
    }
}

impl Serving<'_> {
    /// Post-forking: the one connection the manager accepted for this child, on a runtime of
    /// its own (with its ticker), then the end. QUIT lets it finish its request.
    pub(super) fn one_async(&self, handler: fn(Connection) -> BoxFuture, stream: Stream) -> i32 {
        let runtime = match super::local_runtime() {
            Ok(rt) => rt,
            Err(e) => return give_up(&self.slot, e),
        };
        let tracker = Tracker::new();
        self.slot.ready();
        runtime.block_on(async {
            let connections = Rc::new(Connections::default());
            tokio::task::spawn_local(ticker(Arc::clone(&tracker), Rc::clone(&connections), Arc::clone(&self.slot), self.ticking, None));
            // QUIT (a graceful stop, the manager's death) raises the connection's stop. The watch
            // holds a copy of the signal descriptor (the same signal queue).
            let copy = self.quit.as_fd().try_clone_to_owned().map(Arc::new);
            if let Ok(signals) = copy.and_then(crate::sys::watch_readable) {
                let stop_tracker = Arc::clone(&tracker);
                let quit = &self.quit;
                let watch = async move {
                    loop {
                        let Ok(mut ready) = signals.readable().await else { return };
                        if crate::signals::drain(quit).contains(&nix::sys::signal::Signal::SIGQUIT) && !stop_tracker.stop.is_raised() {
                            stop_tracker.stop.raise();
                            tokio::task::spawn_local(close_idle_after(Arc::clone(&stop_tracker), self.drain));
                        }
                        ready.clear_ready();
                    }
                };
                let peer = stream.peer();
                let nonblocking = stream.set_nonblocking(true);
                let serve = async {
                    if let Err(e) = nonblocking {
                        warn!(error = %e, "cannot make the connection non-blocking");
                        return;
                    }
                    let (Some(peer), Ok(stream)) = (peer, stream.into_async()) else { return };
                    let tracked = Tracked::new(tracker.now());
                    let slot = tracker.stop.slot();
                    let conn = Connection::new(stream, peer, Arc::clone(&tracker), Arc::clone(&tracked), Arc::clone(&slot));
                    self.slot.begin_connection();
                    self.slot.set_request_started(tracker.now().max(1));
                    let task = tokio::task::spawn_local(super::CONNECTION.scope(Arc::clone(&tracked), async move {
                        if let Err(e) = handler(conn).await {
                            crate::worker::CONNECTION.with(|t| t.handler_failed());
                            debug!(error = %e, "connection ended with an error");
                        }
                    }));
                    connections.add(Arc::clone(&tracked), slot, task.abort_handle(), peer);
                    let panicked = match task.await {
                        Err(e) if e.is_panic() => {
                            error!("the on_accept handler panicked; the connection is dropped");
                            true
                        }
                        _ => false,
                    };
                    tracked.measure_done(Some(&self.slot), tracked.final_outcome(panicked));
                };
                tokio::select! {
                    () = serve => {}
                    () = watch => {}
                }
            }
        });
        self.slot.exiting();
        0
    }
}

/// The end of a stopping worker's drain: connections still waiting for a request close.
async fn close_idle_after(tracker: Arc<Tracker>, drain: std::time::Duration) {
    if !drain.is_zero() {
        tokio::time::sleep(drain).await;
    }
    tracker.stop.close_idle();
}

/// How often a full worker looks again at whether the pool has filled up (then it may let an idle
/// keep-alive connection go for a new client).
const FULL_RECHECK_MS: u64 = 100;

/// How long a connection handed to the runtime may wait to be taken up before the acceptor
/// counts the runtime stuck and stops taking more.
const STALL_MS: u64 = 100;

/// One accepted connection's place in the worker: freed when this is dropped, which is when its
/// task ends, whether the handler returned or panicked (tokio catches the panic, then drops the
/// task), or the ticker dropped it for a limit, or when the connection could not even be handed
/// to a handler.
struct Finished {
    slot: Arc<WorkerSlot>,
    room: Arc<EventFd>,
    clients: u32,
    /// Notified when the worker's last connection is done.
    drained: Rc<tokio::sync::Notify>,
    tracked: Arc<Tracked>,
    /// Set while the handler runs: dropped then, the task is being dropped after a panic (or by
    /// the ticker, which says so itself).
    in_handler: bool,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if self.in_handler && !self.tracked.was_dropped() {
            error!("the on_accept handler panicked; the connection is dropped");
        }
        self.tracked.measure_done(Some(&self.slot), self.tracked.final_outcome(self.in_handler));
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
