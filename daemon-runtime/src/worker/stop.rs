//! The graceful stop as a worker's connections see it.
//!
//! A keep-alive handler waits for its next request with `Connection::read_or_stop`, which must
//! return when the worker is asked to stop. That wait happens once per request, so it has to be
//! nearly free: a `tokio::sync::watch` (or `Notify`) raced against the read registers a waiter
//! in a locked list on every pending read and unlinks it on every wake-up, which cost about 2% of
//! a worker's CPU at 180k requests/s (perf, `bench/run`). Here each connection keeps one waker
//! slot, registered with the worker once when the connection is made; a pending read only
//! stores its waker there (a compare when it is the same task's, as it nearly always is), and
//! the end of the stop's drain wakes every stored waker once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Waker;

use tokio::sync::Notify;

/// One worker's stop signal, shared by its acceptor (which raises it) and its connections.
///
/// A stop comes in two steps. `raise` says the worker is stopping: handlers see
/// `is_stopping()`, and answer the request in hand with `Connection: close`; a connection
/// waiting for its next request keeps waiting, for `drain_timeout`. `close_idle`, at the end of
/// that window, ends every such wait. A keep-alive client that sent its next request just as
/// the stop came (nginx's PR 437) is served instead of finding its connection closed under it.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    raised: AtomicBool,
    /// The drain is over: connections waiting between requests close.
    closing: AtomicBool,
    /// The waker slots of the connections made so far (dead ones are swept as it grows).
    slots: Mutex<Slots>,
    /// For `Connection::stopping()`, which may be awaited anywhere, by any number of tasks.
    notify: Notify,
}

#[derive(Debug, Default)]
struct Slots {
    list: Vec<Weak<Slot>>,
    /// Sweep the dead entries when the list reaches this length.
    sweep_at: usize,
}

/// Where one connection's pending read leaves its waker.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    waker: Mutex<Option<Waker>>,
    /// This connection alone is asked to let go (its keep-alive ran out, or a full worker needs
    /// its place): its next wait between requests ends as a stop would end it.
    let_go: AtomicBool,
}

impl Stop {
    pub(crate) fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    /// Whether the stop was raised.
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Whether connections waiting between requests are to close now.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Raises the stop, and completes every `stopping()` future. Later raises do nothing.
    pub(crate) fn raise(&self) {
        if self.raised.swap(true, Ordering::SeqCst) {
            return;
        }
        self.notify.notify_waiters();
    }

    /// Ends the drain: wakes every connection waiting between requests, once, to close. Raises
    /// the stop too, if it was not.
    pub(crate) fn close_idle(&self) {
        self.raise();
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        let slots = std::mem::take(&mut self.slots.lock().unwrap_or_else(PoisonError::into_inner).list);
        for slot in slots.iter().filter_map(Weak::upgrade) {
            let waker = slot.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// A waker slot for a new connection.
    pub(crate) fn slot(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.list.len() >= slots.sweep_at {
            slots.list.retain(|s| s.strong_count() > 0);
            // Amortised: the next sweep comes after as many new connections as are alive now.
            slots.sweep_at = (slots.list.len() * 2).max(64);
        }
        slots.list.push(Arc::downgrade(&slot));
        slot
    }

    /// Completes once the stop is raised (at once if it already was).
    pub(crate) fn raised(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let stop = Arc::clone(self);
        async move {
            loop {
                let notified = stop.notify.notified();
                tokio::pin!(notified);
                // Enabled before the check, so a raise between the two is not missed.
                notified.as_mut().enable();
                if stop.is_raised() {
                    return;
                }
                notified.await;
            }
        }
    }
}

impl Slot {
    /// Asks this connection alone to let go, and wakes it if it waits.
    pub(crate) fn let_go(&self) {
        self.let_go.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether it was asked to let go. Checked after `park`, as `Stop::is_closing` is.
    pub(crate) fn is_let_go(&self) -> bool {
        self.let_go.load(Ordering::SeqCst)
    }

    /// Leaves `waker` to be woken by the end of the drain. The caller must check
    /// `Stop::is_closing` after this, before it waits: `close_idle` sets its flag before it takes
    /// the wakers, so either it finds this waker or the check sees the flag.
    pub(crate) fn park(&self, waker: &Waker) {
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_drain_keeps_waits_until_close_idle_wakes_each_once() {
        let stop = Stop::new();
        let counts: Vec<_> = (0..3).map(|_| Arc::new(Count(AtomicUsize::new(0)))).collect();
        let slots: Vec<_> = counts.iter().map(|_| stop.slot()).collect();
        for (slot, count) in slots.iter().zip(&counts) {
            let waker = Waker::from(Arc::clone(count));
            slot.park(&waker);
            slot.park(&waker); // parking twice keeps one waker
            assert!(!stop.is_raised());
        }
        stop.raise();
        for count in &counts {
            assert_eq!(count.0.load(Ordering::SeqCst), 0, "raising alone wakes no waiting connection");
        }
        assert!(stop.is_raised() && !stop.is_closing());
        stop.close_idle();
        stop.close_idle();
        for count in &counts {
            assert_eq!(count.0.load(Ordering::SeqCst), 1);
        }
        assert!(stop.is_closing(), "a read after the drain sees it");
    }

    #[test]
    fn dead_slots_are_swept() {
        let stop = Stop::new();
        let kept: Vec<_> = (0..10).map(|_| stop.slot()).collect();
        for _ in 0..10_000 {
            drop(stop.slot());
        }
        let len = stop.slots.lock().map(|s| s.list.len()).unwrap_or(usize::MAX);
        assert!(len <= 128, "{len} entries for {} live connections", kept.len());
    }

    #[test]
    fn raised_completes_after_raise() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let stop = Stop::new();
        let waiting = stop.raised();
        let raiser = Arc::clone(&stop);
        let thread = std::thread::spawn(move || raiser.raise());
        rt.block_on(waiting);
        thread.join().expect("the raising thread");
        rt.block_on(stop.raised()); // at once, now
    }
}
