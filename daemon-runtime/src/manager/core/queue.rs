//! The listen queues as the core knows them: sampled by the driver when the core asks
//! (`MeasureQueues`, answered with `Queues`) while the serving pool has no room or a queue's
//! episode is open, and at each `status` and scrape; each listener's "full" episode (warned once
//! when it begins, said once when it ends); and the backlog the serving pool grows for.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::{Command, Core};
use crate::pool::backlog::{self, Backlog, Episode, Said, Sample};
use crate::pool::Kind;

/// What the core knows of the listen queues.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    /// The last sample of each listener.
    pub samples: Vec<Sample>,
    pub sampled_at: Option<u64>,
    episodes: BTreeMap<String, Episode>,
    /// Set by the last look: a sample is wanted (the serving pool has no room).
    wanted: bool,
}

impl Core {
    /// A sample of every listener's queue: episodes begin and end, and the next look grows the
    /// serving pool for what waits.
    pub(super) fn queues_heard(&mut self, samples: Vec<Sample>, now: u64) {
        for s in &samples {
            let before = self.queues.samples.iter().find(|p| p.listener == s.listener).and_then(|p| p.overflows);
            let episode = self.queues.episodes.remove(&s.listener);
            let (next, said) = backlog::watch(episode, before, s, now);
            if let Some(e) = next {
                self.queues.episodes.insert(s.listener.clone(), e);
            }
            match said {
                Some(Said::Full { waiting, limit, overflowed }) if s.overflows.is_some() => warn!(
                    listener = %s.listener, waiting, limit, overflowed,
                    "listen queue full: connections wait for a worker, and the kernel drops the handshakes that do not fit \
                     (counted in overflowed); raise backlog, or workers and max_children"
                ),
                Some(Said::Full { waiting, limit, .. }) => warn!(
                    listener = %s.listener, waiting, limit,
                    "listen queue full: connections wait for a worker, and new clients of this Unix socket wait in connect \
                     or are refused; raise backlog, or workers and max_children"
                ),
                Some(Said::Drained { lasted_ms, peak, overflowed }) => info!(
                    listener = %s.listener, lasted_ms, peak, overflowed,
                    "listen queue drained: the episode is over"
                ),
                None => {}
            }
        }
        self.queues.samples = samples;
        self.queues.sampled_at = Some(now);
    }

    /// What waits for pool `i`: the serving pre-forked pool's queues, if sampled lately.
    pub(super) fn backlog_of(&self, i: usize, now: u64) -> Backlog {
        let serving = self.pools.get(&i).is_some_and(|p| p.primary && p.kind == Kind::Prefork);
        let fresh = self.queues.sampled_at.is_some_and(|at| now.saturating_sub(at) <= 2 * backlog::CHECK_MS);
        if !serving || !fresh {
            return Backlog::default();
        }
        let classic = self.pools.get(&i).is_some_and(|p| p.supervision.manager_judges_requests);
        let capacity = if classic { 1 } else { self.config.clients };
        Backlog { queued: self.queues.samples.iter().map(|s| s.waiting).sum(), capacity }
    }

    /// Whether the serving pool has no room now (its connections wait in the queues).
    pub(super) fn want_queue_samples(&mut self, wanted: bool) {
        self.queues.wanted |= wanted;
    }

    /// Asks for a sample when one is due; returns when the next one is.
    pub(super) fn check_queues(&mut self, now: u64) -> Option<u64> {
        let wanted = std::mem::take(&mut self.queues.wanted) || !self.queues.episodes.is_empty();
        if !wanted || self.stop.is_some() {
            return None;
        }
        let due = self.queues.sampled_at.map_or(now, |at| at.saturating_add(backlog::CHECK_MS));
        if now >= due {
            self.push(Command::MeasureQueues);
            return Some(now.saturating_add(backlog::CHECK_MS));
        }
        Some(due)
    }
}
