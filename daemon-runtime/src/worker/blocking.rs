//! The classic model: one connection at a time, the handler blocks. The worker's heartbeat comes
//! from the same thread, between connections (its wait for the next one times out every
//! `heartbeat_interval`): a handler that blocks for longer than `heartbeat_timeout` stops the
//! stamps, and the manager replaces the worker. `idle_timeout` becomes the stream's read and
//! write timeouts; the manager enforces `request_timeout` on the whole connection.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use tracing::{debug, error};

use crate::scoreboard::Outcome;
use super::accept::{accept, Acceptor, On, Wake};
use super::track::measure;
use super::{give_up, Serving};
use crate::net::Stream;
use crate::sys::coarse_ms;

impl Serving<'_> {
    /// One connection through the handler; its end (or its panic) is the handler's business.
    fn serve_blocking(&self, handler: fn(Stream) -> io::Result<()>, stream: Stream) {
        // A client that sends nothing (or reads nothing) for idle_timeout gets an error in the
        // handler's read (or write), not a worker of its own for ever.
        if let Err(e) = stream.set_read_timeout(self.idle_timeout).and_then(|()| stream.set_write_timeout(self.idle_timeout)) {
            debug!(error = %e, "cannot set the connection's timeouts");
        }
        // In the request first, then its start: a deadline that comes before the manager means
        // to look wakes it.
        self.slot.begin_connection();
        self.slot.set_request_started(coarse_ms().max(1));
        // One connection is one request here (a timeout is the manager's to count: it kills
        // the worker).
        let begun = crate::sys::monotonic_ns();
        let outcome = match catch_unwind(AssertUnwindSafe(|| handler(stream))) {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) => {
                debug!(error = %e, "connection ended with an error");
                Outcome::Error
            }
            Err(_) => {
                error!("the on_accept handler panicked; the connection is dropped");
                Outcome::Error
            }
        };
        self.slot.request_finished(crate::sys::monotonic_ns().saturating_sub(begun), outcome);
    }

    pub(super) fn blocking(&self, handler: fn(Stream) -> io::Result<()>) -> i32 {
        let acceptor = match Acceptor::new(self.listeners, &self.quit, None, None, self.log_file.clone()) {
            Ok(a) => a,
            Err(e) => return give_up(&self.slot, format!("cannot wait on the listeners: {e}")),
        };
        self.slot.ready();
        let heartbeat_ms = self.ticking.heartbeat_ms;
        let mut next_beat = 0;
        let mut served = 0u64;
        loop {
            let now = coarse_ms();
            if now >= next_beat {
                self.slot.heartbeat(now);
                measure(&self.slot);
                next_beat = now.saturating_add(heartbeat_ms);
            }
            // Out of descriptors (or memory) at the last accept: leave the listeners for a while.
            let starved = super::accept::starved_for(now);
            let until_beat = next_beat.saturating_sub(now).max(1);
            let i = match acceptor.wait(if starved.is_none() { On::Listeners } else { On::Nothing }, Some(starved.map_or(until_beat, |ms| ms.min(until_beat)))) {
                Ok(Wake::Quit) => {
                    self.stopping("QUIT");
                    return 0;
                }
                Ok(Wake::Room | Wake::Join | Wake::Timeout) => continue,
                Ok(Wake::Ready(i)) => i,
                Err(e) => {
                    error!(error = %e, "waiting for connections failed");
                    return 1;
                }
            };
            let Some(listener) = self.listeners.get(i) else { continue };
            let stream = match accept(listener, false) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    error!(error = %e, "accept failed");
                    return 1;
                }
            };
            acceptor.rotate(i);
            self.serve_blocking(handler, stream);
            served += 1;
            self.slot.describe_request("");
            if self.quota.is_some_and(|q| served >= q) {
                self.stopping("served its quota of requests");
                self.slot.end_connection();
                return 0;
            }
            self.slot.end_connection();
            // A QUIT that came during the request is read on the next wait, before any accept.
            next_beat = 0;
        }
    }

    /// Post-forking: the one connection the manager accepted for this child, then the end.
    pub(super) fn one_blocking(&self, handler: fn(Stream) -> io::Result<()>, stream: Stream) -> i32 {
        self.slot.ready();
        self.serve_blocking(handler, stream);
        self.slot.exiting();
        0
    }
}
