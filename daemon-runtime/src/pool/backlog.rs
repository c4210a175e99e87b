//! The listen queue as pure decisions: how fast a pool grows when connections wait in the
//! kernel's accept queue and no worker has room (uWSGI's backlog alert, in the shape of Apache's
//! doubling spawn rate), and when a queue's "full" episode begins and ends (one warning each).
//! The manager samples the queues (`TCP_INFO`, `sock_diag`) only while a serving pool has no
//! room, or an episode is open.

use super::policy::{count, Limits, WorkerView};

/// How often the manager samples the listen queues while a serving pool has no room.
pub const CHECK_MS: u64 = 200;

/// How long a queue must stay below half full, with no overflow, for its episode to end.
pub const QUIET_MS: u64 = 5_000;

/// What waits in the serving pool's accept queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Connections waiting, over every listener.
    pub queued: u32,
    /// Connections one worker takes (`clients`; 1 in the classic model).
    pub capacity: u32,
}

/// Workers to fork at once for a backlog: as many as the waiting connections need, but at most
/// as many as the pool has (it doubles, at most, each round), and within `max_children`. None
/// while a spare exists (it will take them) or nothing waits. The manager forks the greater of
/// this and the spare policy's plan.
pub fn growth(workers: &[WorkerView], limits: &Limits, backlog: Backlog) -> u32 {
    let c = count(workers);
    if backlog.queued == 0 || c.spares > 0 {
        return 0;
    }
    let needed = backlog.queued.div_ceil(backlog.capacity.max(1));
    let room = limits.max_children.saturating_sub(c.live);
    needed.min(c.pool.max(1)).min(room)
}

/// One listener's queue, as sampled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub listener: String,
    pub waiting: u32,
    pub limit: u32,
    /// Connections the kernel dropped at this listener because its queue was full, so far (TCP
    /// only: a Unix socket's client waits or is refused instead).
    pub overflows: Option<u64>,
}

impl Sample {
    fn full(&self) -> bool {
        self.limit > 0 && self.waiting >= self.limit
    }
}

/// A queue's "full" episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    pub since_ms: u64,
    /// The overflow count before the episode began.
    pub overflows_before: u64,
    /// The last time the queue was full or overflowed.
    pub last_full_ms: u64,
    pub peak: u32,
}

/// What to say of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Said {
    /// It filled up: `overflowed` connections were dropped so far in this episode.
    Full { waiting: u32, limit: u32, overflowed: u64 },
    /// The episode is over: how long it lasted, its peak, and what it dropped in all.
    Drained { lasted_ms: u64, peak: u32, overflowed: u64 },
}

/// The next state of one listener's episode, from the previous sample's overflow count, this
/// sample and the time; and what to say (once at its start, once at its end).
pub fn watch(episode: Option<Episode>, overflows_before: Option<u64>, s: &Sample, now_ms: u64) -> (Option<Episode>, Option<Said>) {
    let before = overflows_before.or(s.overflows).unwrap_or(0);
    let now_total = s.overflows.unwrap_or(before);
    let overflowing = now_total > before;
    let pressed = s.full() || overflowing;
    match episode {
        None if pressed => {
            let e = Episode { since_ms: now_ms, overflows_before: before, last_full_ms: now_ms, peak: s.waiting };
            (Some(e), Some(Said::Full { waiting: s.waiting, limit: s.limit, overflowed: now_total.saturating_sub(before) }))
        }
        None => (None, None),
        Some(mut e) => {
            e.peak = e.peak.max(s.waiting);
            if pressed || s.waiting.saturating_mul(2) >= s.limit.max(1) {
                if pressed {
                    e.last_full_ms = now_ms;
                }
                return (Some(e), None);
            }
            if now_ms.saturating_sub(e.last_full_ms) < QUIET_MS {
                return (Some(e), None);
            }
            let said = Said::Drained { lasted_ms: now_ms.saturating_sub(e.since_ms), peak: e.peak, overflowed: now_total.saturating_sub(e.overflows_before) };
            (None, Some(said))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{plan, Phase};
    use proptest::prelude::*;

    fn worker(slot: usize, phase: Phase) -> WorkerView {
        WorkerView { slot, phase, started_ms: slot as u64, unoccupied: phase == Phase::Idle }
    }

    const LIMITS: Limits = Limits { workers: 2, min_spare: 1, max_spare: 3, max_children: 16 };

    #[test]
    fn a_backlog_doubles_the_pool_at_most_within_max_children() {
        let busy: Vec<WorkerView> = (0..4).map(|i| worker(i, Phase::Busy)).collect();
        assert_eq!(growth(&busy, &LIMITS, Backlog { queued: 100, capacity: 1 }), 4, "doubles");
        assert_eq!(growth(&busy, &LIMITS, Backlog { queued: 3, capacity: 1 }), 3, "as many as wait");
        assert_eq!(growth(&busy, &LIMITS, Backlog { queued: 3, capacity: 10 }), 1, "a worker takes ten");
        assert_eq!(growth(&busy, &Limits { max_children: 5, ..LIMITS }, Backlog { queued: 100, capacity: 1 }), 1, "one place left");
        assert_eq!(growth(&busy, &LIMITS, Backlog { queued: 0, capacity: 1 }), 0, "nothing waits");
        let with_spare: Vec<WorkerView> = busy.iter().copied().chain([worker(9, Phase::Starting)]).collect();
        assert_eq!(growth(&with_spare, &LIMITS, Backlog { queued: 100, capacity: 1 }), 0, "a spare is coming");
        // The spare policy alone forks one at a time here.
        assert_eq!(plan(&busy, &LIMITS, 0, None).spawn, 1);
    }

    #[test]
    fn an_episode_is_said_once_when_it_begins_and_once_when_it_ends() {
        let s = |waiting, overflows| Sample { listener: "127.0.0.1:80".into(), waiting, limit: 8, overflows: Some(overflows) };
        let (e, said) = watch(None, Some(5), &s(2, 5), 0);
        assert_eq!((e, said), (None, None), "not full");
        let (e, said) = watch(None, Some(5), &s(8, 9), 100);
        assert_eq!(said, Some(Said::Full { waiting: 8, limit: 8, overflowed: 4 }));
        let (e, said) = watch(e, Some(9), &s(8, 20), 200);
        assert_eq!(said, None, "said once");
        let (e, said) = watch(e, Some(20), &s(1, 20), 300);
        assert_eq!(said, None, "drained, but not for long yet");
        let (e, said) = watch(e, Some(20), &s(0, 20), 300 + QUIET_MS);
        assert_eq!(e, None);
        assert_eq!(said, Some(Said::Drained { lasted_ms: 200 + QUIET_MS, peak: 8, overflowed: 15 }));
    }

    fn views() -> impl Strategy<Value = Vec<WorkerView>> {
        let phase = prop_oneof![Just(Phase::Starting), Just(Phase::Idle), Just(Phase::Busy), Just(Phase::Exiting)];
        prop::collection::vec(phase, 0..40).prop_map(|phases| phases.into_iter().enumerate().map(|(i, p)| worker(i, p)).collect())
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (0u32..8, 0u32..6, 0u32..6, 1u32..64).prop_map(|(workers, a, b, max_children)| Limits {
            workers,
            min_spare: a.min(b),
            max_spare: a.max(b),
            max_children: max_children.max(workers),
        })
    }

    proptest! {
        #[test]
        fn growth_stays_in_bounds(workers in views(), limits in limits(), queued in 0u32..10_000, capacity in 0u32..100) {
            let c = count(&workers);
            let n = growth(&workers, &limits, Backlog { queued, capacity });
            // Never past max_children, never more than the pool again, never with a spare.
            prop_assert!(c.live + n <= limits.max_children.max(c.live));
            prop_assert!(n <= c.pool.max(1));
            if c.spares > 0 || queued == 0 {
                prop_assert_eq!(n, 0);
            } else if c.live < limits.max_children {
                prop_assert!(n >= 1, "connections wait, nobody has room, and there is room to fork");
            }
            // With the spare policy, the fork never passes max_children either.
            let p = plan(&workers, &limits, 0, None);
            prop_assert!(c.live + p.spawn.max(n) <= limits.max_children.max(c.live));
        }

        #[test]
        fn an_episode_ends_only_after_a_quiet_spell(
            samples in prop::collection::vec((0u32..20, 0u64..3), 1..60),
        ) {
            let mut episode = None;
            let mut overflows = 0u64;
            let mut previous = None;
            let mut open = false;
            for (i, (waiting, more)) in samples.into_iter().enumerate() {
                let now = i as u64 * 1_000;
                overflows += more;
                let s = Sample { listener: "l".into(), waiting, limit: 10, overflows: Some(overflows) };
                let (next, said) = watch(episode, previous, &s, now);
                match said {
                    Some(Said::Full { .. }) => { prop_assert!(!open, "a second warning in one episode"); open = true; }
                    Some(Said::Drained { .. }) => { prop_assert!(open); open = false; }
                    None => {}
                }
                prop_assert_eq!(next.is_some(), open);
                if let (Some(e), true) = (next, waiting >= 10 || more > 0) {
                    prop_assert_eq!(e.last_full_ms, now);
                }
                episode = next;
                previous = Some(overflows);
            }
        }
    }
}
